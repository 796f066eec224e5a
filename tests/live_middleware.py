"""Middleware for the test suite's live daphne only (tests/settings.py adds it).

Each transactional test empties the test database, and the next one recreates the content
types under new ids; the live daphne, a long-lived process, would keep the old ids in
ContentType's cache, and an admin save would write a history entry naming a content type
that no longer exists (a FOREIGN KEY failure). Production never empties its tables.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.contenttypes.models import ContentType
from django.http import HttpRequest, HttpResponse


class ForgetContentTypes:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ContentType.objects.clear_cache()
        return self.get_response(request)
