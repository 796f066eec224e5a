"""The inbox page (/notifications/) and the time zone middleware."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from notifications.events import user_group
from notifications.middleware import TimezoneMiddleware, zone_from_cookie
from notifications.models import Audience, Delivery, DeliveryState, Level, Notification
from tests.factories import UserFactory

INBOX = "/notifications/"


def deliver(
    user,
    title: str = "Hello",
    *,
    state: str = DeliveryState.PENDING,
    created_at: datetime | None = None,
    **fields,
) -> Notification:
    """Create a dispatched notification with one Delivery for ``user`` (no listener needed)."""
    notification = Notification.objects.create(
        title=title,
        audience=Audience.USER,
        recipient=user,
        dispatched_at=timezone.now(),
        recipient_count=1,
        **fields,
    )
    if created_at is not None:
        Notification.objects.filter(pk=notification.pk).update(created_at=created_at)
        notification.refresh_from_db()
    Delivery.objects.create(notification=notification, user=user, state=state)
    return notification


def inbox_html(response) -> str:
    """Return the inbox section only: the bell in the page header has hooks of its own."""
    html = response.content.decode()
    start = html.index('<section class="ninbox"')
    return html[start : html.index("</section>", start)]


def shown_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'data-notification-id="(\d+)"', inbox_html(response))]


def state_of(notification: Notification, user) -> str:
    return Delivery.objects.get(notification=notification, user=user).state


@pytest.fixture
def client_of(client, user):
    client.force_login(user)
    return client


# ---- access --------------------------------------------------------------------------------


def test_inbox_requires_login(client, db):
    response = client.get(INBOX)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={INBOX}"
    assert client.post(INBOX, {"all": "1"}).status_code == 302


def test_inbox_lists_own_notifications_newest_first(client_of, user):
    other = UserFactory()
    first = deliver(user, "First")
    theirs = deliver(other, "Theirs")
    second = deliver(user, "Second", state=DeliveryState.READ)
    response = client_of.get(INBOX)
    assert response.status_code == 200
    assert shown_ids(response) == [second.pk, first.pk]
    assert theirs.pk not in shown_ids(response)
    assert "Theirs" not in response.content.decode()


def test_inbox_shows_levels_body_and_links_escaped(client_of, user):
    deliver(
        user,
        "<img src=x onerror=alert(1)>",
        body="line one\n<b>two</b>",
        level=Level.WARNING,
        url="/posts/1/",
    )
    html = inbox_html(client_of.get(INBOX))
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img src=x" not in html
    assert "line one<br>&lt;b&gt;two&lt;/b&gt;" in html
    assert 'class="ninbox-badge ninbox-badge-warning">Warning<' in html
    assert 'href="/posts/1/"' in html


# ---- filters and empty states ----------------------------------------------------------------


def test_unread_filter(client_of, user):
    unread = deliver(user, "Unread one")
    delivered = deliver(user, "Delivered, not read", state=DeliveryState.DELIVERED)
    read = deliver(user, "Read one", state=DeliveryState.READ)
    assert shown_ids(client_of.get(INBOX, {"filter": "unread"})) == [delivered.pk, unread.pk]
    assert shown_ids(client_of.get(INBOX)) == [read.pk, delivered.pk, unread.pk]


def test_empty_states(client_of, user):
    html = inbox_html(client_of.get(INBOX))
    assert "No notifications yet." in html
    assert "data-notification-mark-all" not in html
    deliver(user, "Read", state=DeliveryState.READ)
    html = inbox_html(client_of.get(INBOX, {"filter": "unread"}))
    assert "You are all caught up." in html
    assert "data-notification-mark-all" not in html
    html = inbox_html(client_of.get(INBOX))
    assert "No notifications yet." not in html


def test_expired_notifications_are_hidden(client_of, user):
    live = deliver(user, "Live", expires_at=timezone.now() + timedelta(hours=1))
    deliver(user, "Gone", expires_at=timezone.now() - timedelta(seconds=1))
    response = client_of.get(INBOX)
    assert shown_ids(response) == [live.pk]
    assert "Gone" not in inbox_html(response)
    assert response.context["page"].unread == 1


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

    back = client_of.get(newer_url)
    assert shown_ids(back) == newest_first[:20]
    assert back.context["newer_url"] is None
    assert back.context["older_url"] == older_url


def test_pagination_keeps_the_unread_filter(client_of, user):
    unread = [deliver(user, f"u{i}").pk for i in range(22)]
    deliver(user, "read", state=DeliveryState.READ)
    first = client_of.get(INBOX, {"filter": "unread"})
    assert first.context["older_url"] == f"{INBOX}?filter=unread&before={unread[2]}"
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


# ---- marking read -------------------------------------------------------------------------------


def test_mark_one_read(client_of, user):
    first = deliver(user, "First")
    second = deliver(user, "Second")
    response = client_of.post(f"{INBOX}?filter=unread", {"ids": str(first.pk)})
    assert response.status_code == 302
    assert response["Location"] == f"{INBOX}?filter=unread"
    assert state_of(first, user) == DeliveryState.READ
    assert state_of(second, user) == DeliveryState.PENDING
    assert shown_ids(client_of.get(INBOX, {"filter": "unread"})) == [second.pk]


def test_mark_all_read(client_of, user):
    notifications = [deliver(user, f"n{i}") for i in range(3)]
    html = inbox_html(client_of.get(INBOX))
    assert html.count("data-notification-mark-all") == 1
    response = client_of.post(f"{INBOX}?filter=unread&before=999", {"all": "1"})
    assert response.status_code == 302
    assert response["Location"] == f"{INBOX}?filter=unread"
    assert {state_of(n, user) for n in notifications} == {DeliveryState.READ}


def test_marking_another_users_notification_does_nothing(client_of, user):
    other = UserFactory()
    theirs = deliver(other, "Theirs")
    mine = deliver(user, "Mine")
    client_of.post(INBOX, {"ids": [str(theirs.pk), "x", "²"]})
    assert state_of(theirs, other) == DeliveryState.PENDING
    assert state_of(mine, user) == DeliveryState.PENDING
    client_of.post(INBOX, {"all": "1"})
    assert state_of(theirs, other) == DeliveryState.PENDING
    assert state_of(mine, user) == DeliveryState.READ


def test_mark_read_tells_the_users_other_tabs(client_of, user):
    """The read event goes over the real channel layer to the user's group."""
    notification = deliver(user)
    layer = get_channel_layer()
    channel = f"test-inbox.{uuid.uuid4().hex}"
    async_to_sync(layer.group_add)(user_group(user.pk), channel)
    try:
        client_of.post(INBOX, {"ids": str(notification.pk)})
        event = async_to_sync(_receive)(layer, channel)
    finally:
        async_to_sync(layer.group_discard)(user_group(user.pk), channel)
    assert event == {
        "type": "notify.read",
        "group": user_group(user.pk),
        "ids": [notification.pk],
        "unread": 0,
    }


