from . import uptake_outbox

MODULE = "uptake"
DIST = "uptake"
EXTRA = True  # run with --sdks uptake_outbox_sync
SETTINGS = (
    "defaults + buffer=SqliteBuffer(fresh file, commit_interval=0: a commit inside every "
    "track()); flush(timeout=60.0), shutdown(timeout=60.0)"
)


def make_client(url):
    return uptake_outbox.make_client(url, commit_interval=0)
