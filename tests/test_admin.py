"""The notifications admin: compose, permissions, the changelist, actions, the delivery view."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.events import user_group
from notifications.models import Audience, Delivery, DeliveryState, Level, Notification
from tests.factories import GroupFactory, StaffFactory, UserFactory

CHANGELIST = "/admin/realtime_notifications/notification/"
ADD = f"{CHANGELIST}add/"
DELIVERIES = "/admin/realtime_notifications/delivery/"


def change_url(notification: Notification) -> str:
    return f"{CHANGELIST}{notification.pk}/change/"


def make(
    title: str = "Hello",
    *,
    states: tuple[str, ...] = (),
    dispatched: bool = True,
    audience: str = Audience.ALL,
    **fields,
) -> Notification:
    """Create a notification, dispatched to one new user per entry of ``states``."""
    notification = Notification.objects.create(
        title=title,
        audience=audience,
        dispatched_at=timezone.now() if dispatched else None,
        recipient_count=len(states),
        **fields,
    )
    Delivery.objects.bulk_create(
        Delivery(notification=notification, user=UserFactory(), state=state) for state in states
    )
    return notification


def compose(**overrides: str) -> dict[str, str]:
    """POST data of the add form: one notification to everyone, sent now."""
    data = {
        "audience": Audience.ALL,
        "recipient": "",
        "group": "",
        "level": Level.INFO,
        "title": "Maintenance tonight",
        "body": "From 22:00 to 23:00.",
        "url": "/status/",
        "publish_at_0": "",
        "publish_at_1": "",
        "expires_at_0": "",
        "expires_at_1": "",
        "_save": "Save",
        # Everyone asks for a confirmation first (tests/test_admin_compose.py tests it).
        "_confirmed": "1",
    }
    data.update(overrides)
    return data


def form_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code
    return response.context["adminform"].form.errors


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def offered_actions(response) -> set[str]:
    form = response.context["action_form"]  # None when no action is allowed
    return set(dict(form.fields["action"].choices)) if form else set()


def titles(response) -> set[str]:
    return {n.title for n in response.context["cl"].result_list}


def local(moment) -> tuple[str, str]:
    """Split a datetime the way the admin's date and time inputs take it."""
    moment = timezone.localtime(moment)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H:%M:%S")


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def staff_client(client, db):
    """A staff member with no notification permissions at all."""
    client.force_login(StaffFactory())
    return client


def with_perms(user, *codenames: str):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


# ---- compose ------------------------------------------------------------------------------


def test_compose_sets_created_by_and_publishes_on_commit(
    admin, superuser, django_capture_on_commit_callbacks
):
    alice = UserFactory(username="alice")
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin.post(
            ADD, compose(audience=Audience.USER, recipient=str(alice.pk), level=Level.WARNING)
        )
    assert response.status_code == 302, form_errors(response)
    notification = Notification.objects.get()
    assert notification.created_by == superuser
    assert (notification.audience, notification.recipient, notification.level) == (
        Audience.USER,
        alice,
        Level.WARNING,
    )
    assert (notification.title, notification.url) == ("Maintenance tonight", "/status/")
    assert len(callbacks) == 1  # the publish, after commit


def test_compose_user_without_recipient_errors_on_recipient(admin):
    errors = form_errors(admin.post(ADD, compose(audience=Audience.USER)))
    assert errors["recipient"] == ["Choose the user who should receive this."]
    assert set(errors) == {"recipient"}
    assert not Notification.objects.exists()


def test_compose_group_without_group_errors_on_group(admin):
    errors = form_errors(admin.post(ADD, compose(audience=Audience.GROUP)))
    assert errors["group"] == ["Choose the group whose members should receive this."]
    assert not Notification.objects.exists()


def test_compose_drops_a_target_left_over_from_another_audience(admin):
    alice, group = UserFactory(), GroupFactory()
    response = admin.post(
        ADD, compose(audience=Audience.STAFF, recipient=str(alice.pk), group=str(group.pk))
    )
    assert response.status_code == 302, form_errors(response)
    notification = Notification.objects.get()
    assert (notification.audience, notification.recipient, notification.group) == (
        Audience.STAFF,
        None,
        None,
    )


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", "//evil.example"]
)
def test_compose_rejects_unsafe_links(admin, url):
    errors = form_errors(admin.post(ADD, compose(url=url)))
    assert list(errors) == ["url"]
    assert not Notification.objects.exists()


