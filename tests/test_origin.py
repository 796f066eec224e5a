"""The Origin check: the rules on their own, and the consumer refusing under the stock wiring."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from notifications.origin import handshake_origin_allowed, origin_allowed, parse_origin
from notifications.routing import websocket_urlpatterns
from tests.conftest import asession_cookie, receive_type
from tests.factories import UserFactory

# ---- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [None, "", "null", "NULL", " null "])
def test_missing_or_null_origin_is_refused(origin: str | None) -> None:
    with override_settings(ALLOWED_HOSTS=["localhost"], DEBUG=True):
        assert not origin_allowed(origin, "localhost")


@pytest.mark.parametrize(
    "origin",
    [
        "localhost",
        "http://",
        "ftp://localhost",
        "chrome-extension://abcdef",
        "file://localhost",
        "http://localhost/",
        "http://localhost/page",
        "http://localhost?x=1",
        "http://user@localhost",
        "http://localhost:99999",
        "http://local host",
        "http://localhost,http://evil.example",
    ],
)
def test_malformed_origin_is_refused(origin: str) -> None:
    """A browser's Origin is scheme://host[:port]; anything else is not interpreted."""
    with override_settings(ALLOWED_HOSTS=["localhost"]):
        assert parse_origin(origin) is None
        assert not origin_allowed(origin, "localhost")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://example.com", True),
        ("http://example.com", True),
        ("https://example.com:8443", True),
        ("https://EXAMPLE.com", True),
        ("https://example.com.", True),  # Django strips the trailing dot too
        ("https://sub.example.com", False),
        ("https://example.com.evil.example", False),
        ("https://evil.example", False),
        ("https://notexample.com", False),
    ],
)
def test_allowed_hosts_exact(origin: str, allowed: bool) -> None:
    with override_settings(ALLOWED_HOSTS=["example.com"], CSRF_TRUSTED_ORIGINS=[]):
        assert origin_allowed(origin, "example.com") is allowed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://example.com", True),
        ("https://a.example.com", True),
        ("https://a.b.example.com:8000", True),
        ("https://badexample.com", False),
        ("https://example.com.evil.example", False),
    ],
)
def test_allowed_hosts_subdomain_pattern(origin: str, allowed: bool) -> None:
    with override_settings(ALLOWED_HOSTS=[".example.com"], CSRF_TRUSTED_ORIGINS=[]):
        assert origin_allowed(origin, "example.com") is allowed


def test_ipv6_origin_matches_a_bracketed_allowed_host() -> None:
    with override_settings(ALLOWED_HOSTS=["[::1]"]):
        assert origin_allowed("http://[::1]:8000", None)
        assert not origin_allowed("http://[::2]:8000", None)


def test_debug_with_empty_allowed_hosts_allows_local_origins_as_django_does() -> None:
    with override_settings(ALLOWED_HOSTS=[], DEBUG=True):
        assert origin_allowed("http://localhost:8000", None)
        assert origin_allowed("http://app.localhost:8000", None)
        assert origin_allowed("http://127.0.0.1:8000", None)
        assert not origin_allowed("http://evil.example", "localhost")
    with override_settings(ALLOWED_HOSTS=[], DEBUG=False):
        assert not origin_allowed("http://localhost:8000", "localhost:8000")


def test_a_bare_star_does_not_allow_every_origin() -> None:
    with override_settings(ALLOWED_HOSTS=["*"], CSRF_TRUSTED_ORIGINS=[]):
        assert not origin_allowed("http://evil.example", "notify.example.com")
        assert not origin_allowed("http://evil.example", None)


@pytest.mark.parametrize(
    ("origin", "host", "secure", "allowed"),
    [
        ("https://notify.example.com", "notify.example.com", False, True),
        ("http://notify.example.com", "notify.example.com", False, True),  # TLS ends at a proxy
        ("https://notify.example.com", "notify.example.com", True, True),
        ("http://notify.example.com", "notify.example.com", True, False),  # http page, wss
        ("https://notify.example.com:443", "notify.example.com", False, True),
        ("https://notify.example.com", "notify.example.com:443", False, True),
        ("http://notify.example.com:8000", "notify.example.com:8000", False, True),
        ("http://notify.example.com:8001", "notify.example.com:8000", False, False),
        ("https://notify.example.com", "NOTIFY.example.com", False, True),
        ("https://evil.example", "notify.example.com", False, False),
        ("https://notify.example.com", None, False, False),
        ("https://notify.example.com", "", False, False),
    ],
)
def test_same_origin_with_a_star(
    origin: str, host: str | None, secure: bool, allowed: bool
) -> None:
    """With ALLOWED_HOSTS = ["*"], a site's own pages still open the socket."""
    with override_settings(ALLOWED_HOSTS=["*"], CSRF_TRUSTED_ORIGINS=[]):
        assert origin_allowed(origin, host, secure=secure) is allowed


