"""The notification settings page and what its choices do to an open bell, in real Chromium.

Through the live stack (daphne, the listener, Redis): a change saved on the page in one
browser reaches the bell open in another at once, as the server's ``preferences`` frame.
Toasts off and quiet hours are the bell's decision (listed and counted, no toast); a muted
category never reaches the bell (the server drops it). The page works without JavaScript,
at 375 px and in dark mode; axe checks it in both schemes.
"""

from __future__ import annotations

import time
import zoneinfo
from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from playwright.sync_api import BrowserContext, Page, expect

from notifications.models import Delivery
from notifications.preferences import preferences_read, preferences_write
from notifications.services import notify
from tests.browser.axe import assert_accessible
from tests.browser.conftest import Bell, log_in, screenshot, wait_until
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOOKS = "window.__nbellTestHooks = true;"


def page_url() -> str:
    return reverse("notifications:preferences")


def settings_page(context: BrowserContext, username: str) -> Page:
    page = log_in(context, username)
    page.goto(page_url())
    expect(page.get_by_role("heading", name="Notification settings", level=1)).to_be_visible()
    return page


def switch(page: Page, category: str, name: str):
    """The switch ``name`` of ``category``'s row, found as a screen reader would."""
    return page.get_by_role("group", name=category).get_by_role("switch", name=name)


def saved(page: Page) -> None:
    expect(page.locator("[data-nprefs-status]")).to_have_text("Saved")


def watching_bell(context: BrowserContext, username: str) -> Bell:
    context.add_init_script(HOOKS)
    bell = Bell(log_in(context, username)).wait_ready()
    # The leader's GET of the preferences has answered (they are null until then).
    bell.page.wait_for_function("() => window.__nbell.state().preferences !== null")
    return bell


def bell_state(bell: Bell) -> dict:
    return bell.page.evaluate("window.__nbell.state()")


def delivered(user, notification) -> None:
    wait_until(
        lambda: Delivery.objects.filter(user=user, notification=notification).exists(),
        what=f"a delivery of {notification.title!r}",
    )


def test_the_gear_in_the_panel_opens_the_settings_page(new_context):
    user = UserFactory()
    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()
    bell.open()
    gear = bell.panel.get_by_role("link", name="Notification settings")
    expect(gear).to_be_visible()
    expect(gear).to_have_attribute("data-notification-preferences", "")
    gear.click()
    page.wait_for_url(f"**{page_url()}")
    expect(page.get_by_role("heading", name="Notification settings", level=1)).to_be_visible()
    expect(switch(page, "Mentions", "Toasts and pop-ups")).to_be_checked()
    expect(switch(page, "Security", "Show in bell")).to_be_disabled()
    expect(page.locator("[data-nprefs-save]")).to_be_hidden()  # with JS, changes save at once


def test_toasts_off_on_the_page_reach_an_open_bell_in_another_browser_at_once(new_context):
    user = UserFactory()
    bell = watching_bell(new_context(), user.username)
    page = settings_page(new_context(), user.username)

    started = time.monotonic()
    switch(page, "Mentions", "Toasts and pop-ups").click()
    saved(page)
    bell.page.wait_for_function(
        "() => window.__nbell.state().preferences.categories.mentions.toasts === false",
        timeout=5000,
    )
    print(f"the other browser's bell knew {time.monotonic() - started:.3f} s after the click")
    assert preferences_read(user)["categories"]["mentions"]["toasts"] is False

    quiet = notify(user, "Ana mentioned you", body="in #general", category="mentions")
    delivered(user, quiet)
    expect(bell.item(quiet.pk)).to_have_count(1)  # listed …
    bell.expect_unread(1)  # … and counted
    loud = notify(user, "Deploy finished", category="general")
    expect(bell.toast(loud.pk)).to_be_visible()  # another category still toasts
    # The later one toasted, so the earlier one's moment has passed: it never toasted. (Not
    # expect(...).to_have_count(0), which would wait out a toast's six seconds.)
    assert bell.toast(quiet.pk).count() == 0
    assert quiet.pk not in bell_state(bell)["toasted"]
    assert quiet.pk in bell_state(bell)["silenced"]
    assert loud.pk not in bell_state(bell)["silenced"]
    bell.expect_unread(2)

    # And back on: the next mention toasts again.
    switch(page, "Mentions", "Toasts and pop-ups").click()
    saved(page)
    bell.page.wait_for_function(
        "() => window.__nbell.state().preferences.categories.mentions.toasts === true"
    )
    again = notify(user, "Bo mentioned you", category="mentions")
    expect(bell.toast(again.pk)).to_be_visible()


