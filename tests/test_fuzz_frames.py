"""Hypothesis throws thousands of hostile frames at the protocol; nothing may raise."""

import json

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from notifications.events import CLIENT_TYPES, ClientFrame, FrameError, parse_client_frame
from notifications.models import Delivery, Notification
from notifications.services import deliveries_record
from tests.conftest import connect, renew_leaky_pools
from tests.factories import UserFactory

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
ids = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.floats(allow_nan=False),
)
plausible_frames = st.fixed_dictionaries(
    {"type": st.sampled_from([*CLIENT_TYPES, "subscribe", "", "READ"])},
    optional={
        "ids": st.one_of(st.lists(ids, max_size=20), json_values),
        "since": st.one_of(ids, json_values),
        "group": st.text(max_size=30),
    },
).map(json.dumps)
any_text = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    plausible_frames,
    st.integers(min_value=1, max_value=50).map(lambda depth: "[" * depth * 100),
)


@hypothesis_settings(max_examples=2000, deadline=None)
@given(any_text)
def test_parse_client_frame_returns_a_frame_or_raises_frame_error(text):
    try:
        frame = parse_client_frame(text, max_ids=500)
    except FrameError as exc:
        assert exc.code and exc.detail
    else:
        assert isinstance(frame, ClientFrame)
        assert frame.type in CLIENT_TYPES
        assert all(type(i) is int and i > 0 for i in frame.ids)


def _is_ping(text: str) -> bool:
    try:
        return parse_client_frame(text, max_ids=500).type == "ping"
    except FrameError:
        return False


@pytest.fixture
def victim_and_attacker(transactional_db):
    victim, attacker = UserFactory.create_batch(2)
    notification = Notification.objects.create(title="victim's", recipient=victim, audience="user")
    deliveries_record(notification.pk, [victim.pk])
    return victim, attacker


@pytest.mark.django_db(transaction=True)
@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(any_text, min_size=20, max_size=60))
def test_the_consumer_survives_any_sequence_of_frames(victim_and_attacker, frames):
    victim, attacker = victim_and_attacker
    lenient = {**settings.NOTIFICATIONS, "RATE_LIMIT_PER_SECOND": 1e6, "RATE_LIMIT_BURST": 10**6}

    async def attack():
        with override_settings(NOTIFICATIONS=lenient):
            communicator, _ = await connect(attacker)
            for frame in frames:
                await communicator.send_input({"type": "websocket.receive", "text": frame})
            # Every frame was handled without killing the consumer: it still answers. The
            # consumer answers a handler's exception with a server_error frame and stays up,
            # so surviving proves little: no answer up to the last pong (frames are handled
            # in order) may be a server_error.
            await communicator.send_json_to({"type": "ping"})
            pongs = 1 + sum(1 for frame in frames if _is_ping(frame))
            answers = []
            while sum(1 for a in answers if a["type"] == "pong") < pongs:
                answers.append(await communicator.receive_json_from(timeout=10))
            await communicator.disconnect()
            return answers

    answers = async_to_sync(attack)()
    renew_leaky_pools()  # each example's event loop leaves its executor's connection behind
    server_errors = [a for a in answers if a["type"] == "error" and a["code"] == "server_error"]
    assert len(server_errors) == 0, f"{len(server_errors)} frames raised in a handler: {frames}"
    assert Delivery.objects.get(user=victim).state == "pending"
