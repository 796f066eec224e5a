"""Model-signal receivers: welcome, group joins, pushes that never wait, safe deletions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core import serializers
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from notifications import deadlines, events, receivers
from notifications.models import Audience, Delivery, Level, Notification
from notifications.services import broadcast, deliveries_record, notify
from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def examples_on(settings) -> Iterator[None]:
    """Turn on both model-signal examples (tests/settings.py turns them off)."""
    values = {**settings.NOTIFICATIONS, "WELCOME_NEW_USERS": True, "NOTIFY_GROUP_JOINS": True}
    with override_settings(NOTIFICATIONS=values):
        yield


def titles(user) -> list[str]:
    return list(
        Notification.objects.filter(recipient=user).order_by("pk").values_list("title", flat=True)
    )


# ---- welcome -------------------------------------------------------------------------------


@pytest.mark.usefixtures("examples_on")
def test_new_user_is_welcomed() -> None:
    user = UserFactory(username="ada")
    (welcome,) = Notification.objects.filter(recipient=user)
    assert welcome.title == "Welcome, ada!"
    assert welcome.audience == Audience.USER
    assert welcome.level == Level.SUCCESS
    assert welcome.body


@pytest.mark.usefixtures("examples_on")
def test_create_user_is_welcomed_once() -> None:
    user = get_user_model().objects.create_user("grace", password="pw-123456789")
    assert titles(user) == ["Welcome, grace!"]


@pytest.mark.usefixtures("examples_on")
def test_welcome_is_published_on_commit(django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        UserFactory()
    assert len(callbacks) == 1


@pytest.mark.usefixtures("examples_on")
def test_saving_an_existing_user_creates_nothing() -> None:
    user = UserFactory()
    before = Notification.objects.count()
    user.last_login = user.date_joined
    user.save(update_fields=["last_login"])
    user.first_name = "Ada"
    user.save(update_fields=["first_name"])
    user.save()
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    assert Notification.objects.count() == before


@pytest.mark.usefixtures("examples_on")
def test_loaddata_raw_save_creates_nothing() -> None:
    fixture = json.dumps(
        [
            {
                "model": "auth.user",
                "pk": 424242,
                "fields": {
                    "username": "fixture-user",
                    "password": "!",
                    "is_active": True,
                    "date_joined": "2024-01-01T00:00:00Z",
                },
            }
        ]
    )
    for obj in serializers.deserialize("json", fixture):
        obj.save()  # what loaddata does: Model.save_base(raw=True)
    user = get_user_model().objects.get(username="fixture-user")
    assert titles(user) == []
    assert not Notification.objects.exists()


def test_welcome_off_by_setting(settings) -> None:
    values = {**settings.NOTIFICATIONS, "WELCOME_NEW_USERS": False, "NOTIFY_GROUP_JOINS": True}
    with override_settings(NOTIFICATIONS=values):
        UserFactory()
    assert not Notification.objects.exists()


# ---- group joins -----------------------------------------------------------------------------


def test_user_groups_add(examples_on) -> None:
    user = UserFactory()
    group = GroupFactory(name="Editors")
    user.groups.add(group)
    assert titles(user)[1:] == ["You were added to Editors"]


def test_group_user_set_add(examples_on) -> None:
    first, second = UserFactory(), UserFactory()
    group = GroupFactory(name="Reviewers")
    group.user_set.add(first, second)
    assert titles(first)[1:] == ["You were added to Reviewers"]
    assert titles(second)[1:] == ["You were added to Reviewers"]


def test_adding_several_groups(examples_on) -> None:
    user = UserFactory()
    user.groups.add(GroupFactory(name="A"), GroupFactory(name="B"))
    assert sorted(titles(user)[1:]) == ["You were added to A", "You were added to B"]


def test_join_notification_goes_to_that_user_only(examples_on) -> None:
    joiner, bystander = UserFactory(), UserFactory()
    group = GroupFactory(name="Ops")
    bystander.groups.add(group)
    before = titles(bystander)
    joiner.groups.add(group)
    assert titles(bystander) == before
    (joined,) = Notification.objects.filter(recipient=joiner, title__startswith="You were")
    assert joined.audience == Audience.USER


def test_adding_again_creates_nothing(examples_on) -> None:
    user = UserFactory()
    group = GroupFactory(name="Once")
    user.groups.add(group)
    count = Notification.objects.count()
    user.groups.add(group)
    group.user_set.add(user)
    assert Notification.objects.count() == count


def test_removing_and_clearing_create_nothing(examples_on) -> None:
    user = UserFactory()
    group = GroupFactory()
    user.groups.add(group)
    count = Notification.objects.count()
    user.groups.remove(group)
    group.user_set.add(user)
    group.user_set.remove(user)
    user.groups.add(group)
    user.groups.clear()
    group.user_set.add(user)
    group.user_set.clear()
    # Only the three re-adds above notify.
    assert Notification.objects.count() == count + 3


def test_group_joins_off_by_setting(settings) -> None:
    values = {**settings.NOTIFICATIONS, "WELCOME_NEW_USERS": True, "NOTIFY_GROUP_JOINS": False}
    with override_settings(NOTIFICATIONS=values):
        user = UserFactory()
        user.groups.add(GroupFactory())
        GroupFactory().user_set.add(user)
    assert titles(user) == [f"Welcome, {user.username}!"]


def test_off_by_default_in_tests() -> None:
    user = UserFactory()
    user.groups.add(GroupFactory())
    assert not Notification.objects.exists()


# ---- pushes with Redis silent, and deletions ---------------------------------------------


class SilentLayer:
    """A channel layer whose Redis stopped answering (SIGSTOP): every send waits forever."""

    def __init__(self) -> None:
        self.sends: list[str] = []

    async def group_send(self, group: str, message: dict) -> None:
        self.sends.append(group)
        await asyncio.Event().wait()


@pytest.fixture
def silent_layer(monkeypatch) -> SilentLayer:
    layer = SilentLayer()
    monkeypatch.setattr("notifications.dispatch.get_channel_layer", lambda: layer)
    return layer


def test_one_commit_pushes_one_membership_change_and_never_waits_on_a_silent_redis(
    silent_layer, django_capture_on_commit_callbacks
) -> None:
    """The admin's user form saves the user, then the groups: one push, one deadline."""
    receivers._pending_membership.ids = set()  # left by other tests' rolled-back changes
    user, group = UserFactory(), GroupFactory()
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        user.is_staff = True
        user.save()
        user.groups.add(group)
    elapsed = time.monotonic() - started
    assert silent_layer.sends == [events.user_group(user.pk)]
    assert elapsed < deadlines.PUSH_BATCH_SECONDS + 0.5
    user.refresh_from_db()
    assert user.is_staff
    assert list(user.groups.all()) == [group]


