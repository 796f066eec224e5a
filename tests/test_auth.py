"""SessionAuthMiddleware: the socket's user comes from the Django session, and only from it."""

from importlib import import_module
from io import BytesIO
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user
from django.core.handlers.asgi import ASGIRequest
from django.test import Client, override_settings

from notifications.auth import cookies_from_headers, load_session_and_user, session_key_from_scope
from tests.conftest import session_cookie
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_session_key_is_read_from_the_cookie_header():
    scope = {"headers": [(b"cookie", b"a=1; sessionid=abc123; b=2")]}
    assert session_key_from_scope(scope) == "abc123"
    assert session_key_from_scope({"headers": []}) is None
    assert session_key_from_scope({"headers": [(b"cookie", b"\x00;;=;=\xff")]}) is None


def test_a_logged_in_session_gives_its_user_and_anything_else_is_anonymous():
    user = UserFactory()
    key = session_cookie(user).split("=", 1)[1]
    session, loaded = load_session_and_user(key)
    assert loaded.pk == user.pk
    assert session.session_key == key
    assert not load_session_and_user("no-such-session")[1].is_authenticated
    assert not load_session_and_user(None)[1].is_authenticated


def test_changing_the_password_logs_the_socket_out_too():
    user = UserFactory()
    key = session_cookie(user).split("=", 1)[1]
    user.set_password("a-brand-new-pw-123")
    user.save()
    assert not load_session_and_user(key)[1].is_authenticated


async def test_a_garbled_cookie_header_is_an_anonymous_socket_closed_with_4401():
    from notifyproject.asgi import application

    await sync_to_async(UserFactory)()
    communicator = WebsocketCommunicator(
        application,
        "/ws/notifications/",
        headers=[
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"cookie", b'sessionid="unterminated'),
        ],
    )
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


# ---- cookies as real sites set them ---------------------------------------------------------

KEY = "k" * 32  # a session key's shape: the cookie tests need no session behind it

# Cookie headers seen on real sites, each with the session cookie somewhere in it.
REAL_COOKIE_HEADERS = {
    "consent JSON before": f'consent={{"ads":false,"analytics":true}}; sessionid={KEY}',
    "consent JSON after": f'sessionid={KEY}; consent={{"ads":false}}; csrftoken=abc',
    "OneTrust-style": (
        "OptanonConsent=isGpcEnabled=0&datestamp=Tue+Dec+01+2026&groups=C0001%3A1%2CC0002%3A0; "
        f"sessionid={KEY}"
    ),
    "space in a value": f"theme=dark mode; sessionid={KEY}; lang=en",
    "quoted value with a space": f'pref="a b"; sessionid={KEY}',
    "quoted session cookie": f'sessionid="{KEY}"',
    "commas": f"list=a,b,c; sessionid={KEY}; more=x,y",
    "= in values": f"token=YWJj==; sessionid={KEY}; q=a=b=c",
    "empty name": f"=orphan; sessionid={KEY}",
    "no = at all": f"bare; sessionid={KEY}; alsobare",
    "stray semicolons": f";; sessionid={KEY} ;;",
    "backslash and bracket": f'weird=a\\b[c]; sessionid={KEY}; j=["x"]',
    "duplicates: the last wins, as in Django": f"sessionid=first-value-xx; sessionid={KEY}",
    "a very long header": "; ".join(f"c{i}={'v' * 100}" for i in range(300)) + f"; sessionid={KEY}",
}


def django_cookies(header: bytes) -> dict[str, str]:
    """Return what Django's own ASGI request makes of one Cookie header."""
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"cookie", header)]}
    return ASGIRequest(scope, BytesIO()).COOKIES


@pytest.mark.parametrize("header", REAL_COOKIE_HEADERS.values(), ids=REAL_COOKIE_HEADERS.keys())
def test_the_session_cookie_is_found_whatever_cookies_surround_it(header):
    raw = header.encode("latin-1")
    assert session_key_from_scope({"headers": [(b"cookie", raw)]}) == KEY
    # The page and the socket see the same session: Django's request reads it too.
    assert django_cookies(raw)["sessionid"] == KEY
    # What SimpleCookie (the old parser) got wrong is part of the list, not an accident.
    assert cookies_from_headers([(b"cookie", raw)]) == django_cookies(raw)


def test_non_ascii_cookies_do_not_hide_the_session():
    raw = f"name=café; emoji=🔔; sessionid={KEY}".encode()
    assert session_key_from_scope({"headers": [(b"cookie", raw)]}) == KEY
    assert cookies_from_headers([(b"cookie", raw)]) == django_cookies(raw)


def test_cookie_headers_split_by_http2_are_joined():
    headers = [
        (b"cookie", b'consent={"ads":false}'),
        (b"cookie", f"sessionid={KEY}".encode()),
        (b"cookie", b"theme=dark mode"),
    ]
    assert session_key_from_scope({"headers": headers}) == KEY
    # A duplicate across headers: the later one wins, as within one header.
    later = [(b"cookie", b"sessionid=older-value-xx"), (b"cookie", f"sessionid={KEY}".encode())]
    assert session_key_from_scope({"headers": later}) == KEY


