"""Decide whether a WebSocket handshake's Origin may open a socket with the user's cookie.

Browsers send a site's cookies with a WebSocket handshake whatever page opened it, and the
handshake has no CSRF token: the Origin header is the only thing that tells another site's
page from ours. The consumer checks it itself, so a host site is safe whatever its asgi.py
wraps around the routes (channels' ``AllowedHostsOriginValidator`` or nothing at all).

An Origin is allowed when any of these holds:

1. its host matches an ``ALLOWED_HOSTS`` pattern (Django's ``validate_host``; with DEBUG and
   an empty list, Django's local defaults), except that a bare ``"*"`` allows nothing here:
   it would let every site's pages in;
2. it is in ``CSRF_TRUSTED_ORIGINS`` (scheme and host, ``https://*.example.com`` wildcards),
   matched the way ``CsrfViewMiddleware`` matches a POST's Origin;
3. it is the handshake's own ``Host`` (same origin), provided that Host is one Django would
   serve: so ``ALLOWED_HOSTS = ["*"]`` sites keep working for their own pages, never for
   foreign ones. Over ``wss://`` the page must be ``https://`` too.

A missing, ``null`` (sandboxed frames, ``file://`` pages) or malformed Origin is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

logger = logging.getLogger(__name__)

# What Django's HttpRequest.get_host() allows with DEBUG on and ALLOWED_HOSTS empty.
DEBUG_ALLOWED_HOSTS = (".localhost", "127.0.0.1", "[::1]")
DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(frozen=True, slots=True)
class ParsedOrigin:
    """An Origin header split into scheme, lowercased domain and port (default filled in)."""

    scheme: str
    netloc: str
    domain: str
    port: str

    @property
    def serialized(self) -> str:
        return f"{self.scheme}://{self.netloc}"


def parse_origin(origin: str | None) -> ParsedOrigin | None:
    """Return the parsed Origin, or None for a missing, ``null`` or malformed one.

    A browser's Origin is exactly ``scheme://host[:port]``; anything with a path, a query or
    credentials did not come from one, and is refused rather than interpreted.
    """
    if not origin or origin.strip().lower() == "null":
        return None
    try:
        parts = urlsplit(origin.strip())
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or parts.path or parts.query or parts.fragment:
        return None
    if "@" in parts.netloc:
        return None
    domain, port = split_domain_port(parts.netloc)
    if not domain:
        return None
    return ParsedOrigin(scheme, parts.netloc.lower(), domain, port or DEFAULT_PORTS[scheme])


def allowed_hosts() -> list[str]:
    """Return ``ALLOWED_HOSTS`` as Django applies it (DEBUG's local defaults included)."""
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = list(DEBUG_ALLOWED_HOSTS)
    return hosts


def matches_allowed_hosts(origin: ParsedOrigin) -> bool:
    """Return whether the Origin's host matches an ``ALLOWED_HOSTS`` pattern other than ``*``."""
    return validate_host(origin.domain, [host for host in allowed_hosts() if host != "*"])


def matches_csrf_trusted_origins(
    origin: ParsedOrigin, trusted: Iterable[str] | None = None
) -> bool:
    """Return whether the Origin is trusted the way ``CsrfViewMiddleware._origin_verified`` says."""
    entries = settings.CSRF_TRUSTED_ORIGINS if trusted is None else trusted
    for entry in entries:
        if "*" not in entry:
            if origin.serialized == entry.lower():
                return True
            continue
        parsed = urlsplit(entry)
        if parsed.scheme.lower() == origin.scheme and is_same_domain(
            origin.netloc, parsed.netloc.lstrip("*")
        ):
            return True
    return False


def matches_host(origin: ParsedOrigin, host: str | None, *, secure: bool = False) -> bool:
    """Return whether the Origin is the handshake's own ``Host``, one Django would serve."""
    if not host:
        return False
    domain, port = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts()):
        return False
    if secure and origin.scheme != "https":
        # A plain-http page (one a network attacker can write) opening our wss:// socket.
        return False
    return domain == origin.domain and (port or DEFAULT_PORTS[origin.scheme]) == origin.port


def origin_allowed(origin: str | None, host: str | None = None, *, secure: bool = False) -> bool:
    """Return whether a handshake with this Origin (and Host header) may be accepted.

    ``secure`` is whether the socket itself is ``wss://`` as the server sees it; behind a
    proxy that ends TLS it is False, and then either scheme of the same host is accepted.
    """
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    return (
        matches_allowed_hosts(parsed)
        or matches_csrf_trusted_origins(parsed)
        or matches_host(parsed, host, secure=secure)
    )


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """Return a handshake header decoded as latin-1 (as channels does); None if absent or repeated.

    Two Origin headers (or two Hosts) are not something a browser sends: refuse to choose.
    """
    values = [value for key, value in scope.get("headers", ()) if key.lower() == name]
    if len(values) != 1:
        return None
    return values[0].decode("latin-1")


def handshake_origin_allowed(scope: dict[str, Any]) -> bool:
    """Return whether the handshake in ``scope`` comes from an allowed Origin; log a refusal."""
    origin = header(scope, b"origin")
    host = header(scope, b"host")
    if origin_allowed(origin, host, secure=scope.get("scheme") == "wss"):
        return True
    logger.warning(
        "Refused a WebSocket handshake from Origin %r (Host %r): add the site's host to "
        "ALLOWED_HOSTS or its origin to CSRF_TRUSTED_ORIGINS if it is yours.",
        origin,
        host,
    )
    return False
