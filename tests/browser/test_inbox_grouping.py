"""Grouping in the inbox (issue 12, item 3), in Chromium on the real stack.

A group item is one head row: "Dee, Cy and 2 others" above the newest title and a "3 more"
expander. The expander opens the members under the head (from the API's ``group=`` list),
each with its own row actions; the head's actions act on the whole item. A push of the key
updates the head in place. Without JavaScript the expander is a page of the members. Dark
mode, a phone's width, the keyboard and axe, as the rest of the inbox.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from notifications.models import Delivery, DeliveryState
from notifications.services import notify
from tests.browser.axe import assert_accessible
from tests.browser.conftest import log_in, screenshot
from tests.browser.test_inbox_live import INBOX, count_of, delivered, open_inbox, row, rows
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "doc:7:comments"


def people(*names: str) -> list:
    return [UserFactory(username=f"inbox-{name.lower()}", first_name=name) for name in names]


def a_thread(user, names=("Ana", "Bo", "Cy", "Dee")) -> dict:
    """A plain notification, then one comment per name on one document (the last newest)."""
    plain = notify(user, "Your export is ready", body="orders.csv, 4.2 MB", level="success")
    comments = [
        notify(
            user,
            f"{person.first_name} commented on “Q4 roadmap”",
            body=f"“Looks good to me” — {person.first_name}",
            url="/",
            group_key=KEY,
            actor=person,
        )
        for person in people(*names)
    ]
    delivered(user, len(comments) + 1)
    return {"plain": plain, "members": comments, "head": comments[-1]}


def top_rows(page: Page):
    return page.locator("main .ninbox-list > [data-notification-id]")


def members(page: Page):
    return page.locator("main .ninbox-members [data-notification-id]")


def expander(page: Page, notification):
    return row(page, notification).locator("[data-ninbox-expand]")


def grouped_states(user) -> dict[int, tuple[str, bool]]:
    rows = Delivery.objects.filter(user=user, notification__group_key=KEY)
    return {d.notification_id: (d.state, d.archived_at is not None) for d in rows}


def test_expand_act_on_a_member_then_on_the_whole_item(new_context):
    user = UserFactory()
    thread = a_thread(user)
    head, made = thread["head"], thread["members"]
    page = open_inbox(log_in(new_context(), user.username))
    expect(top_rows(page)).to_have_count(2)
    expect(count_of(page, "unread")).to_have_text("2")  # the group counts once
    head_row = row(page, head)
    expect(head_row.locator(".ninbox-actors")).to_have_text("Dee, Cy and 2 others")
    expect(head_row.locator(".ninbox-title")).to_have_text("Dee commented on “Q4 roadmap”")
    more = expander(page, head)
    expect(more).to_have_attribute("data-notification-group-count", "4")
    expect(more).to_contain_text("3 more")
    expect(more).to_have_attribute("aria-expanded", "false")
    page.evaluate("window.__sameDocument = true")

    more.click()
    expect(more).to_have_attribute("aria-expanded", "true")
    expect(members(page)).to_have_count(3)
    ids = [
        int(i) for i in members(page).evaluate_all("els => els.map(e => e.dataset.notificationId)")
    ]
    assert ids == [n.pk for n in reversed(made[:-1])]  # newest first, the head not again
    expect(page.locator("main .ninbox-members")).to_have_attribute(
        "id", more.get_attribute("aria-controls")
    )

    # A member's own Done: only it, and the head says one fewer.
    bo = row(page, made[1])
    bo.hover()
    bo.locator("[data-notification-archive]").click()
    expect(bo).to_have_count(0)
    expect(members(page)).to_have_count(2)
    expect(more).to_have_attribute("data-notification-group-count", "3")
    expect(more).to_contain_text("2 more")
    expect(page.locator("[data-ninbox-notice]")).to_contain_text("1 marked done.")
    assert [n for n, (_, archived) in grouped_states(user).items() if archived] == [made[1].pk]

    # The head's Mark read: the whole item, members shown included.
    head_row.hover()
    head_row.locator("[data-notification-read]").click()
    expect(page.locator("main .ninbox-item.unread")).to_have_count(1)  # the plain one
    expect(page.locator("[data-ninbox-notice]")).to_contain_text("Marked 3 as read.")
    states = grouped_states(user)
    assert all(states[n.pk][0] == DeliveryState.READ for n in made if n != made[1])
    expect(count_of(page, "unread")).to_have_text("1")

    # Undo makes the whole item unread again.
    page.locator("[data-ninbox-undo]").click()
    expect(page.locator("main .ninbox-item.unread")).to_have_count(4)
    states = grouped_states(user)
    assert all(states[n.pk][0] != DeliveryState.READ for n in made if n != made[1])

    # Select the head, bulk Done: the whole item leaves the inbox.
    head_row.locator("[data-ninbox-select]").check()
    page.locator("[data-ninbox-bulk] button[value=archive]").click()
    expect(top_rows(page)).to_have_count(1)
    expect(members(page)).to_have_count(0)
    expect(page.locator("[data-ninbox-notice]")).to_contain_text("3 marked done.")
    assert all(archived for _, archived in grouped_states(user).values())
    expect(count_of(page, "archived")).to_have_text("4")
    assert page.evaluate("window.__sameDocument") is True

    # In Archived the item is one head again, its members under it.
    page = open_inbox(page, "?status=archived")
    expect(top_rows(page)).to_have_count(2)  # Bo archived alone, the rest as one
    expect(expander(page, head)).to_contain_text("2 more")
    expander(page, head).click()
    expect(members(page)).to_have_count(2)
    row(page, head).hover()
    row(page, head).locator("[data-notification-unarchive]").click()
    expect(top_rows(page)).to_have_count(1)
    assert [n for n, (_, archived) in grouped_states(user).items() if archived] == [made[1].pk]


def test_a_push_of_the_key_updates_the_head_in_place(new_context):
    user = UserFactory()
    thread = a_thread(user, names=("Ana", "Bo"))
    page = open_inbox(log_in(new_context(), user.username))
    old_head = thread["head"]
    more = expander(page, old_head)
    expect(more).to_contain_text("1 more")
    more.click()
    expect(members(page)).to_have_count(1)
    page.evaluate("window.__sameDocument = true")

    (eve,) = people("Eve")
    fresh = notify(user, "Eve commented on “Q4 roadmap”", group_key=KEY, actor=eve, url="/")
    head_row = row(page, fresh)
    expect(head_row).to_be_visible()
    expect(top_rows(page)).to_have_count(2)  # still one item and the plain row
    expect(top_rows(page).first).to_have_attribute("data-notification-id", str(fresh.pk))
    expect(head_row.locator(".ninbox-actors")).to_have_text("Eve, Bo and Ana")
    expect(head_row.locator("[data-ninbox-expand]")).to_have_attribute(
        "data-notification-group-count", "3"
    )
    expect(head_row.locator("[data-ninbox-expand]")).to_contain_text("2 more")
    expect(head_row.locator("[data-ninbox-expand]")).to_have_attribute("aria-expanded", "true")
    # The old head is the newest member now, under the new one.
    expect(members(page)).to_have_count(2)
    expect(members(page).first).to_have_attribute("data-notification-id", str(old_head.pk))
    expect(count_of(page, "unread")).to_have_text("2")  # the item was counted already

    # A key's first arrival next to a row of one makes a group of two (the row's own actor).
    lone = notify(user, "Fay mentioned you", group_key="mention:1", actor=people("Fay")[0])
    expect(row(page, lone)).to_be_visible()
    expect(row(page, lone).locator("[data-ninbox-expand]")).to_have_count(0)
    second = notify(user, "Gus mentioned you", group_key="mention:1", actor=people("Gus")[0])
    expect(row(page, second).locator(".ninbox-actors")).to_have_text("Gus and Fay")
    expect(row(page, lone)).to_have_count(0)
    expect(top_rows(page)).to_have_count(3)
    assert page.evaluate("window.__sameDocument") is True
    # The server agrees after a reload.
    page = open_inbox(page)
    expect(top_rows(page)).to_have_count(3)
    expect(expander(page, fresh)).to_contain_text("2 more")
    expect(row(page, second).locator(".ninbox-actors")).to_have_text("Gus and Fay")


def test_without_javascript_the_expander_is_a_page_of_the_members(new_context):
    user = UserFactory()
    thread = a_thread(user)
    page = log_in(new_context(java_script_enabled=False), user.username)
    page.goto(INBOX)
    expect(top_rows(page)).to_have_count(2)
    expander(page, thread["head"]).click()
    page.wait_for_url(re.compile(r"\?group=doc%3A7%3Acomments&bucket_of=\d+"))
    expect(rows(page)).to_have_count(4)
    expect(page.locator(".ninbox-group-summary")).to_contain_text("4 notifications in this group")
    # A member's own Done there: only it.
    row(page, thread["members"][0]).locator("[data-notification-archive]").click()
    expect(rows(page)).to_have_count(3)
    assert sum(archived for _, archived in grouped_states(user).values()) == 1
    page.locator("[data-ninbox-back]").click()
    page.wait_for_url(f"**{INBOX}")
    expect(expander(page, thread["head"])).to_contain_text("2 more")
    # The head's own Mark read, a form with group=1: the whole item.
    row(page, thread["head"]).locator("[data-notification-read]").click()
    expect(page.locator(".messages, .ninbox-messages")).to_contain_text("Marked 3 as read.")
    states = grouped_states(user)
    assert (
        sorted(state for state, archived in states.values() if not archived)
        == [DeliveryState.READ] * 3
    )


def shots(page: Page, name: str, **kwargs) -> None:
    screenshot(page, name, animations="disabled", **kwargs)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_grouped_inbox_is_accessible_by_keyboard_and_looks_finished(new_context, scheme):
    user = UserFactory()
    thread = a_thread(user, names=("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "Bo", "Ana"))
    notify(user, "Weekly digest: 12 new posts in #design", body="", level="info")
    delivered(user, 12)
    page = open_inbox(log_in(new_context(color_scheme=scheme), user.username))
    head = thread["head"]
    expect(row(page, head).locator(".ninbox-actors")).to_have_text("Ana, Bo and 8 others")
    assert_accessible(page, ".ninbox")
    page.mouse.move(5, 5)
    shots(page, f"inbox-group-{scheme}.png", full_page=True)

    # The keyboard: Tab reaches the expander after the head's checkbox; Space and Enter toggle.
    row(page, head).locator("[data-ninbox-select]").focus()
    page.keyboard.press("Tab")
    more = expander(page, head)
    expect(more).to_be_focused()
    page.keyboard.press("Space")
    expect(more).to_have_attribute("aria-expanded", "true")
    expect(members(page)).to_have_count(9)
    page.keyboard.press("Enter")
    expect(more).to_have_attribute("aria-expanded", "false")
    expect(members(page)).to_have_count(0)
    page.keyboard.press("Enter")
    expect(members(page)).to_have_count(9)
    assert_accessible(page, ".ninbox")
    page.mouse.move(5, 5)
    row(page, thread["members"][-3]).hover()
    shots(page, f"inbox-group-expanded-{scheme}.png", full_page=True)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_grouped_inbox_at_phone_width(new_context, scheme):
    user = UserFactory()
    thread = a_thread(user, names=("P1", "P2", "P3", "P4", "Bo", "Ana"))
    context = new_context(
        color_scheme=scheme, viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True
    )
    page = open_inbox(log_in(context, user.username))
    head_row = row(page, thread["head"])
    expect(head_row.locator(".ninbox-actors")).to_have_text("Ana, Bo and 4 others")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # The names and the expander stay inside the row (the expander goes below if need be).
    edge = page.locator(".ninbox-box").bounding_box()
    parts = (head_row.locator(".ninbox-actors"), expander(page, thread["head"]))
    for part in (*parts, head_row.locator(".ninbox-title")):
        box = part.bounding_box()
        assert box["x"] + box["width"] <= edge["x"] + edge["width"], part
    shots(page, f"inbox-group-phone-{scheme}.png", full_page=True)
    expander(page, thread["head"]).tap()
    expect(members(page)).to_have_count(5)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    expect(members(page).first.locator("[data-notification-archive]")).to_be_visible()
    assert_accessible(page, ".ninbox")
    shots(page, f"inbox-group-phone-expanded-{scheme}.png", full_page=True)


def test_a_big_item_opens_a_page_at_a_time(new_context):
    user = UserFactory()
    thread = a_thread(user, names=tuple(f"U{i:02d}" for i in range(23)))
    page = open_inbox(log_in(new_context(), user.username))
    more = expander(page, thread["head"])
    expect(more).to_contain_text("22 more")
    more.click()
    expect(members(page)).to_have_count(19)  # the first page of 20, less the head
    show_more = page.locator("[data-ninbox-members-more]")
    expect(show_more).to_be_visible()
    show_more.click()
    expect(members(page)).to_have_count(22)
    expect(show_more).to_be_hidden()
    ids = [
        int(i) for i in members(page).evaluate_all("els => els.map(e => e.dataset.notificationId)")
    ]
    assert ids == [n.pk for n in reversed(thread["members"][:-1])]