def test_compose_rejects_blank_title(admin):
    errors = form_errors(admin.post(ADD, compose(title="   ")))
    assert "title" in errors
    assert not Notification.objects.exists()


def test_compose_rejects_a_deactivated_recipient(admin):
    gone = UserFactory(is_active=False)
    errors = form_errors(admin.post(ADD, compose(audience=Audience.USER, recipient=str(gone.pk))))
    assert errors["recipient"] == [
        "This account is deactivated, so nobody would receive the notification."
    ]


def test_compose_times_must_make_sense(admin):
    past_date, past_time = local(timezone.now() - timedelta(days=1))
    errors = form_errors(
        admin.post(
            ADD,
            compose(
                publish_at_0=past_date,
                publish_at_1=past_time,
                expires_at_0=past_date,
                expires_at_1=past_time,
            ),
        )
    )
    assert errors["publish_at"] == ["This time has already passed. Leave it empty to send now."]
    assert errors["expires_at"] == [
        "This time has already passed, so nobody would ever see the notification."
    ]
    later_date, later_time = local(timezone.now() + timedelta(days=2))
    sooner_date, sooner_time = local(timezone.now() + timedelta(days=1))
    errors = form_errors(
        admin.post(
            ADD,
            compose(
                publish_at_0=later_date,
                publish_at_1=later_time,
                expires_at_0=sooner_date,
                expires_at_1=sooner_time,
            ),
        )
    )
    assert errors["expires_at"] == ["The expiry must come after the publish time."]
    assert not Notification.objects.exists()


def test_compose_schedules_for_later(admin):
    when = timezone.now().replace(microsecond=0) + timedelta(days=1)
    day, time = local(when)
    response = admin.post(ADD, compose(publish_at_0=day, publish_at_1=time))
    assert response.status_code == 302, form_errors(response)
    notification = Notification.objects.get()
    assert notification.publish_at == when
    listing = admin.get(CHANGELIST, {"state": "scheduled"})
    assert titles(listing) == {"Maintenance tonight"}


def test_add_page_has_a_preview_and_the_recipient_autocomplete(admin):
    html = admin.get(ADD).content.decode()
    assert "data-notification-preview" in html
    assert "notifications/admin.js" in html
    assert 'data-field-name="recipient"' in html
    assert 'data-theme="admin-autocomplete"' in html


@pytest.fixture
def no_user_admin(monkeypatch):
    """The admin site as a host that never registered its user model leaves it."""
    from django.contrib import admin as django_admin
    from django.contrib.auth import get_user_model

    monkeypatch.delitem(django_admin.site._registry, get_user_model())


def test_the_admin_passes_its_checks_on_a_site_without_a_user_admin() -> None:
    from django.contrib.admin import AdminSite

    from notifications.admin import NotificationAdmin

    assert NotificationAdmin(Notification, AdminSite()).check() == []  # no admin.E039


def test_without_a_user_admin_the_recipient_is_typed_in_by_id(admin, no_user_admin):
    html = admin.get(ADD).content.decode()
    assert 'data-theme="admin-autocomplete"' not in html
    assert '<input type="text" name="recipient"' in html  # no lookup: no user admin to open
    assert "Enter the user" in html
    alice = UserFactory(username="alice")
    response = admin.post(ADD, compose(audience=Audience.USER, recipient=str(alice.pk)))
    assert response.status_code == 302, form_errors(response)
    assert Notification.objects.get().recipient == alice
    unknown = admin.post(ADD, compose(audience=Audience.USER, recipient="987654321"))
    assert "recipient" in form_errors(unknown)


def test_a_user_admin_without_search_fields_gets_the_id_field_too(admin, monkeypatch):
    from django.contrib import admin as django_admin
    from django.contrib.auth import get_user_model

    user_admin = django_admin.site._registry[get_user_model()]
    monkeypatch.setattr(user_admin, "search_fields", ())
    html = admin.get(ADD).content.decode()
    assert 'data-theme="admin-autocomplete"' not in html
    assert 'class="vForeignKeyRawIdAdminField"' in html


