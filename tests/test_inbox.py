"""The inbox page (/notifications/): views, level filter, days, verbs, and time zones."""

from __future__ import annotations

import asyncio
import re
import uuid
import zoneinfo
from datetime import UTC, date, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from notifications import views
from notifications.events import user_group
from notifications.middleware import TimezoneMiddleware, zone_from_cookie
from notifications.models import Audience, Delivery, DeliveryState, Level, Notification
from notifications.views import day_label, snooze_until
from tests.factories import PASSWORD, UserFactory

INBOX = "/notifications/"


def deliver(
    user,
    title: str = "Hello",
    *,
    state: str = DeliveryState.PENDING,
    created_at: datetime | None = None,
    dispatched_at: datetime | None = None,
    archived: bool = False,
    snoozed_until: datetime | None = None,
    **fields,
) -> Notification:
    """Create a dispatched notification with one Delivery for ``user`` (no listener needed).

    Deliveries are made in call order, which is the inbox's (arrival) order.
    """
    notification = Notification.objects.create(
        title=title,
        audience=Audience.USER,
        recipient=user,
        dispatched_at=dispatched_at or timezone.now(),
        recipient_count=1,
        **fields,
    )
    if created_at is not None:
        Notification.objects.filter(pk=notification.pk).update(created_at=created_at)
        notification.refresh_from_db()
    Delivery.objects.create(
        notification=notification,
        user=user,
        state=state,
        archived_at=timezone.now() if archived else None,
        snoozed_until=snoozed_until,
    )
    return notification


def inbox_html(response) -> str:
    """Return the inbox section only, without the row template inbox.js clones (and the
    bell in the page header, which has hooks of its own)."""
    html = response.content.decode()
    start = html.index('<section class="ninbox"')
    return html[start : html.index('<template id="ninbox-row-template">', start)]


def shown_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'data-notification-id="(\d+)"', inbox_html(response))]


def delivery(notification: Notification, user) -> Delivery:
    return Delivery.objects.get(notification=notification, user=user)


def state_of(notification: Notification, user) -> str:
    return delivery(notification, user).state


def day_headings(response) -> list[tuple[str, str]]:
    """Return each day group as (its date key, its heading)."""
    return re.findall(
        r'data-ninbox-day="([\d-]+)"[^>]*>\s*<h2 class="ninbox-day-title"[^>]*>([^<]+)</h2>',
        inbox_html(response),
    )