def test_an_empty_session_cookie_is_no_session():
    assert session_key_from_scope({"headers": [(b"cookie", b"sessionid=; a=1")]}) is None
    assert session_key_from_scope({"headers": [(b"cookie", b"")]}) is None


async def handshake(cookie: str) -> tuple[bool, dict]:
    """Open a socket through the project's ASGI stack with ``cookie``; return its first output."""
    from notifyproject.asgi import application

    communicator = WebsocketCommunicator(
        application,
        "/ws/notifications/",
        headers=[
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"cookie", cookie.encode("utf-8")),
        ],
    )
    connected, _ = await communicator.connect(timeout=5)
    first = await communicator.receive_output(timeout=5)
    await communicator.disconnect()
    return connected, first


@pytest.mark.parametrize(
    "before, after",
    [('consent={"ads":false}', "theme=dark mode"), ("theme=dark mode", 'consent={"ads":false}')],
)
async def test_a_socket_with_a_consent_cookie_is_logged_in(before, after):
    user = await sync_to_async(UserFactory)()
    cookie = f"{before}; {await sync_to_async(session_cookie)(user)}; {after}"
    connected, first = await handshake(cookie)
    assert connected
    assert first["type"] == "websocket.send", first  # hello, not a 4401 close
    assert '"hello"' in first["text"]


# ---- a socket never writes the session ------------------------------------------------------

OLD_KEY = "old-secret-key-" + "o" * 40
NEW_KEY = "new-secret-key-" + "n" * 40


def session_rows() -> list[tuple[str, str, object]]:
    from django.contrib.sessions.models import Session

    return list(
        Session.objects.order_by("session_key").values_list(
            "session_key", "session_data", "expire_date"
        )
    )


arows = sync_to_async(session_rows)


def log_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def test_a_handshake_leaves_the_session_row_as_it_was():
    user = await sync_to_async(UserFactory)()
    cookie = await sync_to_async(session_cookie)(user)
    before = await arows()
    connected, first = await handshake(cookie)
    assert connected and first["type"] == "websocket.send"
    assert await arows() == before


async def test_a_key_rotation_keeps_the_socket_logged_in_and_the_session_untouched():
    user = await sync_to_async(UserFactory)()
    with override_settings(SECRET_KEY=OLD_KEY, SECRET_KEY_FALLBACKS=[]):
        client = await sync_to_async(log_in)(user)
    cookie_name = settings.SESSION_COOKIE_NAME
    old_cookie = f"{cookie_name}={client.cookies[cookie_name].value}"
    before = await arows()
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY]):
        # The socket: accepted, and the session is what it was (Django's get_user would
        # have cycled its key here, with no response to hand the browser the new one).
        connected, first = await handshake(old_cookie)
        assert connected and first["type"] == "websocket.send", first
        assert await arows() == before
        # The page: still logged in; Django re-hashes, cycles the key, sets the new cookie.
        page = await sync_to_async(client.get)("/notifications/")
        assert page.status_code == 200
        assert page.wsgi_request.user.pk == user.pk
        new_value = page.cookies[cookie_name].value
        assert new_value and f"{cookie_name}={new_value}" != old_cookie
        # And a socket opened with the new cookie is logged in as well.
        connected, first = await handshake(f"{cookie_name}={new_value}")
        assert connected and first["type"] == "websocket.send", first


async def test_a_rotation_without_the_old_key_logs_the_socket_out_but_writes_nothing():
    user = await sync_to_async(UserFactory)()
    with override_settings(SECRET_KEY=OLD_KEY, SECRET_KEY_FALLBACKS=[]):
        cookie = await sync_to_async(session_cookie)(user)
    before = await arows()
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[]):
        connected, first = await handshake(cookie)
    assert connected
    assert first == {"type": "websocket.close", "code": 4401}
    # Django's get_user would flush it; the next page request does, the socket does not.
    assert await arows() == before


def test_a_session_whose_backend_was_removed_is_anonymous():
    user = UserFactory()
    key = session_cookie(user).split("=", 1)[1]
    with override_settings(AUTHENTICATION_BACKENDS=["tests.no_such.Backend"]):
        assert not load_session_and_user(key)[1].is_authenticated


def test_a_session_of_a_deleted_user_is_anonymous():
    user = UserFactory()
    key = session_cookie(user).split("=", 1)[1]
    user.delete()
    assert not load_session_and_user(key)[1].is_authenticated


def test_a_rotated_key_session_loads_without_a_change_where_django_would_cycle_it():
    user = UserFactory()
    with override_settings(SECRET_KEY=OLD_KEY, SECRET_KEY_FALLBACKS=[]):
        key = session_cookie(user).split("=", 1)[1]
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY]):
        session, loaded = load_session_and_user(key)
        assert loaded.pk == user.pk
        assert session.session_key == key
        assert not session.modified
        # What the socket used to call: Django's get_user cycles the key (a page request
        # sends the new cookie back; a socket could not).
        store = import_module(settings.SESSION_ENGINE).SessionStore(key)
        assert get_user(SimpleNamespace(session=store)).pk == user.pk
        assert store.session_key != key
