"""Thin HTTP views: parse the request, call one selector or service, render."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from notifications import conf
from notifications.api import DEFAULT_PAGE_SIZE, tell_other_tabs
from notifications.events import safe_link
from notifications.models import Delivery, DeliveryState, Level
from notifications.selectors import inbox_page
from notifications.services import deliveries_mark_all_read, deliveries_mark_read

logger = logging.getLogger(__name__)


def _positive_id(raw: str | None) -> int | None:
    # isdigit() alone lets "²" through; ids are BigAutoField values (below 2**63).
    if raw and raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**63:
        return int(raw)
    return None


@dataclass(frozen=True)
class InboxItem:
    """One row of the inbox page, ready to render."""

    id: int
    title: str
    body: str
    level: str
    level_label: str
    url: str
    created_at: datetime
    ago: str
    read: bool


def _ago(moment: datetime, now: datetime) -> str:
    if now - moment < timedelta(minutes=1):
        return gettext("just now")
    return gettext("%(time)s ago") % {"time": timesince(moment, now, depth=1)}


def _inbox_item(delivery: Delivery, now: datetime) -> InboxItem:
    notification = delivery.notification
    level = notification.level if notification.level in Level.values else Level.INFO
    return InboxItem(
        id=notification.pk,
        title=notification.title,
        body=notification.body,
        level=level,
        level_label=Level(level).label,
        url=safe_link(notification.url),
        created_at=notification.created_at,
        ago=_ago(notification.created_at, now),
        read=delivery.state == DeliveryState.READ,
    )


def _inbox_url(unread_only: bool, **cursor: int) -> str:
    query = {"filter": "unread"} if unread_only else {}
    query.update({name: str(value) for name, value in cursor.items()})
    return reverse("notifications:inbox") + (f"?{urlencode(query)}" if query else "")


@login_required
@require_http_methods(["GET", "POST"])
def inbox(request: HttpRequest) -> HttpResponse:
    """The inbox page: all or unread, newest first, paginated both ways; POST marks read."""
    unread_only = request.GET.get("filter") == "unread"
    if request.method == "POST":
        if request.POST.get("all"):
            result = deliveries_mark_all_read(request.user)
            target = _inbox_url(unread_only)
        else:
            ids = [n for n in map(_positive_id, request.POST.getlist("ids")) if n is not None]
            result = deliveries_mark_read(request.user, ids)
            target = request.get_full_path()
        tell_other_tabs(request.user.pk, result)
        return redirect(target)
    # A mangled cursor shows the newest page rather than an error.
    before = _positive_id(request.GET.get("before"))
    after = _positive_id(request.GET.get("after"))
    page = inbox_page(
        request.user,
        unread_only=unread_only,
        before=before,
        after=after,
        limit=DEFAULT_PAGE_SIZE,
    )
    now = timezone.now()
    return render(
        request,
        "notifications/inbox.html",
        {
            "base_template": conf.get().BASE_TEMPLATE,
            "page": page,
            "items": [_inbox_item(delivery, now) for delivery in page.deliveries],
            "unread_only": unread_only,
            "paged": before is not None or after is not None,
            "all_url": _inbox_url(False),
            "unread_url": _inbox_url(True),
            "newest_url": _inbox_url(unread_only),
            "older_url": _inbox_url(unread_only, before=page.older) if page.older else None,
            "newer_url": _inbox_url(unread_only, after=page.newer) if page.newer else None,
        },
    )
