"""``{% notification_bell %}``: the bell, server-rendered, that bell.js brings to life."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from notifications.selectors import unread_count

register = template.Library()


@register.inclusion_tag("notifications/bell.html", takes_context=True)
def notification_bell(context: dict[str, Any]) -> dict[str, Any]:
    """Render the bell for the logged-in user (nothing for anonymous visitors)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"show": False}
    count = unread_count(user)
    return {
        "show": True,
        "unread": count,
        "badge": "99+" if count > 99 else str(count),
        "inbox_url": reverse("notifications:inbox"),
        "api_url": reverse("notifications:api-list"),
        "read_url": reverse("notifications:api-read"),
        "ws_path": "/ws/notifications/",
    }