@pytest.fixture
def client_of(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def pushes(monkeypatch) -> list:
    """Record what the view hands to tell_other_tabs (the channel layer test is below)."""
    seen: list = []
    monkeypatch.setattr(views, "tell_other_tabs", lambda user_id, result: seen.append(result))
    return seen


# ---- access --------------------------------------------------------------------------------


def test_inbox_requires_login(client, db):
    response = client.get(INBOX)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={INBOX}"
    assert client.post(INBOX, {"all": "1"}).status_code == 302
    assert client.get(INBOX, {"counts": "1"}).status_code == 302


def test_inbox_lists_own_notifications_newest_arrival_first(client_of, user):
    other = UserFactory()
    first = deliver(user, "First")
    theirs = deliver(other, "Theirs")
    second = deliver(user, "Second", state=DeliveryState.READ)
    response = client_of.get(INBOX)
    assert response.status_code == 200
    assert shown_ids(response) == [second.pk, first.pk]
    assert "Theirs" not in inbox_html(response)
    assert theirs.pk not in shown_ids(response)


def test_a_scheduled_notification_sorts_and_shows_by_its_arrival(client_of, user):
    """Created first but dispatched last (publish_at): on top, with its arrival time."""
    now = timezone.now()
    scheduled = Notification.objects.create(
        title="Scheduled", audience=Audience.USER, recipient=user, publish_at=now
    )
    Notification.objects.filter(pk=scheduled.pk).update(created_at=now - timedelta(days=3))
    older = deliver(user, "Sent an hour ago", dispatched_at=now - timedelta(hours=1))
    Notification.objects.filter(pk=scheduled.pk).update(dispatched_at=now)
    Delivery.objects.create(notification=scheduled, user=user)
    response = client_of.get(INBOX)
    assert shown_ids(response) == [scheduled.pk, older.pk]
    html = inbox_html(response)
    assert f'datetime="{timezone.localtime(now).isoformat()}"' in html
    assert (now - timedelta(days=3)).date().isoformat() not in html.split("ninbox-groups", 1)[1]


def test_rows_show_level_title_excerpt_and_links_escaped(client_of, user):
    deliver(
        user,
        "<img src=x onerror=alert(1)>",
        body="line one\n<b>two</b>  " + "x" * 300,
        level=Level.WARNING,
        url="/posts/1/",
    )
    html = inbox_html(client_of.get(INBOX))
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img src=x" not in html
    # One line: whitespace folded, cut with an ellipsis.
    excerpt = re.search(r'class="ninbox-excerpt">([^<]*)<', html).group(1)
    assert excerpt.startswith("line one &lt;b&gt;two&lt;/b&gt; xxx")
    assert excerpt.endswith("…")
    assert len(excerpt.replace("&lt;", "<").replace("&gt;", ">")) == views.EXCERPT_CHARS
    assert 'class="ninbox-level ninbox-level-warning"' in html
    assert '<use href="#ninbox-i-warning">' in html
    assert "data-ninbox-level-label>Warning<" in html
    assert 'href="/posts/1/"' in html


def test_unread_rows_are_marked_by_more_than_colour(client_of, user):
    unread = deliver(user, "New one")
    read = deliver(user, "Old one", state=DeliveryState.READ)
    html = inbox_html(client_of.get(INBOX))
    rows = dict(re.findall(r'<li class="([^"]+)" data-notification-id="(\d+)"', html)[::-1])
    rows = {int(v): k for k, v in rows.items()}
    assert "unread" in rows[unread.pk].split()
    assert "unread" not in rows[read.pk].split()
    assert (
        html.count('class="ninbox-sr ninbox-unread-label">Unread:') == 2
    )  # CSS hides the read one's


def test_every_row_has_its_controls_and_a_checkbox_for_the_bulk_form(client_of, user):
    notification = deliver(user)
    html = inbox_html(client_of.get(INBOX))
    assert f'name="ids" value="{notification.pk}" form="ninbox-bulk"' in html
    for hook in (
        "data-notification-archive",
        "data-notification-snooze",
        "data-notification-unread",
        "data-notification-read",
    ):
        assert html.count(hook) == 1, hook
    assert "data-notification-unarchive" not in html
    assert 'id="ninbox-bulk" method="post"' in html
    archived_html = inbox_html(client_of.get(INBOX, {"status": "archived"}))
    assert "data-notification-unarchive" not in archived_html  # nothing archived yet
    Delivery.objects.update(archived_at=timezone.now())
    archived_html = inbox_html(client_of.get(INBOX, {"status": "archived"}))
    assert archived_html.count("data-notification-unarchive") == 1
    assert "data-notification-archive" not in archived_html
    assert 'value="unarchive"' in archived_html  # the bulk "Move to inbox"


# ---- views, the level filter, counts ---------------------------------------------------------


@pytest.fixture
def assorted(user):
    """One notification in each state the views tell apart."""
    soon = timezone.now() + timedelta(hours=2)
    return {
        "unread": deliver(user, "Unread", level=Level.ERROR),
        "delivered": deliver(user, "Delivered", state=DeliveryState.DELIVERED),
        "read": deliver(user, "Read", state=DeliveryState.READ, level=Level.ERROR),
        "archived": deliver(user, "Archived", archived=True, level=Level.ERROR),
        "snoozed": deliver(user, "Snoozed", snoozed_until=soon, level=Level.ERROR),
        "woke": deliver(user, "Snooze over", snoozed_until=timezone.now() - timedelta(minutes=1)),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["woke", "read", "delivered", "unread"]),
        ({"status": "unread"}, ["woke", "delivered", "unread"]),
        ({"filter": "unread"}, ["woke", "delivered", "unread"]),  # the old name
        ({"status": "archived"}, ["archived"]),
        ({"status": "snoozed"}, ["snoozed"]),
        ({"status": "nonsense"}, ["woke", "read", "delivered", "unread"]),
        ({"level": "error"}, ["read", "unread"]),
        ({"status": "unread", "level": "error"}, ["unread"]),
        ({"status": "archived", "level": "error"}, ["archived"]),
        ({"status": "snoozed", "level": "info"}, []),
        ({"level": "bogus"}, ["woke", "read", "delivered", "unread"]),
    ],
)
def test_views_and_level_filter(client_of, assorted, query, expected):
    response = client_of.get(INBOX, query)
    assert response.status_code == 200
    assert shown_ids(response) == [assorted[name].pk for name in expected]


