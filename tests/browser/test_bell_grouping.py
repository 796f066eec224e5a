"""Grouping in the bell (issue 12, item 3), in Chromium on the real stack.

Rows of one non-empty ``group_key`` that changed together are ONE row: the newest one, with
"Eve, Dee and 3 others" above its title and ``data-notification-group-count``. A burst of one
key leaves one row, raises the badge by one and toasts at most once in 5 s; a row beside it
without a key stays its own. Read, Done and unread of a group's row act on the whole item
(``"group": true``, on the socket or the HTTP fallback): every row of it changes in the
database, the other tab follows, and a reload shows the same one item (the server lists one
head per item).
"""

from __future__ import annotations

import itertools
import json
import re
import time

import pytest
from django.db import transaction
from playwright.sync_api import BrowserContext, Page, WebSocketRoute, expect

import notifications
from notifications.models import Delivery
from notifications.services import deliveries_mark_read
from tests.browser.axe import assert_accessible
from tests.browser.conftest import Bell, log_in, screenshot, wait_until
from tests.browser.test_bell_triage import action
from tests.browser.test_leader_tab import HOOKS, Sockets, state, tabs
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "post:42:comments"
NAMES = ["Ana", "Bo", "Cy", "Dee", "Eve"]
# Every toast and every badge value a page shows, with when (the bell's own hooks cannot
# tell what was on screen in between).
RECORDER = """
    window.__shown = { toasts: [], maxBadge: 0 };
    new MutationObserver(function (records) {
      records.forEach(function (record) {
        if (record.type === "attributes") {
          var value = Number(record.target.getAttribute("data-unread-count")) || 0;
          window.__shown.maxBadge = Math.max(window.__shown.maxBadge, value);
          return;
        }
        record.addedNodes.forEach(function (node) {
          if (node.nodeType === 1 && node.hasAttribute("data-notification-toast")) {
            window.__shown.toasts.push({
              id: node.getAttribute("data-toast-id"),
              summary: node.hasAttribute("data-toast-summary") ||
                node.classList.contains("nbell-toast-summary"),
              at: Date.now()
            });
          }
        });
      });
    }).observe(document, { childList: true, subtree: true, attributes: true,
                           attributeFilter: ["data-unread-count"] });
"""


def actors() -> list:
    return [UserFactory(username=f"actor-{name.lower()}", first_name=name) for name in NAMES]


def comments(user, people: list, count: int, *, start: int = 0) -> list:
    """``count`` notifications of KEY, committed together, by ``people`` in turn."""
    with transaction.atomic():
        return [
            notifications.notify(
                user,
                f"{people[i % len(people)].first_name} commented on your post",
                url="/",
                group_key=KEY,
                actor=people[i % len(people)],
            )
            for i in range(start, start + count)
        ]


def delivered(user, count: int, **filters) -> None:
    wait_until(
        lambda: (
            Delivery.objects.filter(user=user, notification__group_key=KEY, **filters).count()
            == count
        ),
        timeout=30,
        what=f"{count} deliveries of {KEY} {filters}",
    )


def group_row(bell: Bell):
    return bell.root.locator("[data-notification-list] [data-notification-group-count]")


def expect_group_row(bell: Bell, count: int, actors_text: str) -> None:
    row = group_row(bell)
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-notification-group-count", str(count))
    expect(row.locator(".nbell-actors")).to_have_text(actors_text)


