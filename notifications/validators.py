"""Validation of notification links: only relative paths and http(s) URLs may become links."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

MAX_URL_LENGTH = 500


def validate_notification_url(value: str) -> None:
    """Reject anything but ``/relative/paths`` and absolute http(s) URLs.

    ``javascript:``, ``data:``, protocol-relative ``//host`` and control characters are all
    refused: the bell turns this value into a link in every recipient's browser.
    """
    if not value:
        return
    if any(ord(ch) < 32 or ord(ch) == 127 or ch.isspace() for ch in value):
        raise ValidationError(
            _("The link may not contain spaces or control characters."), code="invalid_url"
        )
    if value.startswith("/"):
        if value.startswith("//") or value.startswith("/\\"):
            raise ValidationError(
                _("A relative link must start with a single “/”, e.g. /posts/1/."),
                code="invalid_url",
            )
        return
    parts = urlsplit(value)
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        raise ValidationError(
            _("Use a relative path such as /posts/1/ or an http(s):// address."),
            code="invalid_url",
        )
