"""SessionAuthMiddleware: the socket's user comes from the Django session, and only from it."""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from notifications.auth import load_session_and_user, session_key_from_scope
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