def test_preview_of_a_saved_notification_escapes_text(admin):
    notification = make("<script>alert(1)</script>", body="<b>first</b>\nsecond")
    html = admin.get(change_url(notification)).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert "&lt;b&gt;first&lt;/b&gt;" in html


# ---- permissions --------------------------------------------------------------------------


@pytest.fixture
def viewer_client(client, db):
    """A staff member who may view notifications and their deliveries, and nothing more."""
    client.force_login(with_perms(StaffFactory(), "view_notification", "view_delivery"))
    return client


def test_staff_without_add_permission_cannot_compose(viewer_client):
    notification = make("Sent already", states=(DeliveryState.PENDING,))
    assert viewer_client.get(ADD).status_code == 403
    assert viewer_client.post(ADD, compose()).status_code == 403
    assert Notification.objects.count() == 1

    listing = viewer_client.get(CHANGELIST)
    assert listing.status_code == 200
    assert ADD not in listing.content.decode()
    assert titles(listing) == {"Sent already"}
    assert not offered_actions(listing) & {"resend_undelivered", "expire_now"}

    page = viewer_client.get(change_url(notification))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert viewer_client.post(change_url(notification), {"title": "Changed"}).status_code == 403
    notification.refresh_from_db()
    assert notification.title == "Sent already"
    assert (
        viewer_client.get(f"{DELIVERIES}?notification__id__exact={notification.pk}").status_code
        == 200
    )


def test_staff_without_any_notification_permission_see_nothing(staff_client):
    notification = make("Private", states=(DeliveryState.READ,))
    delivery = Delivery.objects.get(notification=notification)
    for url in (
        CHANGELIST,
        change_url(notification),
        DELIVERIES,
        f"{DELIVERIES}?notification__id__exact={notification.pk}",
        f"{DELIVERIES}{delivery.pk}/change/",
    ):
        assert staff_client.get(url).status_code == 403, url
    html = staff_client.get("/admin/").content.decode()
    assert CHANGELIST not in html
    assert DELIVERIES not in html
    assert staff_client.get("/admin/realtime_notifications/").status_code == 404


@pytest.mark.parametrize("codename", ["view_notification", "change_notification"])
def test_view_or_change_permission_shows_notifications_without_read_receipts(client, db, codename):
    client.force_login(with_perms(StaffFactory(), codename))
    notification = make("Counted", states=(DeliveryState.DELIVERED, DeliveryState.READ))
    delivery = Delivery.objects.filter(notification=notification).first()

    html = client.get("/admin/").content.decode()
    assert CHANGELIST in html
    assert DELIVERIES not in html

    listing = client.get(CHANGELIST)
    assert listing.status_code == 200
    assert titles(listing) == {"Counted"}
    content = listing.content.decode()
    assert DELIVERIES not in content  # no link to who received it
    assert "nadmin-progress" not in content  # no delivered / read bars
    assert "column-recipient_count_display" in content  # how many it went to stays

    page = client.get(change_url(notification))
    assert page.status_code == 200
    content = page.content.decode()
    assert DELIVERIES not in content
    assert "View deliveries" not in content
    assert "nadmin-stats" not in content

    assert client.get(DELIVERIES).status_code == 403
    assert client.get(DELIVERIES, {"notification__id__exact": notification.pk}).status_code == 403
    assert client.get(f"{DELIVERIES}{delivery.pk}/change/").status_code == 403


@pytest.mark.parametrize("codename", ["view_delivery", "change_delivery"])
def test_delivery_permission_shows_the_read_receipts(client, db, codename):
    client.force_login(with_perms(StaffFactory(), "view_notification", codename))
    notification = make("Counted", states=(DeliveryState.DELIVERED, DeliveryState.READ))
    listing = client.get(CHANGELIST).content.decode()
    assert f"{DELIVERIES}?notification__id__exact={notification.pk}" in listing
    assert "nadmin-progress-read" in listing
    page = client.get(change_url(notification)).content.decode()
    assert "nadmin-stats" in page
    assert "View deliveries" in page
    response = client.get(DELIVERIES, {"notification__id__exact": notification.pk})
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 2
    # Read receipts stay a record: even change_delivery edits nothing.
    delivery = Delivery.objects.filter(notification=notification).first()
    assert (
        client.post(f"{DELIVERIES}{delivery.pk}/change/", {"state": "pending"}).status_code == 403
    )


