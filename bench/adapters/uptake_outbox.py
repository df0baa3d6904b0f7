MODULE = "uptake"
DIST = "uptake"
SETTINGS = (
    "defaults + buffer=SqliteBuffer(fresh file, commit_interval=0.05: group commit); "
    "flush(timeout=60.0), shutdown(timeout=60.0)"
)


def make_client(url, **buffer_options):
    import tempfile

    import uptake

    from . import Client

    path = tempfile.mkdtemp(prefix="uptake-bench-") + "/outbox.db"
    buffer = uptake.SqliteBuffer(path, **buffer_options)
    c = uptake.Client(write_key="bench", endpoint=url, buffer=buffer)
    return Client(
        track=c.track,
        flush=lambda: c.flush(timeout=60.0),
        shutdown=lambda: c.shutdown(timeout=60.0),
    )
