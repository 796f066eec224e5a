"""The notification settings page: parse the form, call preferences_read/_write, render.

With JavaScript, preferences.js saves each change at once through the JSON API
(``PUT /notifications/api/preferences/``); without it, the same form posts here and comes back
with a message. Both go through ``notifications.preferences``, which validates and tells the
user's open sockets.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dates import WEEKDAYS, WEEKDAYS_ABBR
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from notifications import conf
from notifications.preferences import PreferencesError, preferences_read, preferences_write

# Form field names; the slug of a category is part of its two.
QUIET_ENABLED = "quiet-enabled"
QUIET_START = "quiet-start"
QUIET_END = "quiet-end"
QUIET_DAYS = "quiet-days"


def _bell_field(slug: str) -> str:
    return f"category-{slug}-bell"


def _toasts_field(slug: str) -> str:
    return f"category-{slug}-toasts"


def posted_preferences(post: Any, current: dict[str, Any]) -> dict[str, Any]:
    """Return the PUT-shaped change a posted form asks for (a checkbox left out is off).

    An unmutable category's "Show in bell" is a disabled box, which browsers never post: it
    is left out of the change rather than read as a mute. A day that is not a number goes
    through as it came, for preferences_write to refuse with its own message.
    """
    categories: dict[str, dict[str, bool]] = {}
    for slug, category in current["categories"].items():
        choice = {"toasts": _toasts_field(slug) in post}
        if category.get("mutable", True):
            choice["bell"] = _bell_field(slug) in post
        categories[slug] = choice
    enabled = QUIET_ENABLED in post
    quiet: dict[str, Any] = {
        "enabled": enabled,
        "days": [
            int(day) if day.isascii() and day.isdigit() else day for day in post.getlist(QUIET_DAYS)
        ],
    }
    for key, name in (("start", QUIET_START), ("end", QUIET_END)):
        value = post.get(name, "").strip()
        # A cleared time does not matter while quiet hours are off: keep the saved one.
        if value or enabled:
            quiet[key] = value[:5] if len(value) == 8 else value  # "22:00:00" from some browsers
    return {"categories": categories, "quiet_hours": quiet}


def _shown(current: dict[str, Any], change: dict[str, Any] | None) -> dict[str, Any]:
    """Return what the form shows: the saved preferences, or what was posted over them."""
    if change is None:
        return current
    categories = {
        slug: {**category, **change["categories"].get(slug, {})}
        for slug, category in current["categories"].items()
    }
    return {
        "categories": categories,
        "quiet_hours": {**current["quiet_hours"], **change["quiet_hours"]},
    }


def _api_url() -> str:
    # Without the API route (an older urls.py), the page still works as a plain form.
    try:
        return reverse("notifications:api-preferences")
    except NoReverseMatch:
        return ""


def _script_strings() -> dict[str, str]:
    """Return the words preferences.js shows, translated (passed with json_script)."""
    return {
        "saving": gettext("Saving…"),
        "saved": gettext("Saved"),
        "failed": gettext("Could not save. Check your connection and try again."),
        "needTime": gettext("Enter a time for the start and the end of quiet hours."),
        "zone": gettext("Times are in %(zone)s."),
    }


def _context(
    request: HttpRequest, shown: dict[str, Any], saved: dict[str, Any], error: str = ""
) -> dict[str, Any]:
    quiet = shown["quiet_hours"]
    days = set(quiet.get("days") or [])
    stored_zone = saved["quiet_hours"].get("time_zone") or timezone.get_current_timezone_name()
    current_zone = timezone.get_current_timezone_name()
    return {
        "base_template": conf.get().BASE_TEMPLATE,
        "categories": [
            {
                "slug": slug,
                "label": category.get("label") or slug,
                "description": category.get("description") or "",
                "mutable": category.get("mutable", True),
                "bell": bool(category.get("bell", True)) or not category.get("mutable", True),
                "toasts": bool(category.get("toasts", True)),
                "bell_field": _bell_field(slug),
                "toasts_field": _toasts_field(slug),
            }
            for slug, category in shown["categories"].items()
        ],
        "quiet": quiet,
        "days": [
            {
                "value": number,
                "name": WEEKDAYS[number],
                "abbr": WEEKDAYS_ABBR[number],
                "checked": number in days,
            }
            for number in range(7)
        ],
        "zone": stored_zone,
        # Each save takes the zone of the request (the bell's tz cookie): say so when the
        # browser is somewhere else now.
        "zone_changes_to": current_zone if current_zone != stored_zone else "",
        "error": error,
        "saved": saved,
        "api_url": _api_url(),
        "inbox_url": reverse("notifications:inbox"),
        "strings": _script_strings(),
        "fields": {
            "quiet_enabled": QUIET_ENABLED,
            "quiet_start": QUIET_START,
            "quiet_end": QUIET_END,
            "quiet_days": QUIET_DAYS,
        },
    }


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    """The settings page: categories (bell, toasts) and quiet hours; POST saves and comes back."""
    current = preferences_read(request.user)
    if request.method == "POST":
        change = posted_preferences(request.POST, current)
        try:
            preferences_write(request.user, change, zone=timezone.get_current_timezone_name())
        except PreferencesError as error:
            # Shown on the page with what was posted, so nothing typed is lost.
            return render(
                request,
                "notifications/preferences.html",
                _context(request, _shown(current, change), current, str(error)),
            )
        messages.success(
            request, gettext("Your notification settings are saved."), fail_silently=True
        )
        return redirect(reverse("notifications:preferences"))
    return render(request, "notifications/preferences.html", _context(request, current, current))
