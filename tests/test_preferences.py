"""Categories and preferences: quiet hours, the API, mutes at dispatch and at the socket.

The pipeline tests run the real listener, Redis and channel layer: a muted user gets no
Delivery row and no frame, while the rest of the audience gets one layer message.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.test import override_settings

from notifications import conf
from notifications.categories import declared
from notifications.models import CategoryPreference, Delivery, Notification
from notifications.preferences import (
    PreferencesError,
    in_quiet_hours,
    muted_categories,
    preferences_read,
    preferences_write,
)
from notifications.services import broadcast, notify
from tests.conftest import connect, receive_type
from tests.factories import UserFactory
from tests.test_pipeline import assert_nothing_more, recorded, refreshed, wait_until

UTC = dt.UTC
BERLIN = "Europe/Berlin"


def at(text: str, zone: str = "UTC") -> dt.datetime:
    """A moment given as local wall-clock text in ``zone`` (2026-12-07 is a Monday)."""
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


T = dt.time


# ---- quiet hours (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-12-07 21:59", False),  # Monday evening, before it starts
        ("2026-12-07 22:00", True),  # Monday 22:00: starts
        ("2026-12-08 06:59", True),  # Tuesday morning: still Monday's night
        ("2026-12-08 07:00", False),  # ends
        ("2026-12-12 02:00", True),  # Saturday morning: Friday's night
        ("2026-12-12 23:00", False),  # Saturday evening: not a listed day
        ("2026-12-07 02:00", False),  # Monday morning: Sunday's night, Sunday not listed
    ],
)
def test_overnight_quiet_hours_start_on_listed_days_and_end_the_morning_after(moment, expected):
    weekdays = [0, 1, 2, 3, 4]
    assert in_quiet_hours(True, T(22), T(7), weekdays, BERLIN, at(moment, BERLIN)) is expected


def test_quiet_hours_are_read_in_the_users_zone():
    # 21:30 UTC is 22:30 in Berlin (winter): quiet there, not in UTC.
    moment = at("2026-12-07 21:30")
    assert in_quiet_hours(True, T(22), T(7), range(7), BERLIN, moment)
    assert not in_quiet_hours(True, T(22), T(7), range(7), "UTC", moment)


def test_daytime_quiet_hours_and_whole_days_and_off():
    monday_noon = at("2026-12-07 12:00")
    assert in_quiet_hours(True, T(9), T(17), [0], "UTC", monday_noon)
    assert not in_quiet_hours(True, T(9), T(17), [1], "UTC", monday_noon)
    assert in_quiet_hours(True, T(0), T(0), [0], "UTC", monday_noon)  # start == end: all day
    assert not in_quiet_hours(False, T(0), T(0), range(7), "UTC", monday_noon)


def test_an_unknown_zone_falls_back_to_utc_rather_than_failing():
    assert in_quiet_hours(True, T(12), T(13), [0], "Mars/Olympus", at("2026-12-07 12:30"))


# ---- categories and the Python API --------------------------------------------------------


def test_the_demo_declares_its_categories_in_order():
    assert list(declared()) == ["general", "mentions", "digest", "security"]
    assert declared()["security"].mutable is False
    assert declared()["digest"].default is False


@pytest.mark.django_db
def test_notify_takes_a_declared_category_and_refuses_others(user):
    assert notify(user, "Hi").category == "general"
    assert notify(user, "You were mentioned", category="mentions").category == "mentions"
    with pytest.raises(ValidationError) as caught:
        notify(user, "Oops", category="nope")
    assert "category" in caught.value.message_dict


@pytest.mark.django_db
def test_bad_category_settings_are_reported_by_the_checks():
    with override_settings(
        NOTIFICATIONS={
            "CATEGORIES": {"Bad Slug": {}, "ok": {"mutable": "no"}},
            "DEFAULT_CATEGORY": "missing",
        }
    ):
        ids = {problem.id for problem in conf.problems(conf.user_values())}
        assert {"E007", "E008"} <= ids
        # The site still runs on a working set.
        assert "ok" in declared() or "general" in declared()


@pytest.mark.django_db
def test_reading_preferences_gives_every_category_with_its_defaults(user):
    shown = preferences_read(user)
    assert shown["categories"]["general"] == {
        "label": "General",
        "description": "Announcements and everything else.",
        "mutable": True,
        "bell": True,
        "toasts": True,
    }
    assert shown["categories"]["digest"]["bell"] is False  # off unless switched on
    assert shown["quiet_hours"] == {
        "enabled": False,
        "start": "22:00",
        "end": "07:00",
        "days": [0, 1, 2, 3, 4, 5, 6],
        "time_zone": "UTC",
        "active": False,
    }


@pytest.mark.django_db
def test_writing_any_part_keeps_the_rest(user):
    preferences_write(user, {"categories": {"mentions": {"toasts": False}}})
    shown = preferences_write(
        user,
        {"quiet_hours": {"enabled": True, "start": "21:30", "days": [5, 6]}},
        zone=BERLIN,
    )
    assert shown["categories"]["mentions"] == {
        **shown["categories"]["mentions"],
        "bell": True,
        "toasts": False,
    }
    assert shown["quiet_hours"]["start"] == "21:30"
    assert shown["quiet_hours"]["end"] == "07:00"
    assert shown["quiet_hours"]["days"] == [5, 6]
    assert shown["quiet_hours"]["time_zone"] == BERLIN
    assert muted_categories(user.pk) == frozenset({"digest"})
    preferences_write(user, {"categories": {"general": {"bell": False}, "digest": {"bell": True}}})
    assert muted_categories(user.pk) == frozenset({"general"})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"categories": {"security": {"bell": False}}}, "cannot be muted"),
        ({"categories": {"nope": {"bell": False}}}, "Unknown category"),
        ({"categories": {"general": {"bell": "no"}}}, "true or false"),
        ({"categories": {"general": {"sound": True}}}, "bell and toasts only"),
        ({"quiet_hours": {"start": "25:00"}}, "HH:MM"),
        ({"quiet_hours": {"days": [7]}}, "0-6"),
        ({"quiet_hours": {"days": [True]}}, "0-6"),
        ({"colour": "red"}, "Unknown keys"),
        ([], "Send an object"),
    ],
)
def test_bad_changes_say_why_and_save_nothing(user, data, says):
    # Alongside a valid change, which must not be saved either.
    if isinstance(data, dict):
        valid = {"mentions": {"bell": False}}
        data = {**data, "categories": {**valid, **data.get("categories", {})}}
    with pytest.raises(PreferencesError, match=says):
        preferences_write(user, data)
    assert not CategoryPreference.objects.filter(user=user).exists()


# ---- HTTP ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_reads_and_writes_preferences_in_the_users_zone(client, user):
    url = "/notifications/api/preferences/"
    assert client.get(url).status_code == 401
    client.force_login(user)
    assert client.get(url).json()["categories"]["general"]["bell"] is True
    client.cookies["tz"] = BERLIN
    response = client.put(
        url,
        json.dumps({"categories": {"mentions": {"bell": False}}, "quiet_hours": {"enabled": True}}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["categories"]["mentions"]["bell"] is False
    assert response.json()["quiet_hours"]["time_zone"] == BERLIN
    bad = client.put(
        url,
        json.dumps({"categories": {"security": {"bell": False}}}),
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid", "detail": "Security notifications cannot be muted."}
    assert client.put(url, "{", content_type="application/json").status_code == 400
    assert client.post(url).status_code == 405


@pytest.mark.django_db
def test_the_api_refuses_a_put_without_csrf_token(user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.put("/notifications/api/preferences/", "{}", content_type="application/json")
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"


# ---- through the pipeline ------------------------------------------------------------


pipeline = [pytest.mark.pipeline, pytest.mark.django_db(transaction=True)]


@sync_to_async
def mute(user, slug, bell=False):
    preferences_write(user, {"categories": {slug: {"bell": bell}}})


@sync_to_async
def rows_of(notification):
    return set(Delivery.objects.filter(notification=notification).values_list("user_id", flat=True))


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_a_broadcast_skips_those_who_muted_its_category(listener):
    users = await sync_to_async(UserFactory.create_batch)(4)
    muted = users[0]
    await mute(muted, "mentions")
    sockets = {user.pk: (await connect(user))[0] for user in users}
    notification = await sync_to_async(broadcast)("Ana mentioned everyone", category="mentions")
    for user in users[1:]:
        frame = await receive_type(sockets[user.pk], "notification")
        assert frame["notification"]["id"] == notification.pk
        assert frame["notification"]["category"] == "mentions"
    await wait_until(lambda: recorded(notification))
    assert await rows_of(notification) == {user.pk for user in users[1:]}
    saved = await refreshed(notification)
    assert (saved.recipient_count, saved.muted_count) == (3, 1)
    await assert_nothing_more(sockets[muted.pk], muted, listener)  # no frame, no row
    for communicator in sockets.values():
        await communicator.disconnect()


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_a_critical_notification_ignores_mutes(listener):
    user = await sync_to_async(UserFactory)()
    await mute(user, "general")
    socket, _ = await connect(user)
    notification = await sync_to_async(broadcast)("Outage", critical=True)
    frame = await receive_type(socket, "notification")
    assert frame["notification"]["id"] == notification.pk
    assert frame["notification"]["critical"] is True
    await wait_until(lambda: recorded(notification))
    assert await rows_of(notification) == {user.pk}
    await socket.disconnect()


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_one_user_notifications_of_a_muted_category_make_no_row_and_no_push(listener):
    user = await sync_to_async(UserFactory)()
    await mute(user, "mentions")
    socket, _ = await connect(user)
    quiet = await sync_to_async(notify)(user, "Muted mention", category="mentions")
    loud = await sync_to_async(notify)(user, "Still shown")
    frame = await receive_type(socket, "notification")
    assert frame["notification"]["id"] == loud.pk  # the muted one never came before it
    assert await rows_of(quiet) == set()
    saved = await refreshed(quiet)
    assert saved.dispatched_at is not None
    assert (saved.recipient_count, saved.muted_count) == (0, 1)
    await socket.disconnect()


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_a_category_off_by_default_reaches_only_who_switched_it_on(listener):
    keen, other = await sync_to_async(UserFactory.create_batch)(2)
    await mute(keen, "digest", bell=True)
    notification = await sync_to_async(broadcast)("Your week", category="digest")
    await wait_until(lambda: recorded(notification))
    assert await rows_of(notification) == {keen.pk}
    assert (await refreshed(notification)).muted_count == 1
    assert other.pk not in await rows_of(notification)


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_a_change_reaches_open_sockets_at_once(listener):
    user = await sync_to_async(UserFactory)()
    first, _ = await connect(user)
    second, _ = await connect(user)
    await mute(user, "mentions")
    for communicator in (first, second):
        frame = await receive_type(communicator, "preferences")
        assert frame["preferences"]["categories"]["mentions"]["bell"] is False
    # The sockets drop the muted category from now on (the pushed frame told them).
    notification = await sync_to_async(broadcast)("Mentions for all", category="mentions")
    await wait_until(lambda: recorded(notification))
    await assert_nothing_more(first, user, listener)
    await mute(user, "mentions", bell=True)
    assert (await receive_type(first, "preferences"))["preferences"]["categories"]["mentions"][
        "bell"
    ]
    again = await sync_to_async(broadcast)("Mentions again", category="mentions")
    assert (await receive_type(first, "notification"))["notification"]["id"] == again.pk
    for communicator in (first, second):
        await communicator.disconnect()


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
async def test_a_socket_that_missed_the_change_reads_mutes_at_its_next_ping():
    user = await sync_to_async(UserFactory)()
    socket, _ = await connect(user)
    # Written without the push (as when Redis was silent at that moment).
    await sync_to_async(CategoryPreference.objects.create)(
        user=user, category="mentions", bell=False
    )
    await socket.send_json_to({"type": "ping"})
    await receive_type(socket, "pong")
    from channels.layers import get_channel_layer

    from notifications import events

    payload = events.serialize_notification(
        await sync_to_async(Notification)(pk=123_456, title="m", category="mentions")
    )
    group = events.GROUP_ALL
    await get_channel_layer().group_send(group, events.layer_created_event(payload, group))
    await assert_nothing_more(socket, user)
    await socket.disconnect()


# ---- a silent Redis -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_change_is_saved_within_the_push_deadline_when_redis_is_silent(
    user, monkeypatch, django_capture_on_commit_callbacks
):
    import time

    from notifications import deadlines
    from tests.test_receivers import SilentLayer

    layer = SilentLayer()
    monkeypatch.setattr("notifications.preferences.get_channel_layer", lambda: layer)
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        preferences_write(user, {"categories": {"mentions": {"bell": False}}})
    assert time.monotonic() - started < deadlines.PUSH_SECONDS + 0.5
    assert layer.sends  # it tried, and gave up at the deadline
    assert muted_categories(user.pk) == frozenset({"digest", "mentions"})


@pytest.mark.django_db
def test_a_recall_is_saved_within_the_push_deadline_when_redis_is_silent(
    user, monkeypatch, django_capture_on_commit_callbacks
):
    import time

    from notifications import deadlines, recall
    from notifications.dispatch import dispatch_notification
    from tests.test_receivers import SilentLayer

    notification = broadcast("Wrong")
    dispatch_notification(notification.pk)
    notification.refresh_from_db()
    layer = SilentLayer()
    monkeypatch.setattr("notifications.recalls.get_channel_layer", lambda: layer)
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        assert recall(notification)
    assert time.monotonic() - started < deadlines.PUSH_SECONDS + 0.5
    assert layer.sends
    notification.refresh_from_db()
    assert notification.recalled_at is not None
