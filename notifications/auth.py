"""WebSocket authentication from the Django session, one pooled database call per handshake.

Channels' ``AuthMiddlewareStack`` loads the session and the user through its
thread-sensitive database wrapper: every handshake of a daphne process queues on one
thread, which capped connection set-up near 65/s under load. This middleware reads the
session cookie, loads session and user in a single call on a pool thread, and puts them in
the scope as ``session`` and ``user``, as channels' stack does. It only reads: a socket
never writes the session (see ``user_from_session``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import import_module
from typing import Any

from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.http.cookie import parse_cookie
from django.utils.crypto import constant_time_compare

from notifications.asyncdb import db_async


def cookies_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Return the handshake's cookies exactly as Django's ``request.COOKIES`` would read them.

    ``parse_cookie``, not ``http.cookies.SimpleCookie``: SimpleCookie stops at the first
    cookie it dislikes (a consent manager's ``consent={"ads":false}``, ``theme=dark mode``),
    so a session cookie after it would be lost and the socket closed 4401 while every page
    works. HTTP/2 may split the header into several (RFC 9113, 8.2.3); they are joined with
    "; " as that RFC says. Header bytes are decoded as latin-1, as Django's ASGI handler does.
    """
    parts = [value.decode("latin-1") for name, value in headers if name.lower() == b"cookie"]
    return parse_cookie("; ".join(parts)) if parts else {}


def session_key_from_scope(scope: dict[str, Any]) -> str | None:
    """Return the session cookie's value from the handshake headers, if any."""
    return cookies_from_headers(scope.get("headers", ())).get(settings.SESSION_COOKIE_NAME) or None


def _session_hash_verifies(user: Any, session_hash: str | None) -> bool:
    """Whether the session's auth hash matches the user's under the key or a fallback key."""
    if not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    # Signed with a key that was rotated out: still this user's session. Django's get_user
    # re-hashes and cycles the session key here; a page request does that (and carries the
    # new cookie back), a socket cannot, so it only checks.
    # (AbstractBaseUser hashes under each of SECRET_KEY_FALLBACKS; a user model without it
    # has no fallback hashes, as far as Django is concerned either.)
    fallback_hashes = getattr(user, "get_session_auth_fallback_hash", None)
    return fallback_hashes is not None and any(
        constant_time_compare(session_hash, fallback) for fallback in fallback_hashes()
    )


def user_from_session(session: Any) -> Any:
    """Return the session's user, verified the way ``django.contrib.auth.get_user`` does.

    The same checks — the backend is still in AUTHENTICATION_BACKENDS, the user still
    exists, the session hash matches the password under the current key or one of
    SECRET_KEY_FALLBACKS — but without writing: Django's get_user cycles the session key
    after a key rotation and flushes a session whose hash fails, and a socket has no
    response to carry a new cookie, so the browser would keep a key that no longer exists
    and be logged out of the site. A session that fails here is left for the next page
    request to flush; the socket is simply anonymous.
    """
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return AnonymousUser()
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    user = load_backend(backend_path).get_user(user_id)
    if user is None:
        return AnonymousUser()
    if hasattr(user, "get_session_auth_hash") and not _session_hash_verifies(
        user, session.get(HASH_SESSION_KEY)
    ):
        return AnonymousUser()
    return user


def load_session_and_user(session_key: str | None) -> tuple[Any, Any]:
    """Return (session, user) for a session key; AnonymousUser when it is not logged in."""
    engine = import_module(settings.SESSION_ENGINE)
    session = engine.SessionStore(session_key)
    if not session_key:
        return session, AnonymousUser()
    # A changed password logs the socket out, as it does the page; nothing is written.
    return session, user_from_session(session)


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
