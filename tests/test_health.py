"""notifications_health: healthy with a listener, unhealthy (exit 1) for each fault."""

import asyncio
import io
import json
import os
import socket
import time
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from notifications import conf
from notifications.listener import NotificationListener
from notifications.models import Notification
from tests.factories import UserFactory


def run_health(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    try:
        call_command("notifications_health", "--json", *args, stdout=out, stderr=io.StringIO())
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, json.loads(out.getvalue())


def isolated(**overrides):
    """A channel of its own, so heartbeats of other tests' listeners do not count."""
    return override_settings(
        NOTIFICATIONS={
            **settings.NOTIFICATIONS,
            "CHANNEL": f"health-{uuid.uuid4().hex[:8]}",
            **overrides,
        }
    )


@pytest.mark.django_db(transaction=True)
async def test_healthy_while_a_listener_runs():
    """This run's listener, named by host and pid, on a channel no other listener writes to."""
    with isolated():
        instance = NotificationListener(handle_signals=False)
        task = asyncio.create_task(instance.run())
        try:
            deadline = time.monotonic() + 10
            while True:  # the first heartbeat follows the subscription
                code, report = await sync_to_async(run_health)()
                # In this one process the listener's start may be reopening the database
                # pool the command shares ("not open yet"): ask again until both are up.
                up = report["listeners"] and report["database"] == "ok"
                if up or time.monotonic() > deadline or task.done():
                    break
                await asyncio.sleep(0.05)
        finally:
            instance.stop()
            await asyncio.wait_for(task, 10)
    assert code == 0, report
    assert report["healthy"] is True
    assert report["database"] == report["redis"] == "ok"
    assert [(beat["host"], beat["pid"]) for beat in report["listeners"]] == [
        (socket.gethostname(), os.getpid())
    ]
    assert report["listeners"][0]["age_seconds"] < 5


@pytest.mark.django_db
def test_a_stale_heartbeat_is_reported_dead(redis_client):
    """A heartbeat older than HEARTBEAT_MAX_AGE (its key not yet expired) is no listener."""
    with isolated():
        settings_ = conf.get()
        prefix = f"{settings_.CHANNEL}:heartbeat:"
        now = time.time()
        beats = {
            "stale": {"at": now - settings_.HEARTBEAT_MAX_AGE - 5, "pid": 4242},
            "fresh": {"at": now - 1, "pid": 4343},
        }
        for host, beat in beats.items():
            redis_client.set(f"{prefix}{host}:{beat['pid']}", json.dumps({**beat, "host": host}))
        try:
            _, with_fresh = run_health()
            redis_client.delete(f"{prefix}fresh:4343")
            code, only_stale = run_health()
        finally:
            redis_client.delete(*(f"{prefix}{host}:{beat['pid']}" for host, beat in beats.items()))
    assert [beat["pid"] for beat in with_fresh["listeners"]] == [4343]
    assert code == 1
    assert only_stale["listeners"] == []
    assert any("heartbeat" in problem for problem in only_stale["problems"])


@pytest.mark.django_db
def test_no_listener_is_unhealthy():
    with isolated():
        code, report = run_health()
    assert code == 1
    assert report["listeners"] == []
    assert any("heartbeat" in problem for problem in report["problems"])


@pytest.mark.django_db
def test_unreachable_redis_is_unhealthy():
    with isolated(REDIS_URL="redis://127.0.0.1:1/0"):
        code, report = run_health()
    assert code == 1
    assert report["redis"].startswith("error")


@pytest.mark.django_db
def test_a_stuck_notification_is_reported():
    user = UserFactory()
    old = timezone.now() - timedelta(minutes=5)
    Notification.objects.bulk_create(
        [Notification(title="stuck", recipient=user, audience="user", created_at=old)]
    )
    Notification.objects.bulk_create([Notification(title="fresh", recipient=user, audience="user")])
    Notification.objects.bulk_create(
        [
            Notification(
                title="scheduled",
                recipient=user,
                audience="user",
                publish_at=timezone.now() + timedelta(hours=1),
                created_at=old,
            )
        ]
    )
    with isolated():
        code, report = run_health()
    assert code == 1
    assert report["backlog"] == 2
    assert report["stuck"] == 1
    assert report["oldest_stuck_seconds"] >= 290