def test_receipts_alone_do_not_open_the_notifications(client, db):
    client.force_login(with_perms(StaffFactory(), "view_delivery"))
    notification = make("Counted", states=(DeliveryState.READ,))
    html = client.get("/admin/").content.decode()
    assert DELIVERIES in html
    assert CHANGELIST not in html
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(change_url(notification)).status_code == 403
    assert client.get(DELIVERIES).status_code == 200


def test_a_composer_without_view_permission_composes_but_does_not_browse(client, db):
    client.force_login(with_perms(StaffFactory(), "add_notification"))
    make("Someone else's", states=(DeliveryState.READ,))
    assert client.get(ADD).status_code == 200
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(DELIVERIES).status_code == 403


def test_non_staff_user_cannot_reach_the_admin(client, db):
    client.force_login(UserFactory())
    assert client.get(ADD).status_code == 302
    assert client.get(CHANGELIST).status_code == 302


def test_superuser_can_compose(admin):
    assert admin.get(ADD).status_code == 200
    listing = admin.get(CHANGELIST)
    assert ADD in listing.content.decode()
    assert {"resend_undelivered", "expire_now"} <= offered_actions(listing)


def test_a_composer_with_add_permission_can_compose_and_search_users(client, db):
    composer = with_perms(StaffFactory(), "add_notification", "change_notification", "view_user")
    UserFactory(username="alice-searchable")
    client.force_login(composer)
    assert client.get(ADD).status_code == 200
    found = client.get(
        "/admin/autocomplete/",
        {
            "app_label": "realtime_notifications",
            "model_name": "notification",
            "field_name": "recipient",
            "term": "alice-sea",
        },
    )
    assert found.status_code == 200
    assert [r["text"] for r in found.json()["results"]] == ["alice-searchable"]
    response = client.post(ADD, compose())
    assert response.status_code == 302
    assert Notification.objects.get().created_by == composer


def test_dispatched_audience_is_read_only_but_text_and_expiry_can_change(admin, superuser):
    notification = make("As sent", states=(DeliveryState.READ, DeliveryState.PENDING))
    dispatched_at = notification.dispatched_at
    form = admin.get(change_url(notification)).context["adminform"].form
    assert list(form.fields) == ["level", "title", "body", "url", "expires_at"]

    expiry = timezone.now().replace(microsecond=0) + timedelta(days=3)
    day, time = local(expiry)
    text = {"level": notification.level, "body": notification.body, "url": notification.url}
    response = admin.post(
        change_url(notification),
        {**text, "title": "As sent", "expires_at_0": day, "expires_at_1": time, "_save": "Save"},
    )
    assert response.status_code == 302, form_errors(response)
    notification.refresh_from_db()
    assert notification.expires_at == expiry
    assert (notification.title, notification.dispatched_at) == ("As sent", dispatched_at)
    assert notification.recipient_count == 2
    assert notification.edited_at is None  # the same text is no edit

    response = admin.post(
        change_url(notification),
        {**text, "title": "Rewritten", "expires_at_0": day, "expires_at_1": time, "_save": "Save"},
    )
    assert response.status_code == 302, form_errors(response)
    notification.refresh_from_db()
    # An edit: recorded with who and when (open bells get an "updated" frame).
    assert notification.title == "Rewritten"
    assert notification.edited_by == superuser and notification.edited_at is not None
    assert (notification.dispatched_at, notification.recipient_count) == (dispatched_at, 2)

    response = admin.post(
        change_url(notification),
        {
            **text,
            "title": "Rewritten",
            "audience": Audience.STAFF,
            "_save": "Save",
            "expires_at_0": day,
            "expires_at_1": time,
        },
    )
    assert "was sent while you were editing it" in str(form_errors(response))
    notification.refresh_from_db()
    assert notification.audience == Audience.ALL