def test_same_origin_needs_a_host_django_would_serve() -> None:
    """A Host outside ALLOWED_HOSTS is one Django refuses (DisallowedHost): not "our" origin."""
    with override_settings(ALLOWED_HOSTS=["example.com"], CSRF_TRUSTED_ORIGINS=[]):
        assert not origin_allowed("http://other.example", "other.example")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.org", True),
        ("https://APP.example.org", True),
        ("http://app.example.org", False),
        ("https://app.example.org:8443", False),
        ("https://www.example.org", False),
    ],
)
def test_csrf_trusted_origins_exact(origin: str, allowed: bool) -> None:
    with override_settings(ALLOWED_HOSTS=["notify.example.com"]):
        with override_settings(CSRF_TRUSTED_ORIGINS=["https://app.example.org"]):
            assert origin_allowed(origin, "notify.example.com") is allowed
        with override_settings(CSRF_TRUSTED_ORIGINS=[]):
            assert not origin_allowed(origin, "notify.example.com")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://a.example.org", True),
        ("https://a.b.example.org", True),
        ("https://example.org", True),  # as CsrfViewMiddleware decides
        ("http://a.example.org", False),
        ("https://a.example.org:8443", False),
        ("https://a.example.org.evil.example", False),
        ("https://badexample.org", False),
    ],
)
def test_csrf_trusted_origins_wildcard(origin: str, allowed: bool) -> None:
    with override_settings(
        ALLOWED_HOSTS=["notify.example.com"], CSRF_TRUSTED_ORIGINS=["https://*.example.org"]
    ):
        assert origin_allowed(origin, "notify.example.com") is allowed


def test_csrf_trusted_origins_work_with_a_star_too() -> None:
    with override_settings(ALLOWED_HOSTS=["*"], CSRF_TRUSTED_ORIGINS=["https://app.example.org"]):
        assert origin_allowed("https://app.example.org", "notify.example.com")
        assert not origin_allowed("https://evil.example", "notify.example.com")


def scope(*headers: tuple[bytes, bytes], scheme: str = "ws") -> dict:
    return {"type": "websocket", "scheme": scheme, "headers": list(headers)}


def test_scope_headers_are_read_as_channels_reads_them() -> None:
    with override_settings(ALLOWED_HOSTS=["*"], CSRF_TRUSTED_ORIGINS=[]):
        own = (b"origin", b"https://notify.example.com")
        host = (b"host", b"notify.example.com")
        assert handshake_origin_allowed(scope(own, host))
        assert handshake_origin_allowed(scope(own, host, scheme="wss"))
        assert not handshake_origin_allowed(
            scope((b"origin", b"http://notify.example.com"), host, scheme="wss")
        )
        assert not handshake_origin_allowed(scope(host))
        # Two Origin headers are not something a browser sends: no choosing between them.
        assert not handshake_origin_allowed(scope(own, (b"origin", b"https://evil.example"), host))
        assert not handshake_origin_allowed(scope(own, host, (b"host", b"evil.example")))


def test_a_refusal_is_logged_with_what_to_change(caplog: pytest.LogCaptureFixture) -> None:
    with override_settings(ALLOWED_HOSTS=["localhost"]):
        assert not handshake_origin_allowed(
            scope((b"origin", b"http://evil.example"), (b"host", b"localhost"))
        )
    assert "http://evil.example" in caplog.text
    assert "ALLOWED_HOSTS" in caplog.text


# ---- the consumer under the stock Channels wiring (no origin validator) --------------------

STOCK_APP = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


async def stock_handshake(
    user, origin: str | None, host: str = "localhost"
) -> tuple[WebsocketCommunicator, bool, int | None]:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if user is not None:
        headers.append((b"cookie", (await asession_cookie(user)).encode()))
    communicator = WebsocketCommunicator(STOCK_APP, "/ws/notifications/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", ["http://evil.example", "null", None, "http://localhost.evil"])
async def test_stock_wiring_refuses_a_foreign_missing_or_null_origin(origin: str | None) -> None:
    """The case issue 9 found: a user's cookie from another site's page got 101 and a hello."""
    user = await sync_to_async(UserFactory)()
    communicator, connected, _ = await stock_handshake(user, origin)
    assert not connected
    await communicator.wait()


@pytest.mark.django_db(transaction=True)
async def test_stock_wiring_serves_an_allowed_origin() -> None:
    """websocket_urlpatterns works under AuthMiddlewareStack: the preload is optional."""
    user = await sync_to_async(UserFactory)()
    communicator, connected, code = await stock_handshake(user, "http://localhost")
    assert connected, code
    hello = await communicator.receive_json_from(timeout=5)
    assert hello == {"type": "hello", "unread": 0, "last_id": None}
    await communicator.send_json_to({"type": "ping"})
    assert (await receive_type(communicator, "pong"))["unread"] == 0
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_stock_wiring_closes_an_anonymous_socket_with_4401() -> None:
    communicator, connected, _ = await stock_handshake(None, "http://localhost")
    assert connected
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
async def test_anonymous_socket_from_a_foreign_origin_is_refused_not_told_to_log_in() -> None:
    _, connected, _ = await stock_handshake(None, "http://evil.example")
    assert not connected


@pytest.mark.django_db(transaction=True)
async def test_stock_wiring_with_a_star_accepts_same_origin_and_refuses_foreign() -> None:
    user = await sync_to_async(UserFactory)()
    with override_settings(ALLOWED_HOSTS=["*"], CSRF_TRUSTED_ORIGINS=[]):
        _, connected, _ = await stock_handshake(
            user, "http://evil.example", host="notify.example.com"
        )
        assert not connected
        communicator, connected, code = await stock_handshake(
            user, "https://notify.example.com", host="notify.example.com"
        )
        assert connected, code
        assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_stock_wiring_accepts_csrf_trusted_origins() -> None:
    user = await sync_to_async(UserFactory)()
    with override_settings(
        ALLOWED_HOSTS=["notify.example.com"], CSRF_TRUSTED_ORIGINS=["https://*.example.org"]
    ):
        communicator, connected, code = await stock_handshake(
            user, "https://app.example.org", host="notify.example.com"
        )
        assert connected, code
        assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
        await communicator.disconnect()
        _, connected, _ = await stock_handshake(
            user, "http://app.example.org", host="notify.example.com"
        )
        assert not connected
