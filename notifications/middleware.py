"""Activate the visitor's time zone, named by a cookie the bell script sets, for each request."""

from __future__ import annotations

import zoneinfo
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any
from urllib.parse import unquote

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

# The page's script stores Intl.DateTimeFormat().resolvedOptions().timeZone here.
TIMEZONE_COOKIE = "tz"
# IANA names are far shorter; anything longer is not worth looking up.
MAX_ZONE_LENGTH = 64


@cache
def _known_zones() -> frozenset[str]:
    # Only names from the tz database: ZoneInfo() itself would also try file paths.
    return frozenset(zoneinfo.available_timezones())


def zone_from_cookie(value: str | None) -> zoneinfo.ZoneInfo | None:
    """Return the time zone a cookie value names, or None when it names none we know."""
    if not value or len(value) > MAX_ZONE_LENGTH * 3:
        return None
    name = unquote(value).strip()
    if len(name) > MAX_ZONE_LENGTH or name not in _known_zones():
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class TimezoneMiddleware:
    """Render dates in the zone of the ``tz`` cookie; without a valid one, TIME_ZONE."""

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        self._activate(request)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        self._activate(request)
        try:
            return await self.get_response(request)  # type: ignore[misc]
        finally:
            timezone.deactivate()

    @staticmethod
    def _activate(request: HttpRequest) -> None:
        zone = zone_from_cookie(request.COOKIES.get(TIMEZONE_COOKIE))
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