async def _receive(layer, channel: str) -> dict:
    return await asyncio.wait_for(layer.receive(channel), timeout=5)


# ---- dates in the user's time zone ------------------------------------------------------------

NOON_UTC = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cookie", "iso", "shown"),
    [
        (None, "2024-01-15T12:00:00+00:00", "Jan. 15, 2024, noon"),
        ("Asia/Tokyo", "2024-01-15T21:00:00+09:00", "Jan. 15, 2024, 9 p.m."),
        ("America%2FNew_York", "2024-01-15T07:00:00-05:00", "Jan. 15, 2024, 7 a.m."),
        ("Mars/Olympus_Mons", "2024-01-15T12:00:00+00:00", "Jan. 15, 2024, noon"),
        ("../../etc/passwd", "2024-01-15T12:00:00+00:00", "Jan. 15, 2024, noon"),
    ],
)
def test_time_zone_cookie_changes_the_rendered_time(client_of, user, cookie, iso, shown):
    deliver(user, created_at=NOON_UTC)
    if cookie is not None:
        client_of.cookies["tz"] = cookie
    html = inbox_html(client_of.get(INBOX))
    assert f'datetime="{iso}"' in html
    assert shown in html
    assert "ago" in html


def test_relative_time(client_of, user):
    deliver(user, "Old", created_at=timezone.now() - timedelta(hours=3, minutes=10))
    deliver(user, "New")
    html = inbox_html(client_of.get(INBOX))
    assert "3\xa0hours ago" in html
    assert "just now" in html


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


def test_inbox_query_count_does_not_grow(client_of, user, django_assert_max_num_queries):
    for i in range(2):
        deliver(user, f"n{i}")
    client_of.get(INBOX)
    with CaptureQueriesContext(connection) as few:
        client_of.get(INBOX)
    for i in range(18):
        deliver(user, f"m{i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(shown_ids(client_of.get(INBOX))) == 20


# ---- inside any site's layout ------------------------------------------------------------


def test_inbox_stands_alone_without_a_site_layout(client_of, user, settings):
    """A host site without a base.html (or with one named otherwise) still gets a whole page."""
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "BASE_TEMPLATE": "notifications/base.html"}
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": []}]  # no site templates at all
    deliver(user, "Standalone")
    response = client_of.get(INBOX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<title>Notifications</title>" in html
    assert "notifyproject" not in html
    assert "notifications/inbox.css" in html
    assert "Standalone" in inbox_html(response)


def test_inbox_extends_the_layout_the_site_names(client_of, user, settings):
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "BASE_TEMPLATE": "base.html"}
    response = client_of.get(INBOX)
    html = response.content.decode()
    assert "data-notification-bell" in html  # the demo layout's header
    assert "<title>Notifications</title>" in html


def test_inbox_styles_do_not_depend_on_the_site_stylesheet():
    """Every class the inbox template uses is styled by the app's own inbox.css."""
    from pathlib import Path

    import notifications

    root = Path(notifications.__file__).parent
    template = (root / "templates/notifications/inbox.html").read_text()
    css = (root / "static/notifications/inbox.css").read_text()
    used = {
        name
        for attr in re.findall(r'class="([^"{]+)', template)
        for name in attr.split()
        if name not in {"unread"}
    }
    missing = sorted(name for name in used if f".{name}" not in css)
    assert missing == []
