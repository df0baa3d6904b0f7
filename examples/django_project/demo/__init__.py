"""A Django project that shows a tooltip nudge with uptake.

Run it (from this directory)::

    pip install -e '../..[django]'
    python manage.py migrate
    python manage.py runserver            # sync: WSGI
    uvicorn demo.asgi:application         # or async: ASGI

Visit the dashboard three times and a tooltip suggests the reports. Events are sent when
``UPTAKE_ENDPOINT`` and ``UPTAKE_WRITE_KEY`` are set; without them nothing leaves the
process.
"""
