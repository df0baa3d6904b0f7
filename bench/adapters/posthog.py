MODULE = "posthog"
DIST = "posthog"
SETTINGS = (
    "defaults: 1 consumer thread, flush_at=100, flush_interval=5s, max_queue_size=10000 "
    "(drops when full), max_retries=3, flush(timeout_seconds=10); atexit: flush bounded to 1s"
)


def make_client(url):
    from posthog import Posthog

    from . import Client

    c = Posthog("phc_bench", host=url)

    def track(user_id, event, props):
        c.capture(event, distinct_id=user_id, properties=props)

    return Client(track=track, flush=c.flush, shutdown=c.shutdown)
