"""group_key and actor: stored with the notification, carried in every frame and list."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from notifications.events import serialize_notification
from notifications.selectors import notification_page
from notifications.services import broadcast, notify
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_notification_carries_its_group_key_and_actor(user):
    ana = UserFactory(first_name="Ana", last_name="Lima")
    notification = notify(
        user, "Ana Lima commented on “Launch plan”", group_key=" post:42:comments ", actor=ana
    )
    shown = serialize_notification(notification)
    assert shown["group_key"] == "post:42:comments"
    assert shown["actor"] == {"id": str(ana.pk), "name": "Ana Lima"}


def test_the_actors_name_is_kept_as_sent_and_survives_the_actors_deletion(user):
    bob = UserFactory(username="bob", first_name="", last_name="")
    notification = broadcast("bob joined", actor=bob)
    assert serialize_notification(notification)["actor"] == {"id": str(bob.pk), "name": "bob"}
    bob.delete()
    notification.refresh_from_db()
    assert serialize_notification(notification)["actor"] is None


def test_without_them_the_fields_are_empty(user):
    shown = serialize_notification(notify(user, "Plain"))
    assert (shown["group_key"], shown["actor"]) == ("", None)


def test_lists_carry_them_without_a_query_per_row(user, django_assert_max_num_queries):
    from notifications.dispatch import dispatch_notification

    ana = UserFactory(first_name="Ana")
    for _ in range(5):
        dispatch_notification(notify(user, "c", group_key="post:1", actor=ana).pk)
    with django_assert_max_num_queries(3):
        page = notification_page(user)
    assert {n["actor"]["name"] for n in page.results} == {"Ana"}


def test_a_group_key_longer_than_200_characters_is_refused(user):
    with pytest.raises(ValidationError) as caught:
        notify(user, "x", group_key="k" * 201)
    assert "group_key" in caught.value.message_dict
