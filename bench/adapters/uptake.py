MODULE = "uptake"
DIST = "uptake"
SETTINGS = "defaults; flush(timeout=60.0), shutdown(timeout=60.0)"


def make_client(url):
    import uptake

    from . import Client

    c = uptake.Client(write_key="bench", endpoint=url)  # loopback http endpoint
    return Client(
        track=c.track,  # track(user_id, event, properties)
        flush=lambda: c.flush(timeout=60.0),  # returns True when everything was delivered
        shutdown=lambda: c.shutdown(timeout=60.0),
    )
