MODULE = "segment.analytics"
DIST = "segment-analytics-python"
SETTINGS = (
    "defaults: 1 consumer thread, upload_size=100, upload_interval=0.5s, "
    "max_queue_size=10000 (drops when full), max_retries=10; atexit: join() only"
)


def make_client(url):
    from segment.analytics import Client as Segment

    from . import Client

    c = Segment(write_key="bench", host=url)
    return Client(track=c.track, flush=c.flush, shutdown=c.shutdown)
