"""Notification: audience validation, QuerySets, properties, and the publish-on-commit hook."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from notifications import conf
from notifications.models import Audience, Notification
from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db


def build(**fields: Any) -> Notification:
    """Return an unsaved notification with a valid title and the given fields."""
    return Notification(**{"title": "Hello", **fields})


def create(**fields: Any) -> Notification:
    notification = build(**fields)
    notification.save()
    return notification


def error_fields(notification: Notification) -> set[str]:
    with pytest.raises(ValidationError) as excinfo:
        notification.full_clean()
    return set(excinfo.value.message_dict)


# ---- clean(): each audience needs exactly its target -------------------------------------


def test_user_audience_with_recipient_is_valid() -> None:
    build(audience=Audience.USER, recipient=UserFactory()).full_clean()


def test_user_audience_needs_recipient() -> None:
    assert error_fields(build(audience=Audience.USER)) == {"recipient"}


def test_user_audience_refuses_group() -> None:
    notification = build(audience=Audience.USER, recipient=UserFactory(), group=GroupFactory())
    assert error_fields(notification) == {"group"}


def test_group_audience_with_group_is_valid() -> None:
    build(audience=Audience.GROUP, group=GroupFactory()).full_clean()


def test_group_audience_needs_group() -> None:
    assert error_fields(build(audience=Audience.GROUP)) == {"group"}


def test_group_audience_refuses_recipient() -> None:
    notification = build(audience=Audience.GROUP, group=GroupFactory(), recipient=UserFactory())
    assert error_fields(notification) == {"recipient"}


@pytest.mark.parametrize("audience", [Audience.STAFF, Audience.ALL])
def test_staff_and_all_take_no_target(audience: str) -> None:
    build(audience=audience).full_clean()


@pytest.mark.parametrize("audience", [Audience.STAFF, Audience.ALL])
def test_staff_and_all_refuse_recipient_and_group(audience: str) -> None:
    assert error_fields(build(audience=audience, recipient=UserFactory())) == {"recipient"}
    assert error_fields(build(audience=audience, group=GroupFactory())) == {"group"}
    both = build(audience=audience, recipient=UserFactory(), group=GroupFactory())
    assert error_fields(both) == {"recipient", "group"}


def test_unknown_audience_is_rejected() -> None:
    assert "audience" in error_fields(build(audience="planet"))


def test_unknown_level_is_rejected() -> None:
    assert "level" in error_fields(build(audience=Audience.ALL, level="fatal"))


def test_expiry_must_come_after_publish_time() -> None:
    publish_at = timezone.now() + timedelta(hours=1)
    same = build(audience=Audience.ALL, publish_at=publish_at, expires_at=publish_at)
    assert error_fields(same) == {"expires_at"}
    earlier = build(
        audience=Audience.ALL, publish_at=publish_at, expires_at=publish_at - timedelta(seconds=1)
    )
    assert error_fields(earlier) == {"expires_at"}
    build(
        audience=Audience.ALL, publish_at=publish_at, expires_at=publish_at + timedelta(seconds=1)
    ).full_clean()


@pytest.mark.parametrize("title", ["", "   ", "\t\n"])
def test_blank_title_is_rejected(title: str) -> None:
    assert error_fields(build(audience=Audience.ALL, title=title)) == {"title"}


def test_title_up_to_200_characters() -> None:
    build(audience=Audience.ALL, title="x" * 200).full_clean()
    assert error_fields(build(audience=Audience.ALL, title="x" * 201)) == {"title"}


def test_bad_url_is_rejected_by_full_clean() -> None:
    assert error_fields(build(audience=Audience.ALL, url="javascript:alert(1)")) == {"url"}


# ---- QuerySets ---------------------------------------------------------------------------


def test_undispatched() -> None:
    now = timezone.now()
    pending = create(audience=Audience.ALL)
    scheduled = create(audience=Audience.ALL, publish_at=now + timedelta(hours=1))
    create(audience=Audience.ALL, dispatched_at=now)
    assert set(Notification.objects.undispatched()) == {pending, scheduled}


def test_due() -> None:
    now = timezone.now()
    unscheduled = create(audience=Audience.ALL)
    past = create(audience=Audience.ALL, publish_at=now - timedelta(minutes=1))
    exactly_now = create(audience=Audience.ALL, publish_at=now)
    future = create(audience=Audience.ALL, publish_at=now + timedelta(minutes=1))
    create(audience=Audience.ALL, dispatched_at=now)
    create(audience=Audience.ALL, publish_at=now - timedelta(minutes=1), dispatched_at=now)

    assert set(Notification.objects.due(now)) == {unscheduled, past, exactly_now}
    later = now + timedelta(minutes=2)
    assert set(Notification.objects.due(later)) == {unscheduled, past, exactly_now, future}


def test_due_defaults_to_now() -> None:
    past = create(audience=Audience.ALL, publish_at=timezone.now() - timedelta(seconds=5))
    create(audience=Audience.ALL, publish_at=timezone.now() + timedelta(hours=1))
    assert list(Notification.objects.due()) == [past]


def test_live() -> None:
    now = timezone.now()
    forever = create(audience=Audience.ALL)
    later = create(audience=Audience.ALL, expires_at=now + timedelta(minutes=1))
    create(audience=Audience.ALL, expires_at=now - timedelta(minutes=1))
    create(audience=Audience.ALL, expires_at=now)
    assert set(Notification.objects.live(now)) == {forever, later}
    assert set(Notification.objects.live(now + timedelta(minutes=2))) == {forever}


# ---- properties --------------------------------------------------------------------------


def test_is_scheduled() -> None:
    now = timezone.now()
    assert build(publish_at=now + timedelta(minutes=5)).is_scheduled
    assert not build().is_scheduled
    assert not build(publish_at=now - timedelta(minutes=5)).is_scheduled
    # Once dispatched it is no longer waiting, whatever publish_at says.
    assert not build(publish_at=now + timedelta(minutes=5), dispatched_at=now).is_scheduled


def test_is_expired() -> None:
    now = timezone.now()
    assert build(expires_at=now - timedelta(seconds=1)).is_expired
    assert not build(expires_at=now + timedelta(minutes=5)).is_expired
    assert not build().is_expired


def test_str_is_title() -> None:
    assert str(build(title="Server restarted")) == "Server restarted"


# ---- save(): publish on commit, new rows only ---------------------------------------------


def test_create_registers_one_publish_on_commit(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        create(audience=Audience.ALL)
    assert len(callbacks) == 1


def test_update_registers_no_publish(django_capture_on_commit_callbacks) -> None:
    notification = create(audience=Audience.ALL)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notification.title = "Changed"
        notification.save()
        notification.save(update_fields=["title"])
        Notification.objects.filter(pk=notification.pk).update(recipient_count=3)
    assert callbacks == []


def test_objects_create_registers_publish(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        Notification.objects.create(title="Hi", audience=Audience.ALL)
        Notification.objects.create(title="Hi again", audience=Audience.ALL)
    assert len(callbacks) == 2


def _wait_for_created(pubsub: Any, notification_id: int, timeout: float) -> bool:
    """Return True when the created message for ``notification_id`` arrives in time."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
        if message is None:
            continue
        payload = json.loads(message["data"])
        if payload == {"v": 1, "event": "created", "id": notification_id}:
            return True
    return False


