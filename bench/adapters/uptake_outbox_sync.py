MODULE = "uptake"
DIST = "uptake"
EXTRA = True  # run with --sdks uptake_outbox_sync
SETTINGS = (
    "defaults + buffer=SqliteBuffer(fresh file, commit_interval=0: a commit inside every "
    "track()); flush(timeout=60.0), shutdown(timeout=60.0)"
)


def make_client(url):
    import tempfile

    import uptake

    from . import Client

    path = tempfile.mkdtemp(prefix="uptake-bench-") + "/outbox.db"
    buffer = uptake.SqliteBuffer(path, commit_interval=0)
    c = uptake.Client(write_key="bench", endpoint=url, buffer=buffer)
    return Client(
        track=c.track,
        flush=lambda: c.flush(timeout=60.0),
        shutdown=lambda: c.shutdown(timeout=60.0),
    )