def test_editing_a_scheduled_notification_keeps_what_the_listener_wrote(admin):
    later = timezone.now() + timedelta(days=1)
    notification = make("Later", dispatched=False, publish_at=later)
    page = admin.get(change_url(notification))
    assert "title" in page.context["adminform"].form.fields
    # The listener dispatches it between the page load and the save.
    Notification.objects.filter(pk=notification.pk).update(
        dispatched_at=timezone.now(), recipient_count=7
    )
    day, time = local(later)
    sooner_day, sooner_time = local(later - timedelta(hours=1))
    response = admin.post(
        change_url(notification),
        compose(title="Edited", publish_at_0=sooner_day, publish_at_1=sooner_time),
    )
    assert "was sent while you were editing it" in str(form_errors(response))
    notification.refresh_from_db()
    assert (notification.title, notification.recipient_count) == ("Later", 7)
    # Its text alone may still change: an edit of what went out.
    response = admin.post(
        change_url(notification), compose(title="Edited", publish_at_0=day, publish_at_1=time)
    )
    assert response.status_code == 302, form_errors(response)
    notification.refresh_from_db()
    assert (notification.title, notification.recipient_count) == ("Edited", 7)
    assert notification.edited_at is not None


# ---- the changelist -------------------------------------------------------------------------


def test_changelist_shows_audience_state_and_counts(admin, superuser):
    alice, editors = UserFactory(username="alice"), GroupFactory(name="Editors")
    make(
        "Half read",
        created_by=superuser,
        states=(
            DeliveryState.PENDING,
            DeliveryState.DELIVERED,
            DeliveryState.READ,
            DeliveryState.READ,
        ),
    )
    make("To alice", audience=Audience.USER, recipient=alice, dispatched=False)
    make(
        "To editors",
        audience=Audience.GROUP,
        group=editors,
        dispatched=False,
        publish_at=timezone.now() + timedelta(hours=2),
    )
    response = admin.get(CHANGELIST)
    html = response.content.decode()
    rows = {n.title: n for n in response.context["cl"].result_list}
    half = rows["Half read"]
    assert (half.total_count, half.delivered_count, half.read_count) == (4, 3, 2)
    assert ">3 / 4<" in html
    assert ">2 / 4<" in html
    assert "width: 75%" in html
    assert "width: 50%" in html
    assert "User: alice" in html
    assert "Group: Editors" in html
    assert "Everyone" in html
    for label in ("Dispatched", "Pending", "Scheduled"):
        assert f">{label}</span>" in html
    assert f'href="{DELIVERIES}?notification__id__exact={half.pk}"' in html
    assert "by root" in html
    assert "by the system" in html


def test_changelist_escapes_titles(admin):
    make("<img src=x onerror=alert(1)>", audience=Audience.USER, recipient=UserFactory())
    html = admin.get(CHANGELIST).content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img src=x" not in html


@pytest.fixture
def four_states(db):
    now = timezone.now()
    make("dispatched", states=(DeliveryState.PENDING,))
    make("scheduled", dispatched=False, publish_at=now + timedelta(hours=1))
    make("pending", dispatched=False)
    make("overdue", dispatched=False, publish_at=now - timedelta(minutes=1))
    make("expired", states=(DeliveryState.READ,), expires_at=now - timedelta(seconds=1))
    make("expired unsent", dispatched=False, expires_at=now - timedelta(seconds=1))
    make("expiring later", states=(DeliveryState.READ,), expires_at=now + timedelta(days=1))
    make("sent ahead of time", states=(DeliveryState.READ,), publish_at=now + timedelta(hours=1))


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("scheduled", {"scheduled"}),
        ("pending", {"pending", "overdue"}),
        ("dispatched", {"dispatched", "expiring later", "sent ahead of time"}),
        ("expired", {"expired", "expired unsent"}),
    ],
)
def test_state_filter(admin, four_states, state, expected):
    response = admin.get(CHANGELIST, {"state": state})
    assert titles(response) == expected


