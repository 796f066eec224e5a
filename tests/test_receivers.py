"""Model-signal receivers: welcome new users, tell users they joined a group."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.core import serializers
from django.test import override_settings

from notifications.models import Audience, Level, Notification
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
