"""The JSON API under /notifications/api/: thin views over selectors and services.

Every answer is JSON, errors included (``{"error": code, "detail": text}``): a script that
asks without a session gets 401, not the login page; without the CSRF token 403, not
Django's CSRF page; a wrong method 405, a bad body 400, an unknown path 404.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from notifications import conf
from notifications.dispatch import push_read, push_triage
from notifications.events import (
    ClientFrame,
    FrameError,
    UserId,
    parse_client_frame,
    parse_snooze_until,
)
from notifications.models import Level
from notifications.observe import emit
from notifications.preferences import PreferencesError, preferences_read, preferences_write
from notifications.selectors import STATUSES, group_page, notification_page
from notifications.services import (
    ReadResult,
    TriageResult,
    deliveries_archive,
    deliveries_mark_all_read,
    deliveries_mark_read,
    deliveries_mark_unread,
    deliveries_snooze,
    deliveries_unarchive,
)

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 20
# Notification.group_key's max_length: a longer one names no group.
GROUP_KEY_MAX = 200


def api_error(status: int, error: str, detail: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": error, "detail": detail}, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def _bad_request(detail: str) -> JsonResponse:
    return api_error(400, "bad_request", detail)


class _JsonCsrf(CsrfViewMiddleware):
    """Django's own CSRF check (token, Origin, Referer, trusted origins), answered in JSON."""

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponse:
        return api_error(403, "csrf_failed", f"CSRF verification failed: {reason}")


_csrf = _JsonCsrf(lambda request: HttpResponse())


def api_view(*methods: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Wrap an API view: login (401), method (405), CSRF on writes (403), database down (503)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt  # checked below, so the failure is JSON rather than Django's page
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return api_error(
                    405,
                    "method_not_allowed",
                    f"Use {' or '.join(methods)}.",
                    Allow=", ".join(methods),
                )
            if not request.user.is_authenticated:
                return api_error(401, "not_authenticated", "Log in first.")
            if request.method not in ("GET", "HEAD"):
                rejected = _csrf.process_view(request, view, args, kwargs)
                if rejected is not None:
                    return rejected
            try:
                return view(request, *args, **kwargs)
            except DatabaseError as exc:
                logger.warning("API %s failed: database unavailable (%s)", request.path, exc)
                return api_error(503, "unavailable", "The database is unavailable; try again.")

        return wrapper

    return decorate


def _int_param(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name)
    if raw in (None, ""):
        return None
    value = int(raw)
    if not 0 < value < 2**63:  # ids are BigAutoField: anything past it is no id at all
        raise ValueError(name)
    return value


def status_param(request: HttpRequest) -> str | None:
    """Return the view asked for: ``status=unread|archived|snoozed`` (or the old aliases
    ``unread=1`` and the inbox's ``filter=unread``); None is the inbox. ValueError if bad."""
    status = request.GET.get("status") or None
    if status is None and (
        request.GET.get("unread") in {"1", "true"} or request.GET.get("filter") == "unread"
    ):
        status = "unread"
    if status is not None and status not in STATUSES:
        raise ValueError(status)
    return status


@api_view("GET")
def api_list(request: HttpRequest) -> HttpResponse:
    """GET /notifications/api/?status=…&level=…&before=<id>&limit=<n> — one page of a view,
    one entry per group item; with ``group=<key>&bucket_of=<id>`` the rows of one item."""
    try:
        before = _int_param(request, "before")
        limit = _int_param(request, "limit") or DEFAULT_PAGE_SIZE
    except ValueError:
        return _bad_request("before and limit must be positive integers.")
    try:
        status = status_param(request)
    except ValueError:
        return _bad_request(f"status must be one of {', '.join(STATUSES)}.")
    level = request.GET.get("level") or None
    if level is not None and level not in Level.values:
        return _bad_request(f"level must be one of {', '.join(Level.values)}.")
    if "group" in request.GET or "bucket_of" in request.GET:
        return _group_list(request, status=status, level=level, before=before, limit=limit)
    page = notification_page(request.user, status=status, level=level, before=before, limit=limit)
    return JsonResponse(asdict(page))


def _group_list(request: HttpRequest, **view: Any) -> HttpResponse:
    """``?group=<key>&bucket_of=<id>``: one group item's rows, newest first, not collapsed.

    ``bucket_of`` names the user's row whose bucket makes the item (without it: the unread
    rows of the key, in the default and unread views). A ``bucket_of`` not the user's gives
    an empty page, as an id not the user's does everywhere.
    """
    key = (request.GET.get("group") or "").strip()
    if not key or len(key) > GROUP_KEY_MAX:
        return _bad_request(f"group must be a group key of 1 to {GROUP_KEY_MAX} characters.")
    try:
        bucket_of = _int_param(request, "bucket_of")
    except ValueError:
        return _bad_request("bucket_of must be a notification id.")
    try:
        page = group_page(request.user, key, bucket_of=bucket_of, **view)
    except ValueError as exc:
        return _bad_request(f"{exc}.")
    return JsonResponse(asdict(page))


def _json_body(request: HttpRequest) -> dict[str, Any]:
    """Return the request's JSON object, or raise ValueError saying what is wrong."""
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, RecursionError) as exc:
        raise ValueError("The body must be JSON.") from exc
    if not isinstance(data, dict):
        raise ValueError("The body must be a JSON object.")
    return data