def test_level_audience_filters_and_search(admin):
    make("Disk almost full", level=Level.WARNING, audience=Audience.STAFF)
    make("Deploy finished", level=Level.SUCCESS)
    make("Disk replaced", level=Level.SUCCESS, audience=Audience.STAFF)
    assert titles(admin.get(CHANGELIST, {"level__exact": "success"})) == {
        "Deploy finished",
        "Disk replaced",
    }
    assert titles(admin.get(CHANGELIST, {"audience__exact": "staff"})) == {
        "Disk almost full",
        "Disk replaced",
    }
    assert titles(admin.get(CHANGELIST, {"q": "disk"})) == {"Disk almost full", "Disk replaced"}
    assert titles(admin.get(CHANGELIST, {"q": "disk", "level__exact": "warning"})) == {
        "Disk almost full"
    }


def test_changelist_query_count_does_not_grow_with_rows(admin, django_assert_max_num_queries):
    def add_rows(count: int) -> None:
        editors = GroupFactory()
        for i in range(count):
            make(
                f"user {i}",
                audience=Audience.USER,
                recipient=UserFactory(),
                created_by=UserFactory(),
                states=(DeliveryState.READ,),
            )
            make(
                f"group {i}",
                audience=Audience.GROUP,
                group=editors,
                states=(DeliveryState.PENDING, DeliveryState.DELIVERED),
            )

    add_rows(2)
    admin.get(CHANGELIST)  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as few:
        assert len(admin.get(CHANGELIST).context["cl"].result_list) == 4
    add_rows(20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(admin.get(CHANGELIST).context["cl"].result_list) == 44


# ---- actions ------------------------------------------------------------------------------


def run_action(client, action: str, *notifications: Notification):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(n.pk) for n in notifications]},
        follow=True,
    )


async def _receive(layer, channel: str, timeout: float) -> dict:
    return await asyncio.wait_for(layer.receive(channel), timeout=timeout)


def test_resend_pushes_only_to_users_still_pending(admin):
    notification = make(
        "Try again",
        states=(
            DeliveryState.PENDING,
            DeliveryState.PENDING,
            DeliveryState.DELIVERED,
            DeliveryState.READ,
        ),
    )
    deliveries = list(Delivery.objects.filter(notification=notification).order_by("pk"))
    layer = get_channel_layer()
    channels = {d.user_id: f"test-resend.{uuid.uuid4().hex}" for d in deliveries}
    for user_id, channel in channels.items():
        async_to_sync(layer.group_add)(user_group(user_id), channel)
    try:
        response = run_action(admin, "resend_undelivered", notification)
        received = {}
        for delivery in deliveries:
            wait = 5 if delivery.state == DeliveryState.PENDING else 0.3
            with contextlib.suppress(TimeoutError):
                received[delivery.user_id] = async_to_sync(_receive)(
                    layer, channels[delivery.user_id], wait
                )
    finally:
        for user_id, channel in channels.items():
            async_to_sync(layer.group_discard)(user_group(user_id), channel)

    pending = {d.user_id for d in deliveries if d.state == DeliveryState.PENDING}
    assert set(received) == pending
    for event in received.values():
        assert event["type"] == "notify.created"
        assert event["notification"]["id"] == notification.pk
        assert event["notification"]["title"] == "Try again"
    assert "Sent again to 2 users who had not received it." in message_texts(response)


def test_resend_skips_unsent_and_expired_and_reports_nothing_to_do(admin):
    unsent = make("Not sent yet", dispatched=False)
    gone = make(
        "Gone", states=(DeliveryState.PENDING,), expires_at=timezone.now() - timedelta(seconds=1)
    )
    done = make("All read", states=(DeliveryState.READ,))
    texts = message_texts(run_action(admin, "resend_undelivered", unsent, gone))
    assert texts == ["Skipped 2 notifications that are not sent yet or have expired."]
    texts = message_texts(run_action(admin, "resend_undelivered", done))
    assert texts == ["Nothing to send: every recipient has already received it."]


def test_resend_with_redis_down_reports_an_error(admin):
    notification = make("Redis is down", states=(DeliveryState.PENDING,))
    unreachable = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.5}]
            },
        }
    }
    with override_settings(CHANNEL_LAYERS=unreachable):
        response = run_action(admin, "resend_undelivered", notification)
    assert response.status_code == 200
    texts = message_texts(response)
    assert len(texts) == 1
    assert texts[0].startswith("Could not reach the channel layer (")
    assert "“Redis is down”" in texts[0]


