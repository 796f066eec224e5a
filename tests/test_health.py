"""notifications_health: healthy with a listener, unhealthy (exit 1) for each fault."""

import io
import json
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

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
async def test_healthy_while_a_listener_runs(listener):
    code, report = await sync_to_async(run_health)()
    assert code == 0, report
    assert report["healthy"] is True
    assert report["database"] == report["redis"] == "ok"
    assert len(report["listeners"]) >= 1


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
