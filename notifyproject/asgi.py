"""ASGI entry point: Django for HTTP; origin-checked, session-authenticated WebSockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyproject.settings")
# Django must be set up before anything imports models (the consumer does).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from notifications.asgi import websocket_application  # noqa: E402
from notifications.setup import tune_garbage_collector  # noqa: E402

# `make run` is daphne alone: let it serve the static files too. In production a proxy or
# CDN serves `collectstatic`'s output and DJANGO_SERVE_STATIC stays off. (getattr: this file
# gets copied into sites whose settings have no SERVE_STATIC.)
serve_static = getattr(settings, "SERVE_STATIC", False)
http_app = ASGIStaticFilesHandler(django_asgi_app) if serve_static else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        # Refuses a foreign, missing or "null" Origin before accept (the consumer checks it
        # again), then reads session, user and the bell's first state in one database call.
        "websocket": websocket_application(),
    }
)

# Last, once everything is imported: see tune_garbage_collector for the measured reason.
tune_garbage_collector()