def _published_before_now(pubsub: Any, redis_client: Any, notification_id: int) -> bool:
    """Return True if the created message for ``notification_id`` was published before now.

    No window of silence (0.3 s passes on a loaded machine whether or not the message was
    merely late): Redis delivers a connection's subscriptions in the order it handled the
    PUBLISHes, so a marker published now, on a channel of its own, comes after anything
    published before it.
    """
    created = {"v": 1, "event": "created", "id": notification_id}
    marker = f"{conf.get().CHANNEL}:marker"
    found = False
    pubsub.subscribe(marker)
    sent = False
    while True:
        message = pubsub.get_message(timeout=5)
        assert message is not None, "the marker never came back"
        channel = message["channel"].decode()
        if message["type"] == "subscribe" and channel == marker and not sent:
            redis_client.publish(marker, "marker")  # subscribed: now it will come back
            sent = True
        elif message["type"] == "message" and channel == marker:
            pubsub.unsubscribe(marker)
            return found
        elif message["type"] == "message" and json.loads(message["data"]) == created:
            found = True


@pytest.fixture
def subscription(redis_client):
    pubsub = redis_client.pubsub()
    pubsub.subscribe(conf.get().CHANNEL)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    yield pubsub
    pubsub.close()


@pytest.mark.django_db(transaction=True)
def test_publishes_only_after_commit(subscription, redis_client) -> None:
    with transaction.atomic():
        notification = create(audience=Audience.ALL)
        assert not _published_before_now(subscription, redis_client, notification.pk)
    assert _wait_for_created(subscription, notification.pk, timeout=3)


@pytest.mark.django_db(transaction=True)
def test_rolled_back_create_never_publishes(subscription, redis_client) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        notification = create(audience=Audience.ALL)
        raise RuntimeError("roll back")
    assert not _published_before_now(subscription, redis_client, notification.pk)
    assert not Notification.objects.filter(pk=notification.pk).exists()
