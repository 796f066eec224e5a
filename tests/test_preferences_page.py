"""The notification settings page (/notifications/preferences/) through Django's test client.

GET renders every declared category and the quiet hours; POST (the page without JavaScript)
saves through preferences_write and comes back with a message; a refused change is shown on
the page with what was posted; the bell's gear links here. The JavaScript side is in
tests/browser/test_preferences.py.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.http import QueryDict
from django.shortcuts import resolve_url
from django.test import Client, override_settings
from django.urls import reverse

from notifications.preferences import preferences_read, preferences_write
from notifications.preferences_page import posted_preferences
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def page_url() -> str:
    return reverse("notifications:preferences")


@pytest.fixture
def member(client):
    user = UserFactory()
    client.force_login(user)
    return user


def a_form(**overrides: object) -> dict[str, object]:
    """What the page posts with every box as the demo's defaults have it."""
    form: dict[str, object] = {
        "category-general-bell": "1",
        "category-general-toasts": "1",
        "category-mentions-bell": "1",
        "category-mentions-toasts": "1",
        "category-digest-toasts": "1",
        "category-security-toasts": "1",
        "quiet-start": "22:00",
        "quiet-end": "07:00",
        "quiet-days": ["0", "1", "2", "3", "4", "5", "6"],
    }
    for key, value in overrides.items():
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    return form


def switch(html: str, name: str) -> str:
    match = re.search(rf'<input type="checkbox" role="switch" name="{re.escape(name)}"[^>]*>', html)
    assert match, f"no switch {name}"
    return match.group(0)


def test_the_page_needs_a_login(client, db):
    for response in (client.get(page_url()), client.post(page_url(), a_form())):
        assert response.status_code == 302
        assert response["Location"].startswith(resolve_url(settings.LOGIN_URL) + "?next=")


def test_get_lists_every_category_with_its_switches_and_the_quiet_hours(client, member):
    response = client.get(page_url())
    assert response.status_code == 200
    html = response.content.decode()
    for label, description in (
        ("General", "Announcements and everything else."),
        ("Mentions", "Someone mentioned you or replied."),
        ("Weekly digest", "A summary of the week."),
        ("Security", "Sign-ins and account changes."),
    ):
        assert label in html and description in html
    assert "checked" in switch(html, "category-general-bell")
    assert "checked" not in switch(html, "category-digest-bell")  # off unless switched on
    security = switch(html, "category-security-bell")
    assert "disabled" in security and "checked" in security
    assert 'aria-describedby="nprefs-c-security-locked"' in security
    assert "cannot be muted" in html
    assert "checked" in switch(html, "category-mentions-toasts")
    assert 'name="quiet-start" value="22:00"' in html
    assert 'name="quiet-end" value="07:00"' in html
    assert html.count('name="quiet-days"') == 7
    assert "Times are in" in html
    assert f'data-api-url="{reverse("notifications:api-preferences")}"' in html
    assert 'id="nprefs-saved"' in html  # the saved state, for the script
    assert "csrfmiddlewaretoken" in html


def test_post_without_javascript_saves_and_comes_back_with_a_message(client, member):
    client.cookies["tz"] = "Asia/Tokyo"
    form = a_form(
        **{
            "category-mentions-toasts": None,  # unticked boxes are not posted
            "category-general-bell": None,
            "category-digest-bell": "1",
            "quiet-enabled": "1",
            "quiet-start": "21:30",
            "quiet-end": "06:45",
            "quiet-days": ["0", "1", "2", "3", "4"],
        }
    )
    response = client.post(page_url(), form)
    assert response.status_code == 302
    assert response["Location"] == page_url()

    saved = preferences_read(member)
    assert saved["categories"]["mentions"]["toasts"] is False
    assert saved["categories"]["mentions"]["bell"] is True
    assert saved["categories"]["general"]["bell"] is False
    assert saved["categories"]["digest"]["bell"] is True
    assert saved["categories"]["security"]["bell"] is True  # its disabled box never posts
    quiet = saved["quiet_hours"]
    assert (quiet["enabled"], quiet["start"], quiet["end"]) == (True, "21:30", "06:45")
    assert quiet["days"] == [0, 1, 2, 3, 4]
    assert quiet["time_zone"] == "Asia/Tokyo"  # the request's zone, from the bell's cookie

    html = client.get(page_url()).content.decode()
    assert "Your notification settings are saved." in html
    assert "checked" not in switch(html, "category-mentions-toasts")
    assert "checked" in switch(html, "quiet-enabled")
    assert "Times are in Asia/Tokyo." in html


