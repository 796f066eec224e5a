"""validate_notification_url: only relative paths and http(s) URLs may become links."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from notifications.validators import validate_notification_url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "/",
        "/posts/1/",
        "/posts/1/?page=2&sort=new#comment-3",
        "/caf%C3%A9/",
        "http://example.com",
        "https://example.com/posts/1/",
        "HTTPS://EXAMPLE.COM/Path",
        "https://example.com:8443/a?b=c",
    ],
)
def test_accepts_relative_paths_and_http_urls(url: str) -> None:
    assert validate_notification_url(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "ftp://example.com/",
        "mailto:someone@example.com",
        "//evil.com",
        "//evil.com/posts/1/",
        "/\\evil.com",
        "\\\\evil.com",
        "https:evil.com",
        "https:/evil.com",
        "http://",
        "posts/1/",
        "example.com/posts/1/",
    ],
)
def test_rejects_dangerous_or_ambiguous_links(url: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate_notification_url(url)
    assert excinfo.value.code == "invalid_url"


@pytest.mark.parametrize(
    "url",
    [
        " javascript:alert(1)",
        "\tjavascript:alert(1)",
        "\njavascript:alert(1)",
        "\x00javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "\x01//evil.com",
        " //evil.com",
        " /\\evil.com",
        " /posts/1/",
        "/posts/\r\n1/",
        "/posts/\x7f1/",
        "/posts/a b/",
        "https://exa mple.com/",
        "https://example.com/a b",
        "\u00a0https://example.com/",
    ],
)
def test_rejects_whitespace_and_control_characters(url: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate_notification_url(url)
    assert excinfo.value.code == "invalid_url"


# Regression: the space check once looked at value.strip(), so " https://…" and trailing
# spaces slipped through (urlsplit strips them) and were stored in the link.
@pytest.mark.parametrize(
    "url",
    [" https://example.com/", "https://example.com/ ", "/posts/1/ ", "https://example.com/\u2028"],
)
def test_rejects_surrounding_whitespace(url: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate_notification_url(url)
    assert excinfo.value.code == "invalid_url"