def test_counts_next_to_each_view(client_of, assorted):
    response = client_of.get(INBOX, {"level": "error"})
    assert response.context["counts"] == {"unread": 3, "archived": 1, "snoozed": 1}
    html = inbox_html(response)
    for name, count in (("unread", 3), ("archived", 1), ("snoozed", 1)):
        assert f'data-ninbox-count="{name}">{count}<' in html
    # The view links keep the level; the level links keep the view.
    assert f'href="{INBOX}?status=archived&amp;level=error"' in html
    html = inbox_html(client_of.get(INBOX, {"status": "snoozed"}))
    assert f'href="{INBOX}?status=snoozed&amp;level=warning"' in html
    assert re.search(r'href="/notifications/\?status=snoozed"[^>]*aria-current="page"', html)


def test_counts_as_json_for_the_script(client_of, assorted):
    response = client_of.get(INBOX, {"counts": "1"})
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"counts": {"unread": 3, "archived": 1, "snoozed": 1}}


def test_empty_states(client_of, user):
    html = inbox_html(client_of.get(INBOX))
    assert "No notifications yet." in html
    assert "data-notification-mark-all" not in html
    deliver(user, "Read", state=DeliveryState.READ)
    html = inbox_html(client_of.get(INBOX, {"status": "unread"}))
    assert "You are all caught up." in html
    assert "data-notification-mark-all" not in html
    assert "Nothing snoozed." in inbox_html(client_of.get(INBOX, {"status": "snoozed"}))
    assert "Nothing marked done yet." in inbox_html(client_of.get(INBOX, {"status": "archived"}))
    assert "No Warning notifications." in inbox_html(client_of.get(INBOX, {"level": "warning"}))
    html = inbox_html(client_of.get(INBOX))
    assert re.search(r"data-ninbox-empty hidden", html)


def test_expired_notifications_are_hidden(client_of, user):
    live = deliver(user, "Live", expires_at=timezone.now() + timedelta(hours=1))
    deliver(user, "Gone", expires_at=timezone.now() - timedelta(seconds=1))
    response = client_of.get(INBOX)
    assert shown_ids(response) == [live.pk]
    assert "Gone" not in inbox_html(response)
    assert response.context["page"].unread == 1


# ---- days in the user's zone -------------------------------------------------------------------


def test_day_labels():
    today = date(2026, 12, 1)  # a Tuesday
    assert day_label(today, today) == "Today"
    assert day_label(date(2026, 11, 30), today) == "Yesterday"
    assert day_label(date(2026, 11, 29), today) == "Sunday 29 November"
    assert day_label(date(2025, 12, 25), today) == "Thursday 25 December 2025"


def test_rows_group_by_day_in_the_users_zone(client_of, user):
    now = timezone.now()
    moments = [now - timedelta(days=9), now - timedelta(days=2), now - timedelta(days=1), now]
    for i, moment in enumerate(moments):
        deliver(user, f"n{i}", dispatched_at=moment)
    for zone_name in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"):  # +14, -11, 0
        zone = zoneinfo.ZoneInfo(zone_name)
        client_of.cookies["tz"] = zone_name
        response = client_of.get(INBOX)
        local = [moment.astimezone(zone).date() for moment in reversed(moments)]
        expected_days = sorted(set(local), reverse=True)
        headings = day_headings(response)
        assert [key for key, _ in headings] == [d.isoformat() for d in expected_days]
        today = now.astimezone(zone).date()
        assert [label for _, label in headings] == [day_label(d, today) for d in expected_days]
        assert headings[0][1] == "Today"
        assert headings[1][1] == "Yesterday"
        assert f"Times are shown in {zone_name}." in inbox_html(response)


