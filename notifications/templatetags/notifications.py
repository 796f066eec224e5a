"""``{% notification_bell %}``: the bell, server-rendered, that bell.js brings to life."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.crypto import salted_hmac
from django.utils.http import urlencode
from django.utils.translation import gettext

from notifications import conf
from notifications.models import Level
from notifications.selectors import unread_count

register = template.Library()

# The badge shows at most two digits; the exact number stays in data-unread-count.
BADGE_MAX = 99


def badge_text(count: int) -> str:
    """Return what the badge shows for ``count`` unread notifications."""
    return f"{BADGE_MAX}+" if count > BADGE_MAX else str(count)


def script_strings() -> dict[str, Any]:
    """Return the translated strings bell.js shows, for the page's json_script."""
    return {
        "notifications": gettext("Notifications"),
        # %(count)s is replaced by the script.
        "notificationsUnread": gettext("Notifications (%(count)s unread)"),
        "newNotification": gettext("New notification: %(title)s"),
        "newNotifications": gettext("New notifications: %(count)s"),
        "moreNotifications": gettext("And %(count)s more in the inbox"),
        "burstNotifications": gettext("%(count)s new notifications"),
        # A grouped row of the bell: its size, and who (up to three names, newest first;
        # %(count)s others is always 2 or more).
        "groupNotifications": gettext("%(count)s notifications"),
        "groupTwo": gettext("%(first)s and %(second)s"),
        "groupThree": gettext("%(first)s, %(second)s and %(third)s"),
        "groupOneOther": gettext("%(first)s and one other"),
        "groupOthers": gettext("%(first)s and %(count)s others"),
        "groupTwoOneOther": gettext("%(first)s, %(second)s and one other"),
        "groupTwoOthers": gettext("%(first)s, %(second)s and %(count)s others"),
        "justNow": gettext("just now"),
        "unread": gettext("Unread"),
        "dismiss": gettext("Dismiss"),
        "connecting": gettext("Connecting…"),
        "reconnecting": gettext("Reconnecting… new notifications will appear when it is back."),
        "offline": gettext("Live updates are paused."),
        "retryNow": gettext("Retry now"),
        "readFailed": gettext("Could not mark it as read. Please try again."),
        "desktopEnable": gettext("Enable desktop notifications"),
        "desktopDisable": gettext("Turn off desktop notifications"),
        "desktopBlocked": gettext("Desktop notifications are blocked in your browser settings."),
        "actionsFor": gettext("Actions for %(title)s"),
        "archive": gettext("Done"),
        "snooze": gettext("Snooze"),
        "markRead": gettext("Mark as read"),
        "markUnread": gettext("Mark as unread"),
        "snoozeUntil": gettext("Snooze until"),
        "snoozeLater": gettext("Later today"),
        "snoozeTomorrow": gettext("Tomorrow"),
        "snoozeWeek": gettext("Next week"),
        "snoozePick": gettext("Pick a time…"),
        "snoozeSubmit": gettext("Snooze"),
        "snoozeFuture": gettext("Pick a time in the future."),
        "triageFailed": gettext("Could not change it. Please try again."),
        "levels": {str(value): str(label) for value, label in Level.choices},
    }


def bell_key(user: Any) -> str:
    """Return an opaque per-user key naming the tabs' shared channel and leader lock.

    Two users of one browser (after a logout and a login) never share a channel, and the
    key gives away nothing about the user: an HMAC of the pk under the site's secret.
    """
    return salted_hmac("notifications.bell.channel", str(user.pk)).hexdigest()[:32]


@register.inclusion_tag("notifications/bell.html", takes_context=True)
def notification_bell(context: dict[str, Any]) -> dict[str, Any]:
    """Render the bell for the logged-in user (nothing for anonymous visitors)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"show": False}
    count = unread_count(user)
    next_query = urlencode({"next": request.get_full_path()})
    return {
        "show": True,
        "unread": count,
        "badge": badge_text(count),
        "inbox_url": reverse("notifications:inbox"),
        "api_url": reverse("notifications:api-list"),
        "read_url": reverse("notifications:api-read"),
        "login_url": f"{resolve_url(settings.LOGIN_URL)}?{next_query}",
        "ping_every_ms": int(conf.get().BELL_PING_INTERVAL * 1000),
        "max_sync": conf.get().MAX_SYNC,
        "ws_path": "/ws/notifications/",
        "bell_key": bell_key(user),
        "strings": script_strings(),
    }
