"""A ready WebSocket application for a host site's asgi.py.

::

    django_asgi_app = get_asgi_application()

    from channels.routing import ProtocolTypeRouter
    from notifications.asgi import websocket_application

    application = ProtocolTypeRouter(
        {"http": django_asgi_app, "websocket": websocket_application()}
    )

The stock Channels wiring, ``AuthMiddlewareStack(URLRouter(websocket_urlpatterns))``, works
too and is just as safe (the consumer checks the Origin itself); this one is faster: it
refuses a foreign Origin before touching the database, and reads session, user and the
bell's first state in one database call per handshake.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured


class OriginCheckMiddleware:
    """Refuse (HTTP 403) a handshake whose Origin is not allowed, before the inner app runs.

    The rules are ``notifications.origin``'s; the consumer applies them again, so this only
    saves the session and user lookups of a handshake that will be refused anyway.
    """

    def __init__(self, inner: Any) -> None:
        from channels.security.websocket import WebsocketDenier

        from notifications.origin import handshake_origin_allowed

        self.inner = inner
        self.allowed = handshake_origin_allowed
        self.deny = WebsocketDenier.as_asgi()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not self.allowed(scope):
            return await self.deny(scope, receive, send)
        return await self.inner(scope, receive, send)


def websocket_application() -> OriginCheckMiddleware:
    """Return the app's WebSocket ASGI application: origin check, session auth, routes.

    Call it after Django is set up (after ``get_asgi_application()``): the routes import the
    consumer, which imports models.
    """
    from django.apps import apps

    if not apps.ready:
        raise ImproperlyConfigured(
            "notifications.asgi.websocket_application() was called before Django was set up. "
            "In asgi.py, set DJANGO_SETTINGS_MODULE and call "
            "django_asgi_app = get_asgi_application() first, then build the application "
            "(see the README, 'Add it to your site')."
        )
    from channels.routing import URLRouter

    from notifications.auth import SessionAuthMiddleware
    from notifications.consumers import preload_connect_state
    from notifications.routing import websocket_urlpatterns

    return OriginCheckMiddleware(
        SessionAuthMiddleware(URLRouter(websocket_urlpatterns), preload=preload_connect_state)
    )