def test_a_day_boundary_depends_on_the_zone(client_of, user):
    """One moment, 10:30 UTC on a day: the same day in London, the next in Kiritimati (+14),
    the one before in Pago Pago (-11)."""
    yesterday = timezone.now().astimezone(UTC).date() - timedelta(days=1)
    moment = datetime.combine(yesterday, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10.5)
    deliver(user, "Boundary", dispatched_at=moment)
    shown = {}
    for zone_name in ("Europe/London", "Pacific/Kiritimati", "Pacific/Pago_Pago"):
        client_of.cookies["tz"] = zone_name
        shown[zone_name] = day_headings(client_of.get(INBOX))[0][0]
    assert shown == {
        "Europe/London": yesterday.isoformat(),
        "Pacific/Kiritimati": (yesterday + timedelta(days=1)).isoformat(),
        "Pacific/Pago_Pago": (yesterday - timedelta(days=1)).isoformat(),
    }


NOON_UTC = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cookie", "iso", "shown", "full"),
    [
        (None, "2024-01-15T12:00:00+00:00", "noon", "Monday 15 January 2024, 12:00 UTC"),
        ("Asia/Tokyo", "2024-01-15T21:00:00+09:00", "9 p.m.", "Monday 15 January 2024, 21:00 JST"),
        (
            "America%2FNew_York",
            "2024-01-15T07:00:00-05:00",
            "7 a.m.",
            "Monday 15 January 2024, 07:00 EST",
        ),
        ("Mars/Olympus_Mons", "2024-01-15T12:00:00+00:00", "noon", "Monday 15 January 2024"),
        ("../../etc/passwd", "2024-01-15T12:00:00+00:00", "noon", "Monday 15 January 2024"),
    ],
)
def test_time_zone_cookie_changes_the_rendered_time(client_of, user, cookie, iso, shown, full):
    deliver(user, dispatched_at=NOON_UTC)
    if cookie is not None:
        client_of.cookies["tz"] = cookie
    html = inbox_html(client_of.get(INBOX))
    assert f'datetime="{iso}"' in html
    assert f">{shown}</time>" in html
    assert full in html


def test_zone_from_cookie_accepts_only_known_zones():
    assert str(zone_from_cookie("Europe/Paris")) == "Europe/Paris"
    assert str(zone_from_cookie("Europe%2FParis")) == "Europe/Paris"
    for bad in (None, "", "Nowhere/Land", "/etc/localtime", "Europe/Paris" * 20, "UTC\x00"):
        assert zone_from_cookie(bad) is None


def test_middleware_works_in_async_stacks():
    seen: list[str] = []

    async def view(request):
        seen.append(timezone.get_current_timezone_name())
        return HttpResponse()

    middleware = TimezoneMiddleware(view)
    request = RequestFactory().get("/", HTTP_COOKIE="tz=Asia/Kolkata")
    asyncio.run(middleware(request))
    assert seen == ["Asia/Kolkata"]
    assert timezone.get_current_timezone_name() != "Asia/Kolkata"


# ---- snooze presets ------------------------------------------------------------------------------


def test_snooze_presets_in_the_users_zone():
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    now = datetime(2026, 12, 3, 22, 30, tzinfo=berlin)  # a Thursday evening
    with timezone.override(berlin):
        assert snooze_until("later", now) == now + timedelta(hours=3)
        assert snooze_until("tomorrow", now) == datetime(2026, 12, 4, 8, 0, tzinfo=berlin)
        assert snooze_until("week", now) == datetime(2026, 12, 7, 8, 0, tzinfo=berlin)
        monday = datetime(2026, 12, 7, 9, 0, tzinfo=berlin)
        assert snooze_until("week", monday) == datetime(2026, 12, 14, 8, 0, tzinfo=berlin)
        assert snooze_until("2026-12-24T18:00", now) == datetime(2026, 12, 24, 18, tzinfo=berlin)
        assert snooze_until("2026-12-24T18:00+00:00", now) == datetime(2026, 12, 24, 18, tzinfo=UTC)
        assert snooze_until("soon", now) is None


# ---- pagination ---------------------------------------------------------------------------------