def test_a_group_change_for_many_users_pays_one_deadline_per_batch(
    silent_layer, django_capture_on_commit_callbacks
) -> None:
    receivers._pending_membership.ids = set()
    users = UserFactory.create_batch(120)
    group = GroupFactory()
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        group.user_set.add(*users)
    elapsed = time.monotonic() - started
    # The first batch gets no answer within its deadline: the rest is not even tried.
    assert len(silent_layer.sends) == deadlines.PUSH_CONCURRENCY
    assert elapsed < deadlines.PUSH_BATCH_SECONDS + 0.5
    assert group.user_set.count() == 120


def test_logout_with_redis_silent_still_logs_out(client, silent_layer) -> None:
    user = UserFactory()
    client.force_login(user)
    session_key = client.session.session_key
    started = time.monotonic()
    response = client.post("/accounts/logout/")
    elapsed = time.monotonic() - started
    assert response.status_code == 302
    assert silent_layer.sends == [events.session_group(session_key)]
    assert elapsed < deadlines.PUSH_SECONDS + 0.5
    assert not Session.objects.filter(session_key=session_key).exists()
    assert client.get("/notifications/api/").status_code == 401  # anonymous: a JSON 401


def test_deleting_a_user_deletes_their_deliveries_of_every_audience() -> None:
    user, other = UserFactory(), UserFactory()
    mine = notify(user, "for the user")
    everyone = broadcast("for everyone")
    deliveries_record(mine.pk, [user.pk])
    deliveries_record(everyone.pk, [user.pk, other.pk])
    user.delete()
    assert not Delivery.objects.filter(user_id=user.pk).exists()
    assert list(Delivery.objects.values_list("user_id", flat=True)) == [other.pk]


def test_deleting_users_takes_the_delivery_insert_lock_on_postgresql() -> None:
    users = UserFactory.create_batch(2)
    with CaptureQueriesContext(connection) as queries:
        get_user_model().objects.filter(pk__in=[u.pk for u in users]).delete()
    locks = [q["sql"] for q in queries if "pg_advisory_xact_lock(" in q["sql"]]
    assert len(locks) == (2 if connection.vendor == "postgresql" else 0)