def test_expire_now(admin, user):
    live = make("Live", states=(DeliveryState.PENDING,))
    Delivery.objects.create(notification=live, user=user)
    already = make("Old", expires_at=timezone.now() - timedelta(days=1))
    old_expiry = already.expires_at
    before = timezone.now()
    texts = message_texts(run_action(admin, "expire_now", live, already))
    assert texts == [
        "Expired 1 notification: it has left the bell and the inbox.",
        "1 notification had already expired.",
    ]
    live.refresh_from_db()
    already.refresh_from_db()
    assert before <= live.expires_at <= timezone.now()
    assert already.expires_at == old_expiry
    assert not Delivery.objects.for_user(user).exists()


def test_actions_need_their_permissions(client, db):
    viewer = with_perms(StaffFactory(), "change_notification")
    client.force_login(viewer)
    notification = make("Pending", states=(DeliveryState.PENDING,))
    listing = client.get(CHANGELIST)
    actions = offered_actions(listing)
    assert "expire_now" in actions
    assert "resend_undelivered" not in actions
    refused = message_texts(run_action(client, "resend_undelivered", notification))
    assert not any("Sent again" in text for text in refused)
    run_action(client, "expire_now", notification)
    notification.refresh_from_db()
    assert notification.is_expired


# ---- deliveries ---------------------------------------------------------------------------


def test_delivery_view_per_notification_is_filterable(admin):
    notification = make(
        "Counted", states=(DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.READ)
    )
    make("Other", states=(DeliveryState.PENDING,))
    response = admin.get(DELIVERIES, {"notification__id__exact": notification.pk})
    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert {d.notification_id for d in shown} == {notification.pk}
    assert len(shown) == 3
    html = response.content.decode()
    assert "Deliveries of “Counted”" in html
    assert "3 recipients: 1 waiting, 2 delivered, 1 read." in html

    pending = admin.get(
        DELIVERIES, {"notification__id__exact": notification.pk, "state__exact": "pending"}
    )
    assert [d.state for d in pending.context["cl"].result_list] == ["pending"]

    page = admin.get(change_url(notification)).content.decode()
    assert f"{DELIVERIES}?notification__id__exact={notification.pk}" in page
    assert "View deliveries" in page


def test_deliveries_are_read_only(admin):
    notification = make("Counted", states=(DeliveryState.PENDING,))
    delivery = Delivery.objects.get(notification=notification)
    url = f"{DELIVERIES}{delivery.pk}/change/"
    page = admin.get(url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin.post(url, {"state": "read"}).status_code == 403
    assert admin.get(f"{DELIVERIES}add/").status_code == 403
    assert admin.post(f"{DELIVERIES}{delivery.pk}/delete/", {"post": "yes"}).status_code == 403
    listing = admin.get(DELIVERIES)
    assert f"{DELIVERIES}add/" not in listing.content.decode()
    assert "delete_selected" not in offered_actions(listing)
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.PENDING


def test_deleting_a_notification_summarises_its_deliveries(admin):
    notification = make("Doomed", states=(DeliveryState.PENDING,) * 3)
    url = f"{CHANGELIST}{notification.pk}/delete/"
    confirm = admin.get(url)
    assert confirm.status_code == 200
    assert list(confirm.context["model_count"]) == [("notifications", 1), ("deliveries", 3)]
    assert not confirm.context["perms_lacking"]
    assert admin.post(url, {"post": "yes"}).status_code == 302
    assert not Notification.objects.exists()
    assert not Delivery.objects.exists()


@pytest.mark.parametrize("filtered", [True, False])
def test_delivery_changelist_query_count_does_not_grow(
    admin, django_assert_max_num_queries, filtered
):
    notification = make("Many", states=(DeliveryState.PENDING,) * 3)
    url = f"{DELIVERIES}?notification__id__exact={notification.pk}" if filtered else DELIVERIES
    admin.get(url)
    with CaptureQueriesContext(connection) as few:
        assert len(admin.get(url).context["cl"].result_list) == 3
    Delivery.objects.bulk_create(
        Delivery(notification=notification, user=UserFactory(), state=DeliveryState.READ)
        for _ in range(30)
    )
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(admin.get(url).context["cl"].result_list) == 33