def test_cursor_pagination_older_and_newer(client_of, user):
    ids = [deliver(user, f"n{i}").pk for i in range(25)]
    newest_first = ids[::-1]

    first = client_of.get(INBOX)
    assert shown_ids(first) == newest_first[:20]
    assert first.context["newer_url"] is None
    older_url = first.context["older_url"]
    assert older_url == f"{INBOX}?before={newest_first[19]}"
    assert f'href="{older_url}"' in inbox_html(first)

    second = client_of.get(older_url)
    assert shown_ids(second) == newest_first[20:]
    assert second.context["older_url"] is None
    newer_url = second.context["newer_url"]
    assert newer_url == f"{INBOX}?after={newest_first[20]}"
    assert "data-first-page" not in inbox_html(second)  # no live rows on an older page

    back = client_of.get(newer_url)
    assert shown_ids(back) == newest_first[:20]
    assert back.context["newer_url"] is None
    assert back.context["older_url"] == older_url


def test_pagination_keeps_the_view_and_level(client_of, user):
    unread = [deliver(user, f"u{i}", level=Level.SUCCESS).pk for i in range(22)]
    deliver(user, "read", state=DeliveryState.READ, level=Level.SUCCESS)
    deliver(user, "other level", level=Level.INFO)
    first = client_of.get(INBOX, {"filter": "unread", "level": "success"})
    assert first.context["older_url"] == f"{INBOX}?status=unread&level=success&before={unread[2]}"
    second = client_of.get(first.context["older_url"])
    assert shown_ids(second) == [unread[1], unread[0]]


@pytest.mark.parametrize("cursor", ["abc", "-3", "²", "9" * 40, ""])
def test_bad_cursor_shows_the_newest_page(client_of, user, cursor):
    notification = deliver(user)
    response = client_of.get(INBOX, {"before": cursor})
    assert response.status_code == 200
    assert shown_ids(response) == [notification.pk]


def test_empty_page_past_the_end_links_back(client_of, user):
    notification = deliver(user)
    html = inbox_html(client_of.get(INBOX, {"before": notification.pk}))
    assert "Nothing more here." in html
    assert f'href="{INBOX}"' in html


# ---- the verbs, posted without JavaScript -------------------------------------------------------


def test_mark_read_and_unread(client_of, user, pushes):
    first = deliver(user, "First")
    second = deliver(user, "Second")
    response = client_of.post(f"{INBOX}?status=unread", {"action": "read", "ids": str(first.pk)})
    assert response.status_code == 302
    assert response["Location"] == f"{INBOX}?status=unread"
    assert state_of(first, user) == DeliveryState.READ
    assert state_of(second, user) == DeliveryState.PENDING
    assert shown_ids(client_of.get(INBOX, {"status": "unread"})) == [second.pk]
    # No action named: a bare ids post marks read, as the old inbox did.
    client_of.post(INBOX, {"ids": str(second.pk)})
    assert state_of(second, user) == DeliveryState.READ

    response = client_of.post(INBOX, {"action": "unread", "ids": [first.pk, second.pk]})
    assert response["Location"] == INBOX
    assert {state_of(n, user) for n in (first, second)} == {DeliveryState.DELIVERED}
    assert [r.ids for r in pushes] == [[first.pk], [second.pk], [first.pk, second.pk]]
    assert pushes[-1].kind == "unread"
    assert pushes[-1].unread == 2


def test_archive_and_unarchive(client_of, user, pushes):
    notifications = [deliver(user, f"n{i}") for i in range(3)]
    ids = [n.pk for n in notifications]
    response = client_of.post(f"{INBOX}?level=info", {"action": "archive", "ids": ids[:2]})
    assert response["Location"] == f"{INBOX}?level=info"
    assert shown_ids(client_of.get(INBOX)) == [ids[2]]
    assert shown_ids(client_of.get(INBOX, {"status": "archived"})) == [ids[1], ids[0]]
    assert (pushes[-1].kind, pushes[-1].ids, pushes[-1].unread) == ("archived", ids[:2], 1)

    response = client_of.post(
        f"{INBOX}?status=archived", {"action": "unarchive", "ids": str(ids[0])}
    )
    assert response["Location"] == f"{INBOX}?status=archived"
    assert shown_ids(client_of.get(INBOX)) == [ids[2], ids[0]]
    assert (pushes[-1].kind, pushes[-1].ids) == ("unarchived", [ids[0]])