def _id_frame(data: dict[str, Any]) -> ClientFrame:
    """The body's ``ids`` and ``group`` flag, validated as a socket frame's are (FrameError
    if bad)."""
    return parse_client_frame(
        json.dumps({"type": "read", "ids": data.get("ids"), "group": data.get("group")}),
        max_ids=conf.get().MAX_IDS,
    )


@api_view("POST")
def api_read(request: HttpRequest) -> HttpResponse:
    """POST /notifications/api/read/ with {"ids": [...]} or {"all": true} → {"unread": N}.

    ``"group": true`` reads each id's whole group item.
    """
    try:
        data = _json_body(request)
        if data.get("all") is True:
            result = deliveries_mark_all_read(request.user)
        else:
            frame = _id_frame(data)
            result = deliveries_mark_read(request.user, frame.ids, group=frame.group)
    except FrameError as exc:
        return _bad_request(exc.detail)
    except ValueError as exc:
        return _bad_request(str(exc))
    tell_other_tabs(request.user.pk, result)
    return JsonResponse({"unread": result.unread})


def _triage_view(verb: Callable[..., TriageResult]) -> Callable[..., Any]:
    @api_view("POST")
    def view(request: HttpRequest) -> HttpResponse:
        try:
            frame = _id_frame(_json_body(request))
            result = verb(request.user, frame.ids, group=frame.group)
        except FrameError as exc:
            return _bad_request(exc.detail)
        except ValueError as exc:
            return _bad_request(str(exc))
        tell_other_tabs(request.user.pk, result)
        return JsonResponse({"ids": result.ids, "unread": result.unread})

    view.__doc__ = verb.__doc__
    return view


api_archive = _triage_view(deliveries_archive)
api_unarchive = _triage_view(deliveries_unarchive)
api_unread = _triage_view(deliveries_mark_unread)


@api_view("POST")
def api_snooze(request: HttpRequest) -> HttpResponse:
    """POST /notifications/api/snooze/ {"ids": [...], "until": iso} → ids, unread, until.

    ``"group": true`` snoozes each id's whole group item (as every triage verb takes it).

    A time without an offset is in the user's zone (the ``tz`` cookie, activated by
    TimezoneMiddleware).
    """
    try:
        data = _json_body(request)
        frame = _id_frame(data)
        until = parse_snooze_until(data.get("until"))
    except FrameError as exc:
        return _bad_request(exc.detail)
    except ValueError as exc:
        return _bad_request(str(exc))
    result = deliveries_snooze(request.user, frame.ids, until, group=frame.group)
    tell_other_tabs(request.user.pk, result)
    return JsonResponse({"ids": result.ids, "unread": result.unread, "until": until.isoformat()})


def api_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under api/: a JSON 404, not the site's HTML page."""
    return api_error(404, "not_found", f"No API endpoint at {request.path}.")


def tell_other_tabs(user_id: UserId, result: ReadResult | TriageResult) -> None:
    """Push a read or a triage change to every socket of the user; best effort.

    At most ``deadlines.PUSH_SECONDS``: a silent Redis must not hold up the answer. The
    change is recorded either way; open tabs catch up at their next pong.
    """
    if not result.ids:
        return
    if isinstance(result, TriageResult):
        extra = {"until": result.until} if result.until else {}
        emit(result.kind, user=str(user_id), ids=result.ids, **extra)
    else:
        emit("read", user=str(user_id), ids=result.ids)
    try:
        if isinstance(result, TriageResult):
            push_triage(user_id, result)
        else:
            push_read(user_id, result)
    except Exception as exc:
        logger.warning("Could not push a change to user %s's sockets (%r)", user_id, exc)


@api_view("GET", "PUT")
def api_preferences(request: HttpRequest) -> HttpResponse:
    """GET|PUT /notifications/api/preferences/ — categories (bell, toasts) and quiet hours.

    A PUT may send any part; it applies at once to every open tab of the user (a
    ``preferences`` frame). Times are in the user's zone (the bell's ``tz`` cookie).
    """
    if request.method == "GET":
        return JsonResponse(preferences_read(request.user))
    try:
        data = _json_body(request)
    except ValueError as exc:
        return _bad_request(str(exc))
    try:
        shown = preferences_write(request.user, data, zone=timezone.get_current_timezone_name())
    except PreferencesError as exc:
        return api_error(400, "invalid", str(exc))
    return JsonResponse(shown)
