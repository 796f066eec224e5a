"""The wire contract: pub/sub messages, client frames, serialization and group names."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from channels.layers import BaseChannelLayer

from notifications import events
from notifications.events import (
    GROUP_ALL,
    GROUP_STAFF,
    ClientFrame,
    EventError,
    FrameError,
    auth_group_group,
    build_created_message,
    parse_client_frame,
    parse_pubsub_message,
    serialize_notification,
    user_group,
)
from notifications.models import Audience, Notification
from tests.factories import NOTIFICATION_FIELDS

MAX_IDS = 5


def frame(**data: object) -> str:
    return json.dumps(data)


def frame_error(text: str | None, max_ids: int = MAX_IDS) -> str:
    with pytest.raises(FrameError) as excinfo:
        parse_client_frame(text, max_ids=max_ids)
    assert excinfo.value.detail
    return excinfo.value.code


# ---- pub/sub -----------------------------------------------------------------------------


@pytest.mark.parametrize("notification_id", [1, 42, 2**63 - 1])
def test_created_message_round_trip(notification_id: int) -> None:
    message = build_created_message(notification_id)
    assert json.loads(message) == {"v": 1, "event": "created", "id": notification_id}
    assert parse_pubsub_message(message) == notification_id
    assert parse_pubsub_message(message.encode()) == notification_id


def test_created_message_is_compact() -> None:
    assert build_created_message(7) == '{"v":1,"event":"created","id":7}'


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json",
        b"\xff\xfe",
        "{",
        "[1, 2]",
        "7",
        "null",
        '"created"',
        '{"event": "created", "id": 1}',
        '{"v": 2, "event": "created", "id": 1}',
        '{"v": "1", "event": "created", "id": 1}',
        '{"v": 0, "event": "created", "id": 1}',
        '{"v": 1, "id": 1}',
        '{"v": 1, "event": "deleted", "id": 1}',
        '{"v": 1, "event": "CREATED", "id": 1}',
        '{"v": 1, "event": "created"}',
        '{"v": 1, "event": "created", "id": null}',
        '{"v": 1, "event": "created", "id": 0}',
        '{"v": 1, "event": "created", "id": -1}',
        '{"v": 1, "event": "created", "id": "1"}',
        '{"v": 1, "event": "created", "id": true}',
        '{"v": 1, "event": "created", "id": 1.0}',
        '{"v": 1, "event": "created", "id": 1.5}',
        '{"v": 1, "event": "created", "id": [1]}',
        f'{{"v": 1, "event": "created", "id": {2**63}}}',
    ],
)
def test_parse_pubsub_message_rejects(payload: str | bytes) -> None:
    with pytest.raises(EventError):
        parse_pubsub_message(payload)


def test_parse_pubsub_message_rejects_deep_nesting() -> None:
    with pytest.raises(EventError):
        parse_pubsub_message("[" * 20_000)


@pytest.mark.parametrize("version", ["true", "1.0"])
def test_parse_pubsub_message_rejects_non_integer_version(version: str) -> None:
    with pytest.raises(EventError):
        parse_pubsub_message(f'{{"v": {version}, "event": "created", "id": 1}}')


def test_event_error_is_a_value_error() -> None:
    # The listener may catch ValueError generally; keep that working.
    assert issubclass(EventError, ValueError)


# ---- client frames -----------------------------------------------------------------------


def test_ping() -> None:
    assert parse_client_frame(frame(type="ping"), max_ids=MAX_IDS) == ClientFrame("ping")


def test_read_all_ignores_extra_keys() -> None:
    parsed = parse_client_frame(frame(type="read_all", ids=[1]), max_ids=MAX_IDS)
    assert parsed == ClientFrame("read_all")


@pytest.mark.parametrize("frame_type", ["ack", "read"])
def test_ids_frames(frame_type: str) -> None:
    parsed = parse_client_frame(frame(type=frame_type, ids=[3, 1, 2]), max_ids=MAX_IDS)
    assert parsed == ClientFrame(frame_type, ids=(3, 1, 2))


@pytest.mark.parametrize("frame_type", ["ack", "read"])
def test_ids_are_deduplicated_in_order(frame_type: str) -> None:
    parsed = parse_client_frame(frame(type=frame_type, ids=[3, 1, 3, 1, 2, 3]), max_ids=10)
    assert parsed.ids == (3, 1, 2)


def test_empty_ids_list_is_allowed() -> None:
    assert parse_client_frame(frame(type="ack", ids=[]), max_ids=MAX_IDS).ids == ()


def test_exactly_max_ids_is_allowed() -> None:
    ids = list(range(1, MAX_IDS + 1))
    assert parse_client_frame(frame(type="read", ids=ids), max_ids=MAX_IDS).ids == tuple(ids)


def test_largest_id_is_allowed() -> None:
    parsed = parse_client_frame(frame(type="ack", ids=[2**63 - 1]), max_ids=MAX_IDS)
    assert parsed.ids == (2**63 - 1,)


@pytest.mark.parametrize("since", [None, 0, 1, 12345])
def test_sync(since: int | None) -> None:
    assert parse_client_frame(frame(type="sync", since=since), max_ids=MAX_IDS) == ClientFrame(
        "sync", since=since
    )


def test_sync_without_since_means_none() -> None:
    assert parse_client_frame(frame(type="sync"), max_ids=MAX_IDS) == ClientFrame("sync")


def test_binary_frame() -> None:
    assert frame_error(None) == "binary_frame"


@pytest.mark.parametrize("text", ["", "{", "not json", "{'type': 'ping'}", '{"type": "ping",}'])
def test_invalid_json(text: str) -> None:
    assert frame_error(text) == "invalid_json"


@pytest.mark.parametrize(
    "text",
    ["[]", '["ping"]', '"ping"', "1", "null", "{}", '{"type": null}', '{"type": 1}',
     '{"type": ["ping"]}', '{"kind": "ping"}'],
)  # fmt: skip
def test_invalid_frame(text: str) -> None:
    assert frame_error(text) == "invalid_frame"


@pytest.mark.parametrize("frame_type", ["PING", "pong", "notification", "hello", "", "read-all"])
def test_unknown_type(frame_type: str) -> None:
    assert frame_error(frame(type=frame_type)) == "unknown_type"


@pytest.mark.parametrize("frame_type", ["ack", "read"])
@pytest.mark.parametrize(
    "ids",
    [None, "1,2", 1, {"1": 1}, [0], [-1], ["1"], [1.0], [1.5], [None], [[1]], [True], [1, True],
     [False], [2**63]],
)  # fmt: skip
def test_invalid_ids(frame_type: str, ids: object) -> None:
    assert frame_error(frame(type=frame_type, ids=ids)) == "invalid_ids"


def test_missing_ids() -> None:
    assert frame_error(frame(type="ack")) == "invalid_ids"


@pytest.mark.parametrize("frame_type", ["ack", "read"])
def test_too_many_ids(frame_type: str) -> None:
    ids = list(range(1, MAX_IDS + 2))
    assert frame_error(frame(type=frame_type, ids=ids)) == "too_many_ids"


def test_too_many_ids_counts_before_dedup() -> None:
    # A flood of one repeated id costs the server as much to parse as distinct ones.
    assert frame_error(frame(type="read", ids=[1] * (MAX_IDS + 1))) == "too_many_ids"


@pytest.mark.parametrize("since", [-1, "5", 1.5, [1], {"id": 1}, True, 2**63])
def test_invalid_since(since: object) -> None:
    assert frame_error(frame(type="sync", since=since)) == "invalid_since"


@pytest.mark.parametrize("since", [False, 0.0])
def test_invalid_since_false_or_float_zero(since: object) -> None:
    assert frame_error(frame(type="sync", since=since)) == "invalid_since"


def test_deeply_nested_json_is_invalid_json_not_a_crash() -> None:
    # json.loads raises RecursionError, not ValueError, on deep nesting; a ~20 KB frame is
    # under MAX_FRAME_BYTES and must come back as an error frame, not kill the consumer.
    assert frame_error("[" * 20_000) == "invalid_json"
    assert frame_error('{"type": "read", "ids": ' + "[" * 20_000) == "invalid_json"


# ---- serialization -----------------------------------------------------------------------


def test_serialize_notification_shape() -> None:
    created_at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    notification = Notification(
        pk=12,
        title="Deploy finished",
        body="All green.",
        level="success",
        url="/deploys/12/",
        audience=Audience.ALL,
        created_at=created_at,
    )
    assert serialize_notification(notification) == {
        "id": 12,
        "title": "Deploy finished",
        "body": "All green.",
        "level": "success",
        "category": "general",
        "critical": False,
        "group_key": "",
        "actor": None,
        "url": "/deploys/12/",
        "created_at": "2024-05-06T07:08:09.123456+00:00",
        "dispatched_at": None,
        "read": False,
        "archived": False,
        "snoozed_until": None,
    }
    read = serialize_notification(notification, read=True)
    assert read["read"] is True
    assert list(read) == NOTIFICATION_FIELDS
    assert datetime.fromisoformat(read["created_at"]) == created_at
    json.dumps(read)  # it goes over the wire as is


def test_server_frames() -> None:
    assert events.hello_frame(3, None) == {"type": "hello", "unread": 3, "last_id": None}
    assert events.pong_frame() == {"type": "pong", "last_id": None, "unread": None}
    assert events.pong_frame(41, 3) == {"type": "pong", "last_id": 41, "unread": 3}
    assert events.read_frame([1, 2], 0) == {"type": "read", "ids": [1, 2], "unread": 0}
    assert events.error_frame("invalid_json", "x") == {
        "type": "error",
        "code": "invalid_json",
        "detail": "x",
    }
    assert events.missed_frame([]) == {"type": "missed", "notifications": [], "cursor": None}
    assert events.missed_frame([], 7)["cursor"] == 7


@pytest.mark.django_db(transaction=True)
async def test_every_layer_event_does_in_the_consumer_what_its_builder_names() -> None:
    """Each builder's event, sent over the real layer, has its effect on a real socket.

    A consumer acts on an event by its ``type`` (through its process's hub): a builder whose
    type the consumer does not act on would make that event vanish without a word.
    """
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import Group

    from notifyproject.asgi import application
    from tests.conftest import receive_type, session_cookie
    from tests.factories import GroupFactory, UserFactory

    user = await sync_to_async(UserFactory)()
    team = await sync_to_async(GroupFactory)()
    cookie = await sync_to_async(session_cookie)(user)
    socket = WebsocketCommunicator(
        application,
        "/ws/notifications/",
        headers=[(b"host", b"localhost"), (b"origin", b"http://localhost"),
                 (b"cookie", cookie.encode())],
    )  # fmt: skip
    assert (await socket.connect(timeout=5))[0]
    await receive_type(socket, "hello")
    layer = get_channel_layer()
    mine = user_group(user.pk)
    payload = serialize_notification(
        Notification(pk=11, title="x", created_at=datetime(2024, 1, 2, tzinfo=UTC))
    )

    # notify.created: the notification frame.
    await layer.group_send(mine, events.layer_created_event(payload, mine))
    assert await socket.receive_json_from(timeout=5) == events.notification_frame(payload)

    # notify.read: the read frame, to every socket of the user.
    await layer.group_send(mine, events.layer_read_event([11], 0, mine))
    assert await socket.receive_json_from(timeout=5) == events.read_frame([11], 0)

    # notify.membership: the socket derives its groups again (the membership row is written
    # without the m2m signal, so only this event can move the socket into the team's group).
    await sync_to_async(Group.user_set.through.objects.create)(user_id=user.pk, group_id=team.pk)
    await layer.group_send(mine, events.layer_membership_event(mine))
    team_group = auth_group_group(team.pk)
    for _ in range(200):
        async with layer.connection(layer.consistent_hash(team_group)) as connection:
            if await connection.zcard(layer._group_key(team_group)):
                break
        await asyncio.sleep(0.025)
    else:
        pytest.fail("notify.membership did not move the socket into its new group")
    await layer.group_send(team_group, events.layer_created_event(payload, team_group))
    assert await socket.receive_json_from(timeout=5) == events.notification_frame(payload)

    # notify.logout: that session's sockets close with 4401.
    session = events.session_group(cookie.partition("=")[2])
    await layer.group_send(session, events.layer_logout_event(session))
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


# ---- group names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [GROUP_ALL, GROUP_STAFF, user_group(1), user_group(2**63 - 1), auth_group_group(1),
     auth_group_group(2**63 - 1)],
)  # fmt: skip
def test_group_names_are_valid_for_channels(name: str) -> None:
    assert BaseChannelLayer().require_valid_group_name(name) is True
    assert len(name) < BaseChannelLayer.MAX_NAME_LENGTH


def test_group_names_are_distinct_per_id_and_kind() -> None:
    names = {user_group(1), user_group(2), auth_group_group(1), auth_group_group(2)}
    assert len(names | {GROUP_ALL, GROUP_STAFF}) == 6


def test_group_names_refuse_what_the_pk_field_refuses() -> None:
    assert user_group("7") == user_group(7)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        user_group("7 evil")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        auth_group_group("1;notifications.all")  # type: ignore[arg-type]
