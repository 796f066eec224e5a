"""ASGI entry point: Django for HTTP; origin-checked, session-authenticated WebSockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyproject.settings")
# Django must be set up before anything imports models (the consumer does).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from notifications.auth import SessionAuthMiddleware  # noqa: E402
from notifications.routing import websocket_urlpatterns  # noqa: E402

# `make run` is daphne alone: let it serve the static files too. In production a proxy or
# CDN serves `collectstatic`'s output and DJANGO_SERVE_STATIC stays off.
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.SERVE_STATIC else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        # A handshake whose Origin is missing, "null" or not in ALLOWED_HOSTS is refused
        # before accept: another site's page cannot open a socket with our user's cookie.
        "websocket": AllowedHostsOriginValidator(
            SessionAuthMiddleware(URLRouter(websocket_urlpatterns))
        ),
    }
)
