"""``manage.py watch_notifications``: lines for each event, filters, and it never dispatches.

The live tests run the command as a subprocess beside a real listener and daphne, as a
person at a second terminal would.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
import time

import pytest
import redis
import websockets
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command

from notifications import conf, observe
from notifications.management.commands.watch_notifications import Command
from notifications.models import Delivery, Notification
from notifications.services import broadcast, notify
from tests import processes
from tests.conftest import session_cookie
from tests.factories import UserFactory

WATCH = [sys.executable, "manage.py", "watch_notifications"]


# --- in process: formatting and filters -----------------------------------------------------


def watcher(**options) -> tuple[Command, io.StringIO]:
    out = io.StringIO()
    command = Command(stdout=out, stderr=io.StringIO(), no_color=True)
    command.configure(**options)
    return command, out


def message(event: str, **fields) -> str:
    return json.dumps({"v": 1, "event": event, "at": "2030-01-31T09:00:01.250+00:00", **fields})


@pytest.mark.django_db
def test_lines_show_time_event_id_title_level_and_details():
    alice = UserFactory(username="alice")
    notification = Notification.objects.create(
        title="Deploy done", level="success", audience="user", recipient=alice
    )
    command, out = watcher()

    command.handle_message(json.dumps({"v": 1, "event": "created", "id": notification.pk}))
    command.handle_message(message("dispatched", id=notification.pk, audience="user", recipients=1))
    command.handle_message(message("delivered", user=str(alice.pk), ids=[notification.pk]))
    command.handle_message(
        message("snoozed", user=str(alice.pk), ids=[notification.pk], until="2030-02-01T08:00Z")
    )
    command.handle_message(message("expired", id=999_999))
    command.handle_message(message("probe", id=None, nonce="x"))  # the listener's own
    command.handle_message(b"not json")

    lines = out.getvalue().splitlines()
    assert len(lines) == 5, lines
    created, dispatched, delivered, snoozed, gone = lines
    assert created.split()[1:4] == ["created", f"#{notification.pk}", "success"]
    assert '"Deploy done"' in created and "for alice" in created
    assert "dispatched" in dispatched and "user, 1 recipient" in dispatched
    local = time.strftime("%H:%M:%S", time.localtime(1896080401))  # 2030-01-31 09:00:01 UTC
    assert dispatched.startswith(f"{local}.250 ")
    assert "delivered" in delivered and "alice, 1 item" in delivered
    assert "snoozed" in snoozed and "until 2030-02-01" in snoozed
    assert "#999999" in gone and "(not in the database)" in gone


@pytest.mark.django_db
def test_json_lines_carry_the_event_and_the_titles():
    alice = UserFactory(username="alice")
    first = Notification.objects.create(title="One", audience="user", recipient=alice)
    second = Notification.objects.create(
        title="Two", level="error", audience="user", recipient=alice
    )
    command, out = watcher(as_json=True)

    command.handle_message(message("read", user=str(alice.pk), ids=[first.pk, second.pk]))

    record = json.loads(out.getvalue())
    assert record["event"] == "read" and record["username"] == "alice"
    assert record["ids"] == [first.pk, second.pk]
    assert record["notifications"] == [
        {"id": first.pk, "title": "One", "level": "info"},
        {"id": second.pk, "title": "Two", "level": "error"},
    ]


@pytest.mark.django_db
def test_user_and_level_filters():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    for_alice = Notification.objects.create(title="A", audience="user", recipient=alice)
    for_bob = Notification.objects.create(title="B", level="error", audience="user", recipient=bob)
    everyone = Notification.objects.create(title="All", level="error", audience="all")
    command, out = watcher(user="alice")

    command.handle_message(message("dispatched", id=for_alice.pk, audience="user", recipients=1))
    command.handle_message(message("dispatched", id=for_bob.pk, audience="user", recipients=1))
    command.handle_message(message("dispatched", id=everyone.pk, audience="all", recipients=2))
    command.handle_message(message("read", user=str(bob.pk), ids=[for_bob.pk]))
    command.handle_message(message("read", user=str(alice.pk), ids=[everyone.pk]))
    lines = out.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == [
        f"#{for_alice.pk}",
        f"#{everyone.pk}",
        f"#{everyone.pk}",
    ]

    command, out = watcher(user=str(bob.pk), level="error")
    command.handle_message(message("dispatched", id=for_alice.pk, audience="user", recipients=1))
    command.handle_message(message("dispatched", id=for_bob.pk, audience="user", recipients=1))
    command.handle_message(message("read", user=str(bob.pk), ids=[for_alice.pk, for_bob.pk]))
    lines = out.getvalue().splitlines()
    assert [line.split()[1:3] for line in lines] == [
        ["dispatched", f"#{for_bob.pk}"],
        ["read", f"#{for_bob.pk}"],
    ]


@pytest.mark.django_db
def test_unknown_user_is_a_command_error():
    with pytest.raises(CommandError, match="--user"):
        call_command("watch_notifications", "--user", "nobody")


# --- live: beside a real listener and daphne ------------------------------------------------


def start_watch(env: dict[str, str], *args: str) -> processes.Process:
    proc = processes.spawn("watch_notifications", [*WATCH, *args], env)
    proc.wait_for_line("Watching", timeout=30)
    return proc


def records(proc: processes.Process) -> list[dict]:
    return [json.loads(line) for line in list(proc.lines) if line.startswith("{")]


def wait_for_record(proc: processes.Process, timeout: float = 10, **match) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in records(proc):
            if all(record.get(key) == value for key, value in match.items()):
                return record
        proc.check_alive("while watching")
        time.sleep(0.05)
    raise AssertionError(f"no line matching {match} within {timeout} s:\n{proc.output}")


def stop_cleanly(proc: processes.Process) -> None:
    proc.signal(signal.SIGTERM)
    assert proc.popen.wait(10) == 0, proc.output
    proc.stop()
    assert "watch_notifications stopped." in proc.output


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_watching_without_a_listener_dispatches_nothing(live_env):
    """Runs before this module's live stack exists: with no listener anywhere, what the
    watcher sees must stay undispatched (as a second listen_notifications would not)."""
    user = UserFactory()
    (unannounced,) = Notification.objects.bulk_create(
        [Notification(title="Nobody announced me", audience="user", recipient=user)]
    )  # no save(): no publish; only a listener's sweep would dispatch it
    began = time.monotonic()
    proc = start_watch(live_env, "--json")
    try:
        announced = notify(user, "Seen, not sent")
        record = wait_for_record(proc, event="created", id=announced.pk)
        assert record["notifications"] == [
            {"id": announced.pk, "title": "Seen, not sent", "level": "info"}
        ]
        # Two sweep intervals: any dispatcher would have taken both rows by then.
        time.sleep(max(0.0, began + 2 * conf.get().SWEEP_INTERVAL + 0.5 - time.monotonic()))
        undispatched = Notification.objects.filter(dispatched_at__isnull=True)
        assert undispatched.filter(pk=unannounced.pk).exists(), "a stray listener is running"
        assert undispatched.filter(pk=announced.pk).exists()
        assert not Delivery.objects.exists()
    finally:
        stop_cleanly(proc)


async def open_ws(stack, user):
    cookie = await sync_to_async(session_cookie)(user)
    return await websockets.connect(
        f"ws://127.0.0.1:{stack['port']}/ws/notifications/",
        origin=f"http://127.0.0.1:{stack['port']}",
        additional_headers={"Cookie": cookie},
        open_timeout=5,
    )


async def recv_type(ws, frame_type, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if frame["type"] == frame_type:
            return frame


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_watch_shows_created_and_dispatched_from_a_live_stack(live_stack):
    alice = UserFactory(username="alice-watch")
    bob = UserFactory(username="bob-watch")
    proc = start_watch(live_stack["env"], "--json")
    try:
        one = notify(alice, "For Alice")
        wait_for_record(proc, event="created", id=one.pk)
        dispatched = wait_for_record(proc, event="dispatched", id=one.pk)
        assert (dispatched["audience"], dispatched["recipients"]) == ("user", 1)
        assert dispatched["notifications"][0]["title"] == "For Alice"

        everyone = broadcast("For all", level="warning")
        dispatched = wait_for_record(proc, event="dispatched", id=everyone.pk)
        assert (dispatched["audience"], dispatched["recipients"]) == ("all", 2)
        # The listener wrote its rows, one per recipient (alice and bob).
        assert Delivery.objects.filter(notification=one).count() == 1
        assert set(
            Delivery.objects.filter(notification=everyone).values_list("user_id", flat=True)
        ) == {alice.pk, bob.pk}
    finally:
        stop_cleanly(proc)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_watch_shows_delivered_and_read_from_a_browser_socket(live_stack):
    """Needs the consumer's aemit calls (delivered on ack, read on read)."""
    user = await sync_to_async(UserFactory)(username="carol-watch")
    proc = await sync_to_async(start_watch)(live_stack["env"], "--json", "--user", "carol-watch")
    try:
        async with await open_ws(live_stack, user) as ws:
            await recv_type(ws, "hello")
            notification = await sync_to_async(notify)(user, "Ack me")
            frame = await recv_type(ws, "notification")
            assert frame["notification"]["id"] == notification.pk
            await ws.send(json.dumps({"type": "ack", "ids": [notification.pk]}))
            # Acks are written in batches (ACK_WINDOW): a read sent before its batch wrote
            # would find the row read already, and the read then stands for the delivery.
            delivered = await sync_to_async(wait_for_record)(proc, event="delivered")
            await ws.send(json.dumps({"type": "read", "ids": [notification.pk]}))
            await recv_type(ws, "read")
            read = await sync_to_async(wait_for_record)(proc, event="read")
            for record in (delivered, read):
                assert record["ids"] == [notification.pk]
                assert record["username"] == "carol-watch"
                assert record["user"] == str(user.pk)
    finally:
        await sync_to_async(stop_cleanly)(proc)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_watch_survives_a_redis_restart(live_env):
    port = processes.free_port()
    server = processes.start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    proc = start_watch({**live_env, "TEST_REDIS_URL": url, "REDIS_URL": url})
    try:
        server.stop()
        proc.wait_for_line("Redis connection lost", timeout=15)
        server = processes.start_redis(port)
        proc.wait_for_line("Reconnected to Redis", timeout=15)
        client = redis.Redis.from_url(url)
        try:
            client.publish(observe.watch_channel(), message("expired", id=424242))
        finally:
            client.close()
        proc.wait_for_line("#424242", timeout=10)
        assert sum("Redis connection lost" in line for line in proc.lines) == 1
    finally:
        stop_cleanly(proc)
        server.stop()
