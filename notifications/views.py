"""Thin HTTP views: parse the request, call one selector or service, render."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from notifications import conf
from notifications.dispatch import push_read
from notifications.events import FrameError, UserId, parse_client_frame, safe_link
from notifications.models import Delivery, DeliveryState, Level
from notifications.selectors import inbox_page, notification_page
from notifications.services import ReadResult, deliveries_mark_all_read, deliveries_mark_read

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 20


def _int_param(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name)
    if raw in (None, ""):
        return None
    value = int(raw)
    if not 0 < value < 2**63:  # ids are BigAutoField: anything past it is no id at all
        raise ValueError(name)
    return value


def _bad_request(detail: str) -> JsonResponse:
    return JsonResponse({"error": "bad_request", "detail": detail}, status=400)


@login_required
@require_GET
def api_list(request: HttpRequest) -> JsonResponse:
    """GET /notifications/api/?unread=1&before=<id>&limit=<n> — the user's notifications."""
    try:
        before = _int_param(request, "before")
        limit = _int_param(request, "limit") or DEFAULT_PAGE_SIZE
    except ValueError:
        return _bad_request("before and limit must be positive integers.")
    page = notification_page(
        request.user,
        unread_only=request.GET.get("unread") in {"1", "true"},
        before=before,
        limit=limit,
    )
    return JsonResponse(asdict(page))


@login_required
@require_POST
def api_read(request: HttpRequest) -> JsonResponse:
    """POST /notifications/api/read/ with {"ids": [...]} or {"all": true} → {"unread": N}."""
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        return _bad_request("The body must be JSON.")
    if not isinstance(data, dict):
        return _bad_request("The body must be a JSON object.")
    if data.get("all") is True:
        result = deliveries_mark_all_read(request.user)
    else:
        try:
            frame = parse_client_frame(
                json.dumps({"type": "read", "ids": data.get("ids")}), max_ids=conf.get().MAX_IDS
            )
        except FrameError as exc:
            return _bad_request(exc.detail)
        result = deliveries_mark_read(request.user, frame.ids)
    _tell_other_tabs(request.user.pk, result)
    return JsonResponse({"unread": result.unread})


def _tell_other_tabs(user_id: UserId, result: ReadResult) -> None:
    try:
        # At most deadlines.PUSH_SECONDS: a silent Redis must not hold up the answer.
        push_read(user_id, result)
    except Exception as exc:
        # The read is recorded; open tabs catch up at their next pong (its unread count).
        logger.warning("Could not push a read to user %s's sockets (%r)", user_id, exc)


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
        _tell_other_tabs(request.user.pk, result)
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