@pytest.mark.parametrize("preset", ["later", "tomorrow", "week"])
def test_snooze_presets_by_form(client_of, user, pushes, preset):
    client_of.cookies["tz"] = "Asia/Tokyo"
    notification = deliver(user)
    before = timezone.now()
    response = client_of.post(INBOX, {"snooze": preset, "ids": str(notification.pk)})
    assert response.status_code == 302
    until = delivery(notification, user).snoozed_until
    assert until > before
    tokyo = until.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
    if preset == "later":
        assert timedelta(hours=2, minutes=59) < until - before < timedelta(hours=3, minutes=1)
    else:
        assert (tokyo.hour, tokyo.minute) == (8, 0)
    if preset == "week":
        assert tokyo.weekday() == 0
    assert shown_ids(client_of.get(INBOX)) == []
    assert shown_ids(client_of.get(INBOX, {"status": "snoozed"})) == [notification.pk]
    assert (pushes[-1].kind, pushes[-1].ids, pushes[-1].until) == (
        "snoozed",
        [notification.pk],
        until,
    )


def test_snooze_to_a_chosen_time_and_bad_times(client_of, user, pushes):
    client_of.cookies["tz"] = "Europe/Berlin"
    notification = deliver(user)
    when = (timezone.now() + timedelta(days=2)).astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    naive = when.replace(tzinfo=None, second=0, microsecond=0).isoformat()
    client_of.post(INBOX, {"action": "snooze", "until": naive, "ids": str(notification.pk)})
    assert delivery(notification, user).snoozed_until == when.replace(second=0, microsecond=0)
    pushed = len(pushes)
    for bad in (
        "yesterday",
        "2000-01-01T00:00",
        (timezone.now() + timedelta(days=400)).isoformat(),
    ):
        response = client_of.post(INBOX, {"action": "snooze", "until": bad, "ids": notification.pk})
        assert response.status_code == 302
    assert len(pushes) == pushed
    assert delivery(notification, user).snoozed_until == when.replace(second=0, microsecond=0)


def test_mark_all_read(client_of, user, pushes):
    notifications = [deliver(user, f"n{i}") for i in range(3)]
    html = inbox_html(client_of.get(INBOX))
    assert html.count("data-notification-mark-all") == 1
    response = client_of.post(f"{INBOX}?status=unread&before=999", {"all": "1"})
    assert response.status_code == 302
    assert response["Location"] == f"{INBOX}?status=unread"
    assert {state_of(n, user) for n in notifications} == {DeliveryState.READ}
    assert pushes[-1].unread == 0


def test_other_users_ids_and_garbage_are_ignored(client_of, user, pushes):
    other = UserFactory()
    theirs = deliver(other, "Theirs")
    mine = deliver(user, "Mine")
    garbage = [str(theirs.pk), "x", "²", "-1", "9" * 40, ""]
    for action in ("read", "archive", "unread", "unarchive"):
        response = client_of.post(INBOX, {"action": action, "ids": garbage})
        assert response.status_code == 302
    client_of.post(INBOX, {"snooze": "tomorrow", "ids": garbage})
    assert all(result.ids == [] for result in pushes)
    theirs_row = delivery(theirs, other)
    assert theirs_row.state == DeliveryState.PENDING
    assert theirs_row.archived_at is None and theirs_row.snoozed_until is None
    client_of.post(INBOX, {"action": "archive", "ids": f"{theirs.pk},{mine.pk}"})
    assert delivery(theirs, other).archived_at is None
    assert delivery(mine, user).archived_at is not None
    client_of.post(INBOX, {"all": "1"})
    assert state_of(theirs, other) == DeliveryState.PENDING


def test_nothing_selected_or_an_unknown_action_changes_nothing(client_of, user, pushes):
    notification = deliver(user)
    assert client_of.post(INBOX, {"action": "archive"}).status_code == 302
    assert client_of.post(INBOX, {"action": "delete", "ids": notification.pk}).status_code == 302
    assert pushes == []
    assert delivery(notification, user).archived_at is None
    assert shown_ids(client_of.get(INBOX)) == [notification.pk]


