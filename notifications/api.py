"""The JSON API under /notifications/api/: thin views over selectors and services."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from notifications import conf
from notifications.dispatch import push_read
from notifications.events import FrameError, UserId, parse_client_frame
from notifications.selectors import notification_page
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
    tell_other_tabs(request.user.pk, result)
    return JsonResponse({"unread": result.unread})


def tell_other_tabs(user_id: UserId, result: ReadResult) -> None:
    try:
        # At most deadlines.PUSH_SECONDS: a silent Redis must not hold up the answer.
        push_read(user_id, result)
    except Exception as exc:
        # The read is recorded; open tabs catch up at their next pong (its unread count).
        logger.warning("Could not push a read to user %s's sockets (%r)", user_id, exc)