def test_a_follower_tab_gets_the_preferences_relayed_and_toasts_only_what_may_toast(new_context):
    user = UserFactory()
    context = new_context()
    leader = watching_bell(context, user.username)
    follower_page = context.new_page()
    follower_page.goto("/")
    follower = Bell(follower_page).wait_ready()
    assert bell_state(follower)["role"] == "follower"
    # It has the leader's preferences from the snapshot, without a GET of its own.
    follower_page.wait_for_function("() => window.__nbell.state().preferences !== null")
    follower_page.bring_to_front()  # the visible tab focused last: it shows the toasts

    page = settings_page(new_context(), user.username)
    switch(page, "Mentions", "Toasts and pop-ups").click()
    saved(page)
    follower_page.wait_for_function(
        "() => window.__nbell.state().preferences.categories.mentions.toasts === false"
    )
    quiet = notify(user, "Ana mentioned you", category="mentions")
    delivered(user, quiet)
    loud = notify(user, "Deploy finished", category="general")
    expect(follower.toast(loud.pk)).to_be_visible()
    for bell in (leader, follower):
        expect(bell.item(quiet.pk)).to_have_count(1)
        bell.expect_unread(2)
        assert bell.toast(quiet.pk).count() == 0


def test_quiet_hours_covering_now_keep_toasts_away_but_critical_ones_still_show(new_context):
    user = UserFactory()
    # Quiet hours in Tokyo, around Tokyo's now; the browser is in New York, where the same
    # wall-clock hours are not now. Only the preferences' zone makes them quiet.
    tokyo = datetime.now(zoneinfo.ZoneInfo("Asia/Tokyo"))
    preferences_write(
        user,
        {
            "quiet_hours": {
                "enabled": True,
                "start": (tokyo - timedelta(hours=1)).strftime("%H:%M"),
                "end": (tokyo + timedelta(hours=1)).strftime("%H:%M"),
                "days": [(tokyo - timedelta(hours=1)).weekday()],
            }
        },
        zone="Asia/Tokyo",
    )
    # Read by the bell's GET when it leads (saved before the page opened: no frame).
    bell = watching_bell(new_context(timezone_id="America/New_York"), user.username)
    assert bell_state(bell)["preferences"]["quiet_hours"]["time_zone"] == "Asia/Tokyo"
    assert bell.page.evaluate(
        "(q) => window.__nbell.quietHoursActive(q, new Date())",
        bell_state(bell)["preferences"]["quiet_hours"],
    )

    hushed = notify(user, "Weekly numbers", level="info")
    delivered(user, hushed)
    expect(bell.item(hushed.pk)).to_have_count(1)
    bell.expect_unread(1)
    urgent = notify(user, "Someone signed in from a new device", level="warning", critical=True)
    expect(bell.toast(urgent.pk)).to_be_visible()
    assert bell.toast(hushed.pk).count() == 0  # now, not after a toast's time ran out
    assert bell_state(bell)["toasted"] == [urgent.pk]
    assert bell_state(bell)["silenced"] == [hushed.pk]
    bell.expect_unread(2)