def test_the_result_is_said_on_the_next_page(client_of, user):
    ids = [deliver(user, f"n{i}").pk for i in range(2)]
    response = client_of.post(INBOX, {"action": "archive", "ids": ids}, follow=True)
    assert "2 marked done." in [str(m) for m in response.context["messages"]]


def test_csrf_is_enforced(user):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=user.username, password=PASSWORD)
    notification = deliver(user)
    response = client.post(INBOX, {"action": "archive", "ids": notification.pk})
    assert response.status_code == 403
    assert delivery(notification, user).archived_at is None
    html = client.get(INBOX).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    response = client.post(
        INBOX, {"action": "archive", "ids": notification.pk, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert delivery(notification, user).archived_at is not None


def test_verbs_tell_the_users_other_tabs(client_of, user):
    """The change goes over the real channel layer to the user's group."""
    notification = deliver(user)
    layer = get_channel_layer()
    channel = f"test-inbox.{uuid.uuid4().hex}"
    async_to_sync(layer.group_add)(user_group(user.pk), channel)
    try:
        client_of.post(INBOX, {"action": "read", "ids": str(notification.pk)})
        read = async_to_sync(_receive)(layer, channel)
        client_of.post(INBOX, {"action": "archive", "ids": str(notification.pk)})
        archived = async_to_sync(_receive)(layer, channel)
    finally:
        async_to_sync(layer.group_discard)(user_group(user.pk), channel)
    assert read == {
        "type": "notify.read",
        "group": user_group(user.pk),
        "ids": [notification.pk],
        "unread": 0,
    }
    assert archived["frame"] == {"type": "archived", "ids": [notification.pk], "unread": 0}


async def _receive(layer, channel: str) -> dict:
    return await asyncio.wait_for(layer.receive(channel), timeout=5)


# ---- cost and layout -------------------------------------------------------------------------


def test_inbox_query_count_does_not_grow(client_of, user, django_assert_max_num_queries):
    for i in range(2):
        deliver(user, f"n{i}")
    client_of.get(INBOX)
    with CaptureQueriesContext(connection) as few:
        client_of.get(INBOX)
    for i in range(18):
        deliver(user, f"m{i}", dispatched_at=timezone.now() - timedelta(days=i))
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(shown_ids(client_of.get(INBOX))) == 20


def test_inbox_stands_alone_without_a_site_layout(client_of, user, settings):
    """A host site without a base.html (or with one named otherwise) still gets a whole page."""
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "BASE_TEMPLATE": "notifications/base.html"}
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": []}]  # no site templates at all
    deliver(user, "Standalone")
    response = client_of.get(INBOX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<title>Inbox · Notifications</title>" in html
    assert "notifyproject" not in html
    assert "notifications/inbox.css" in html
    assert "notifications/inbox.js" in html
    assert "Standalone" in inbox_html(response)
    follow = client_of.post(INBOX, {"action": "archive", "ids": shown_ids(response)}, follow=True)
    assert "1 marked done." in follow.content.decode()  # the plain page shows messages too


def test_inbox_extends_the_layout_the_site_names(client_of, user, settings):
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "BASE_TEMPLATE": "base.html"}
    response = client_of.get(INBOX, {"status": "archived"})
    html = response.content.decode()
    assert "data-notification-bell" in html  # the demo layout's header
    assert "<title>Archived · Notifications</title>" in html


def test_inbox_styles_do_not_depend_on_the_site_stylesheet():
    """Every class the inbox templates use is styled by the app's own inbox.css."""
    from pathlib import Path

    import notifications

    root = Path(notifications.__file__).parent
    templates = root / "templates/notifications"
    markup = (templates / "inbox.html").read_text() + (templates / "inbox_row.html").read_text()
    css = (root / "static/notifications/inbox.css").read_text()
    used = {
        name
        for attr in re.findall(r'class="([^"{]+)', markup)
        for name in attr.split()
        if name != "unread" and not name.endswith("-")  # level-{{ n.level }} and the like
    }
    missing = sorted(name for name in used if f".{name}" not in css)
    assert missing == []


def test_the_script_never_uses_inner_html():
    from pathlib import Path

    import notifications

    script = (Path(notifications.__file__).parent / "static/notifications/inbox.js").read_text()
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert "outerHTML" not in script