def frames_sent(page: Page, sockets: Sockets, kind: str, timeout: float = 5.0) -> list[dict]:
    """The client frames of ``kind`` the sockets of ``page`` sent, once there is one.

    Playwright hands its events to Python only while Python is inside one of its calls:
    a frame sent while the test polled the database shows up at the next call, so wait in
    Playwright (bounded) rather than read the list at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [f for owner, f in sockets.sent if owner is page and f.get("type") == kind]
        if found or time.monotonic() > deadline:
            return found
        page.wait_for_timeout(50)


def watch_frames(sockets: Sockets) -> Sockets:
    sockets.sent = []
    original = sockets.watch

    def watch(page: Page) -> Page:
        page.on(
            "websocket",
            lambda ws: ws.on(
                "framesent",
                lambda payload: (
                    sockets.sent.append((page, json.loads(payload)))
                    if isinstance(payload, str)
                    else None
                ),
            ),
        )
        return original(page)

    sockets.watch = watch
    return sockets


def leader_and_follower(context: BrowserContext, sockets: Sockets) -> tuple[Bell, Bell]:
    bells = tabs(context, sockets, 2)
    leader = next(bell for bell in bells if state(bell)["role"] == "leader")
    follower = next(bell for bell in bells if bell is not leader)
    return leader, follower


def test_a_burst_of_one_key_is_one_row_counted_once_and_toasted_once(new_context):
    user = UserFactory()
    people = actors()
    context = new_context()
    context.add_init_script(HOOKS)
    context.add_init_script(RECORDER)
    log_in(context, user.username).close()
    leader, follower = leader_and_follower(context, Sockets())

    lone = notifications.notify(user, "Your export is ready")
    for bell in (leader, follower):
        bell.expect_unread(1)

    # 200 comments in about two seconds: ten commits of twenty.
    sent = []
    for batch in range(10):
        sent += comments(user, people, 20, start=batch * 20)
        time.sleep(0.2)
    delivered(user, 200)
    newest = sent[-1]  # by Eve, then Dee, Cy, Bo, Ana
    for bell in (leader, follower):
        bell.open()
        expect_group_row(bell, 200, "Eve, Dee and 3 others")
        expect(bell.items).to_have_count(2)  # the group and the lone one beside it
        expect(bell.item(newest.pk)).to_have_attribute("data-notification-group-count", "200")
        expect(bell.item(newest.pk).locator(".nbell-title")).to_have_text(
            "Eve commented on your post"
        )
        expect(bell.item(newest.pk).locator(".nbell-group-size")).to_have_text("200 notifications")
        assert bell.item(lone.pk).get_attribute("data-notification-group-count") is None
        bell.expect_unread(2)
    leader.page.wait_for_timeout(1500)  # a late toast decision would show by now
    members = {str(n.pk) for n in sent}
    toasts = []
    for bell in (leader, follower):
        shown = bell.page.evaluate("window.__shown")
        assert shown["maxBadge"] == 2, shown["maxBadge"]  # never once per comment
        toasts += shown["toasts"]
    assert not [t for t in toasts if t["summary"]], toasts  # no "200 new notifications"
    # At most one toast of the group in any 5 s (the burst lasted about two: one at most).
    of_group = sorted(t["at"] for t in toasts if t["id"] in members)
    assert all(b - a >= 5000 for a, b in itertools.pairwise(of_group)), of_group
    assert len(of_group) <= 1, of_group
    # The leader's held members are all there (the dropdown shows them as one).
    group = next(g for g in state(leader)["groups"] if g["head"] == newest.pk)
    assert group["count"] == 200

    # A reload: the server's list has the one item, with the same size and actors.
    leader.page.reload()
    again = Bell(leader.page).wait_ready()
    again.expect_unread(2)
    again.open()
    expect_group_row(again, 200, "Eve, Dee and 3 others")
    expect(again.items).to_have_count(2)


def test_a_push_into_a_listed_group_updates_its_row_in_place(new_context):
    user = UserFactory()
    people = actors()
    comments(user, people[:2], 6)  # Ana, Bo, … before the page: the server lists one head
    delivered(user, 6)
    context = new_context()
    context.add_init_script(RECORDER)
    bell = Bell(log_in(context, user.username)).wait_ready()
    bell.expect_unread(1)
    bell.open()
    expect_group_row(bell, 6, "Bo and Ana")

    pushed = comments(user, people, 1, start=2)[0]  # Cy
    expect(bell.item(pushed.pk)).to_have_attribute("data-notification-group-count", "7")
    expect_group_row(bell, 7, "Cy, Bo and Ana")
    expect(bell.items).to_have_count(1)
    bell.expect_unread(1)
    assert bell.page.evaluate("window.__shown.maxBadge") == 1


def test_read_done_and_unread_of_a_group_act_on_every_row_and_the_other_tab_follows(new_context):
    user = UserFactory()
    people = actors()
    comments(user, people, 20)
    delivered(user, 20)
    context = new_context()
    context.add_init_script(HOOKS)
    log_in(context, user.username).close()
    sockets = watch_frames(Sockets())
    leader, follower = leader_and_follower(context, sockets)
    lone = notifications.notify(user, "Your export is ready")
    pushed = comments(user, people, 5, start=20)  # merge into the listed item
    head = pushed[-1]
    delivered(user, 25)
    for bell in (leader, follower):
        bell.expect_unread(2)
        bell.open()
        expect_group_row(bell, 25, "Eve, Dee and 3 others")

    # Read as one, from the follower: the leader's socket carries "group": true.
    action(follower, head.pk, "data-notification-read").click()
    delivered(user, 25, read_at__isnull=False)
    reads = frames_sent(leader.page, sockets, "read")
    assert reads and reads[-1] == {"type": "read", "ids": [head.pk], "group": True}, reads
    assert Delivery.objects.get(user=user, notification=lone).read_at is None
    assert (
        len(
            set(
                Delivery.objects.filter(user=user, notification__group_key=KEY).values_list(
                    "read_at", flat=True
                )
            )
        )
        == 1
    )  # read together
    for bell in (leader, follower):
        bell.expect_unread(1)
        expect_group_row(bell, 25, "Eve, Dee and 3 others")  # still one row, now read
        expect(bell.item(head.pk)).not_to_have_class(re.compile(r"\bis-unread\b"))

    # A reload lists the read item as one too (its rows share one read_at).
    follower.page.reload()
    follower = Bell(follower.page).wait_ready()
    follower.open()
    expect_group_row(follower, 25, "Eve, Dee and 3 others")
    expect(follower.item(head.pk)).not_to_have_class(re.compile(r"\bis-unread\b"))

    # Unread as one, from the leader.
    action(leader, head.pk, "data-notification-unread").click()
    delivered(user, 25, read_at__isnull=True)
    for bell in (leader, follower):
        bell.expect_unread(2)
        expect(bell.item(head.pk)).to_have_class(re.compile(r"\bis-unread\b"))
        expect_group_row(bell, 25, "Eve, Dee and 3 others")

    # Done as one: every row archived, the row leaves both tabs, the badge drops by one.
    action(leader, head.pk, "data-notification-archive").click()
    delivered(user, 25, archived_at__isnull=False)
    for bell in (leader, follower):
        bell.expect_unread(1)
        expect(group_row(bell)).to_have_count(0)
        expect(bell.item(lone.pk)).to_have_count(1)


def test_following_a_group_link_without_the_socket_reads_it_over_http_as_one(new_context):
    """The socket's read frame is lost: the HTTP fallback carries "group": true."""
    user = UserFactory()
    people = actors()
    comments(user, people, 8)
    delivered(user, 8)
    context = new_context()

    def drop_reads(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message).get("type") == "read":
                return  # lost on the way
            server.send(message)

        ws.on_message(from_page)
        server.on_message(lambda message: ws.send(message))

    context.route_web_socket("**/ws/notifications/", drop_reads)
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()
    bell.expect_unread(1)
    bell.open()
    row = group_row(bell)
    expect(row).to_have_attribute("data-notification-group-count", "8")
    head = int(row.get_attribute("data-notification-id"))
    with page.expect_request(lambda r: r.method == "POST" and "/read/" in r.url) as posted:
        action(bell, head, "data-notification-read").click()
    assert posted.value.post_data_json == {"ids": [head], "group": True}
    delivered(user, 8, read_at__isnull=False)
    bell.expect_unread(0)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_grouped_row_on_a_phone(new_context, scheme):
    """What a group's row looks like at 375 px, in both schemes (and axe has no complaint)."""
    user = UserFactory()
    people = actors()
    with transaction.atomic():
        builds = [
            notifications.notify(
                user, f"Nightly build {i} failed", level="error", group_key="ci:nightly"
            )
            for i in range(3)
        ]
    wait_until(lambda: Delivery.objects.filter(user=user).count() == 3, what="the builds")
    deliveries_mark_read(user, [n.pk for n in builds])  # read together: still one item
    lone = notifications.notify(user, "Your export is ready", body="report-2026-11.csv, 2 MB")
    sent = comments(user, people, 12)
    wait_until(lambda: Delivery.objects.filter(user=user).count() == 16, what="16 deliveries")
    context = new_context(
        color_scheme=scheme,
        viewport={"width": 375, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()
    bell.expect_unread(2)
    bell.open()
    expect(bell.items).to_have_count(3)
    expect_group_row_of(bell, sent[-1].pk, 12, "Bo, Ana and 3 others")
    expect_group_row_of(bell, builds[-1].pk, 3, "3 notifications")
    assert bell.item(lone.pk).get_attribute("data-notification-group-count") is None
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert_accessible(page, "[data-notification-bell]")
    screenshot(page, f"bell-group-mobile-{scheme}.png", animations="disabled")


def expect_group_row_of(bell: Bell, head: int, count: int, actors_text: str) -> None:
    row = bell.item(head)
    expect(row).to_have_attribute("data-notification-group-count", str(count))
    expect(row.locator(".nbell-actors")).to_have_text(actors_text)


def test_a_group_read_elsewhere_whose_frame_was_lost_is_read_after_a_reconnect(new_context):
    """The first page after a reconnect lists the group by its head only: the members held
    here from their pushes follow it (no stale unread group of the older ones)."""
    user = UserFactory()
    people = actors()
    context = new_context()
    context.add_init_script(HOOKS)
    routes: list[WebSocketRoute] = []

    def drop_server_reads(ws: WebSocketRoute) -> None:
        routes.append(ws)
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message).get("type") == "read":
                return  # lost on the way
            ws.send(message)

        server.on_message(from_server)

    context.route_web_socket("**/ws/notifications/", drop_server_reads)
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()
    sent = comments(user, people, 6)
    delivered(user, 6)
    expect(bell.item(sent[-1].pk)).to_have_attribute("data-notification-group-count", "6")
    bell.expect_unread(1)

    deliveries_mark_read(user, [sent[-1].pk], group=True)  # another device, say
    delivered(user, 6, read_at__isnull=False)
    routes[-1].close(code=1006, reason="gone")  # the page reconnects and fetches its list
    expect(bell.root).to_have_attribute("data-connection-state", "open")
    bell.expect_unread(0)
    bell.open()
    expect_group_row(bell, 6, "Ana, Eve and 3 others")
    expect(bell.items).to_have_count(1)
    expect(bell.item(sent[-1].pk)).not_to_have_class(re.compile(r"\bis-unread\b"))
    groups = state(bell)["groups"]
    assert [(g["count"], g["read"]) for g in groups] == [(6, True)], groups


def test_a_later_toast_of_a_group_replaces_the_one_on_screen(new_context):
    """A toast stays up 6 s, a group may toast again after 5 s: the newer one takes over."""
    user = UserFactory()
    people = actors()
    bell = Bell(log_in(new_context(), user.username)).wait_ready()
    first = comments(user, people, 1)[0]
    expect(bell.toast(first.pk)).to_be_visible()
    bell.page.wait_for_timeout(5200)  # the group's window is over; the toast is still up
    expect(bell.toast(first.pk)).to_be_visible()
    second = comments(user, people, 1, start=1)[0]
    expect(bell.toast(second.pk)).to_be_visible()
    expect(bell.toast(first.pk)).to_have_count(0)
    expect(bell.root.locator("[data-notification-toast]")).to_have_count(1)
    bell.expect_unread(1)