def test_quiet_hours_in_chromium_start_on_the_listed_days_and_end_at_the_next_end(new_context):
    """The bell's pure function with Chromium's own Intl (the zone data the user has)."""
    context = new_context()
    context.add_init_script(HOOKS)
    page = log_in(context, UserFactory().username)
    Bell(page).wait_ready()
    cases = page.evaluate(
        """() => {
            const q = (o) => Object.assign({enabled: true, start: "22:00", end: "07:00",
                days: [0, 1, 2, 3, 4], time_zone: "Europe/Berlin"}, o);
            const on = (o, iso) => window.__nbell.quietHoursActive(q(o), new Date(iso));
            const day = {start: "09:00", end: "09:00", days: [2]};
            // 2026-12-07 is a Monday; Berlin is UTC+1 in December.
            return {
                mondayEvening: on({}, "2026-12-07T21:30:00Z"),
                mondayBefore: on({}, "2026-12-07T20:59:00Z"),
                tuesdayMorning: on({}, "2026-12-08T05:59:00Z"),
                tuesdayAtEnd: on({}, "2026-12-08T06:00:00Z"),
                saturdayMorning: on({}, "2026-12-12T05:00:00Z"),
                saturdayEvening: on({}, "2026-12-12T21:30:00Z"),
                mondayMorning: on({}, "2026-12-07T05:00:00Z"),
                wholeWednesday: on(day, "2026-12-09T22:59:00Z"),
                notThursday: on(day, "2026-12-09T23:00:00Z"),
                off: on({enabled: false}, "2026-12-07T21:30:00Z"),
                summerTime: on({start: "09:00", end: "17:00", days: [0]}, "2026-07-06T07:30:00Z"),
                unknownZone: (() => { try { on({time_zone: "Nowhere/Land"}); return "no error"; }
                                      catch (e) { return e.name; } })(),
            };
        }"""
    )
    assert cases == {
        "mondayEvening": True,
        "mondayBefore": False,
        "tuesdayMorning": True,
        "tuesdayAtEnd": False,
        "saturdayMorning": True,  # Friday's period
        "saturdayEvening": False,
        "mondayMorning": False,  # Sunday is not listed
        "wholeWednesday": True,
        "notThursday": False,
        "off": False,
        "summerTime": True,  # 09:30 Berlin summer time
        "unknownZone": "RangeError",  # the bell then takes the server's "active"
    }


def test_a_category_muted_on_the_page_never_reaches_the_open_bell(new_context):
    user = UserFactory()
    bell = watching_bell(new_context(), user.username)
    page = settings_page(new_context(), user.username)

    switch(page, "Mentions", "Show in bell").click()
    saved(page)
    # The frame that tells the bell is the event that tells its socket to drop mentions.
    bell.page.wait_for_function(
        "() => window.__nbell.state().preferences.categories.mentions.bell === false"
    )
    muted = notify(user, "Ana mentioned you", category="mentions")
    shown = notify(user, "Deploy finished", category="general")
    expect(bell.item(shown.pk)).to_have_count(1)
    expect(bell.toast(shown.pk)).to_be_visible()
    bell.expect_unread(1)
    assert not Delivery.objects.filter(user=user, notification=muted).exists()
    assert muted.pk not in bell_state(bell)["ids"]
    # Not after a sync either: a reload lists what the server holds for the user.
    bell.page.reload()
    Bell(bell.page).wait_ready().expect_unread(1)
    assert muted.pk not in bell_state(Bell(bell.page))["ids"]

    # Critical ones come through a mute.
    urgent = notify(user, "Ana mentioned you urgently", category="mentions", critical=True)
    expect(Bell(bell.page).item(urgent.pk)).to_have_count(1)


