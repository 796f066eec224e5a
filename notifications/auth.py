"""WebSocket authentication from the Django session, one pooled database call per handshake.

Channels' ``AuthMiddlewareStack`` loads the session and the user through its
thread-sensitive database wrapper: every handshake of a daphne process queues on one
thread, which capped connection set-up near 65/s under load. This middleware reads the
session cookie, loads session and user in a single call on a pool thread, and puts them in
the scope as ``session`` and ``user``, as channels' stack does. It only reads: a socket
never writes the session.
"""

from __future__ import annotations

from collections.abc import Callable
from http.cookies import SimpleCookie
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser

from notifications.asyncdb import db_async


def session_key_from_scope(scope: dict[str, Any]) -> str | None:
    """Return the session cookie's value from the handshake headers, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            cookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is an anonymous visitor
                return None
            morsel = cookie.get(settings.SESSION_COOKIE_NAME)
            return morsel.value if morsel else None
    return None


def load_session_and_user(session_key: str | None) -> tuple[Any, Any]:
    """Return (session, user) for a session key; AnonymousUser when it is not logged in."""
    engine = import_module(settings.SESSION_ENGINE)
    session = engine.SessionStore(session_key)
    if not session_key:
        return session, AnonymousUser()
    # django.contrib.auth.get_user needs only request.session: it checks the backend and
    # the session hash (a changed password logs the socket out, as it does the page).
    user = auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]
    return session, user


def load_handshake(
    session_key: str | None, preload: Callable[[Any], Any] | None = None
) -> tuple[Any, Any, Any]:
    """Return (session, user, what ``preload(user)`` returns) from one database call.

    ``preload`` runs only for an authenticated user, in the same thread and call: one trip
    through the thread pool per handshake instead of two.
    """
    session, user = load_session_and_user(session_key)
    extra = preload(user) if preload is not None and user.is_authenticated else None
    return session, user, extra


aload_handshake = db_async(load_handshake)


class SessionAuthMiddleware(BaseMiddleware):
    """Put ``session`` and ``user`` in a WebSocket scope from the Django session cookie.

    With ``preload``, the scope also gets ``preloaded``: what ``preload(user)`` returned,
    read in the same database call (None for an anonymous visitor).
    """

    def __init__(self, inner: Any, preload: Callable[[Any], Any] | None = None) -> None:
        super().__init__(inner)
        self.preload = preload

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        scope["session"], scope["user"], preloaded = await aload_handshake(
            session_key_from_scope(scope), self.preload
        )
        if self.preload is not None:
            scope["preloaded"] = preloaded
        return await super().__call__(scope, receive, send)
