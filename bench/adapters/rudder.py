MODULE = "rudderstack.analytics"
DIST = "rudder-sdk-python"
EXTRA = True  # optional peer: only run when named, e.g. --sdks uptake,segment,posthog,rudder
SETTINGS = (
    "defaults: 1 consumer thread, upload_size=100, upload_interval=0.5s, "
    "max_queue_size=10000 (drops when full), gzip, max_retries=10; atexit: join() only"
)


def make_client(url):
    from rudderstack.analytics import Client as Rudder

    from . import Client

    c = Rudder(write_key="bench", host=url)
    return Client(track=c.track, flush=c.flush, shutdown=c.shutdown)