def test_the_page_without_javascript_saves_by_posting_the_form(new_context):
    user = UserFactory()
    page = settings_page(new_context(java_script_enabled=False), user.username)
    save = page.get_by_role("button", name="Save")
    expect(save).to_be_visible()

    switch(page, "Mentions", "Toasts and pop-ups").uncheck()
    switch(page, "Weekly digest", "Show in bell").check()
    page.get_by_role("switch", name="Quiet hours on").check()
    page.get_by_label("From", exact=True).fill("21:00")
    page.get_by_label("To", exact=True).fill("06:30")
    page.get_by_role("checkbox", name="Sunday").uncheck()
    save.click()
    page.wait_for_url(f"**{page_url()}")
    expect(page.get_by_text("Your notification settings are saved.")).to_be_visible()
    expect(switch(page, "Mentions", "Toasts and pop-ups")).not_to_be_checked()
    expect(switch(page, "Weekly digest", "Show in bell")).to_be_checked()
    expect(page.get_by_label("From", exact=True)).to_have_value("21:00")

    prefs = preferences_read(user)
    assert prefs["categories"]["mentions"]["toasts"] is False
    assert prefs["categories"]["digest"]["bell"] is True
    assert prefs["categories"]["security"]["bell"] is True
    quiet = prefs["quiet_hours"]
    assert (quiet["enabled"], quiet["start"], quiet["end"]) == (True, "21:00", "06:30")
    assert quiet["days"] == [0, 1, 2, 3, 4, 5]

    # A refused change is said on the page, and what was typed stays.
    page.get_by_label("To", exact=True).fill("")
    page.get_by_role("switch", name="Quiet hours on").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("HH:MM")
    expect(page.get_by_label("From", exact=True)).to_have_value("21:00")
    assert preferences_read(user)["quiet_hours"]["end"] == "06:30"


def test_a_refused_change_with_javascript_says_why_and_shows_what_is_saved(new_context):
    user = UserFactory()
    page = settings_page(new_context(), user.username)
    # The server says no (as for a session that ran out): the switch goes back.
    page.route(
        "**/notifications/api/preferences/",
        lambda route: (
            route.fulfill(
                status=400,
                content_type="application/json",
                body='{"error": "invalid", "detail": "Mentions cannot be changed right now."}',
            )
            if route.request.method == "PUT"
            else route.continue_()
        ),
    )
    toggle = switch(page, "Mentions", "Toasts and pop-ups")
    toggle.click()
    expect(page.locator("[data-nprefs-status]")).to_have_text(
        "Mentions cannot be changed right now."
    )
    expect(toggle).to_be_checked()
    assert preferences_read(user)["categories"]["mentions"]["toasts"] is True


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_page_in_both_schemes_passes_axe(new_context, scheme):
    user = UserFactory()
    preferences_write(
        user,
        {
            "categories": {"digest": {"bell": True}, "mentions": {"toasts": False}},
            "quiet_hours": {"enabled": True, "days": [0, 1, 2, 3, 4]},
        },
        zone="Europe/Berlin",
    )
    context = new_context(color_scheme=scheme, timezone_id="Europe/Berlin")
    page = settings_page(context, user.username)
    switch(page, "General", "Toasts and pop-ups").focus()  # a focus ring in the picture
    assert_accessible(page)
    background = page.locator(".nprefs").evaluate("el => getComputedStyle(el).backgroundColor")
    assert (
        (background == "rgb(13, 17, 23)")
        if scheme == "dark"
        else (background == "rgb(255, 255, 255)")
    )
    screenshot(page, f"preferences-{scheme}.png", full_page=True, animations="disabled")
    # After a save, the status line too.
    switch(page, "General", "Toasts and pop-ups").click()
    saved(page)
    assert_accessible(page)


def test_the_page_at_phone_width_fits_without_sideways_scrolling(new_context):
    user = UserFactory()
    context = new_context(
        viewport={"width": 375, "height": 812},
        is_mobile=True,
        has_touch=True,
        timezone_id="Europe/Berlin",
    )
    page = settings_page(context, user.username)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    for name in ("Show in bell", "Toasts and pop-ups"):
        box = switch(page, "Mentions", name).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375
    sunday = page.locator(".nprefs-day").last.bounding_box()
    assert sunday and sunday["x"] + sunday["width"] <= 375
    screenshot(page, "preferences-phone.png", full_page=True, animations="disabled")
    switch(page, "Mentions", "Toasts and pop-ups").tap()
    saved(page)
    status = page.locator("[data-nprefs-status]").bounding_box()
    assert status and status["x"] >= 0 and status["x"] + status["width"] <= 375
    assert_accessible(page)
