MODULE = "uptake"
DIST = "uptake"
SETTINGS = (
    "defaults + buffer=SqliteBuffer(fresh file, commit_interval=0.05: group commit); "
    "flush(timeout=60.0), shutdown(timeout=60.0)"
)


def make_client(url):
    import tempfile

    import uptake

    from . import Client

    path = tempfile.mkdtemp(prefix="uptake-bench-") + "/outbox.db"
    c = uptake.Client(write_key="bench", endpoint=url, buffer=uptake.SqliteBuffer(path))
    return Client(
        track=c.track,
        flush=lambda: c.flush(timeout=60.0),
        shutdown=lambda: c.shutdown(timeout=60.0),
    )