def test_a_cleared_time_while_quiet_hours_are_off_keeps_the_saved_one(client, member):
    preferences_write(member, {"quiet_hours": {"start": "23:00"}})
    response = client.post(page_url(), a_form(**{"quiet-start": ""}))
    assert response.status_code == 302
    assert preferences_read(member)["quiet_hours"]["start"] == "23:00"


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"quiet-enabled": "1", "quiet-start": "25:00"}, "HH:MM"),
        ({"quiet-enabled": "1", "quiet-end": ""}, "HH:MM"),
        ({"quiet-days": ["1", "9"]}, "0-6"),
        ({"quiet-days": ["x"]}, "0-6"),
    ],
)
def test_a_refused_change_is_shown_on_the_page_with_what_was_posted(
    client, member, overrides, words
):
    before = preferences_read(member)
    form = a_form(**{"category-general-toasts": None, **overrides})
    response = client.post(page_url(), form)
    assert response.status_code == 200
    html = response.content.decode()
    error = re.search(r'<p class="nprefs-error" role="alert" data-nprefs-error>([^<]*)</p>', html)
    assert error and words in error.group(1)
    # What was posted stays on the form (the unticked toasts box stays unticked) …
    assert "checked" not in switch(html, "category-general-toasts")
    if overrides.get("quiet-start"):
        assert f'name="quiet-start" value="{overrides["quiet-start"]}"' in html
    # … and nothing was saved.
    assert preferences_read(member) == before


def test_the_form_post_needs_the_csrf_token(db):
    user = UserFactory()
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=user.username, password=PASSWORD)
    assert client.post(page_url(), a_form()).status_code == 403
    html = client.get(page_url()).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    response = client.post(page_url(), {**a_form(), "csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_other_methods_are_refused(client, member):
    assert client.put(page_url()).status_code == 405


def test_the_apps_own_plain_page_shows_the_saved_message(client, member):
    conf = {**settings.NOTIFICATIONS, "BASE_TEMPLATE": "notifications/base.html"}
    with override_settings(NOTIFICATIONS=conf):
        response = client.post(page_url(), a_form(), follow=True)
    html = response.content.decode()
    assert "Your notification settings are saved." in html
    assert 'class="ninbox-messages"' in html


def test_the_bell_has_a_gear_to_the_page(client, member):
    html = client.get("/").content.decode()
    gear = re.search(r"<a class=\"nbell-settings\"[^>]*>", html)
    assert gear, "no gear in the bell"
    assert f'href="{page_url()}"' in gear.group(0)
    assert 'aria-label="Notification settings"' in gear.group(0)
    assert "data-notification-preferences" in gear.group(0)
    assert f'data-preferences-url="{reverse("notifications:api-preferences")}"' in html


def test_posted_preferences_reads_unticked_boxes_as_off_and_leaves_unmutable_bells_out():
    current = {
        "categories": {
            "general": {"mutable": True},
            "security": {"mutable": False},
        },
        "quiet_hours": {},
    }
    post = QueryDict(mutable=True)
    post.update({"category-security-toasts": "1", "quiet-start": "22:00:00", "quiet-end": ""})
    post.setlist("quiet-days", ["0", "6", "x"])
    change = posted_preferences(post, current)
    assert change["categories"] == {
        "general": {"bell": False, "toasts": False},
        "security": {"toasts": True},
    }
    # Off: the cleared end is left out; a browser's seconds are cut; a bad day goes through.
    assert change["quiet_hours"] == {"enabled": False, "days": [0, 6, "x"], "start": "22:00"}
