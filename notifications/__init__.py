"""Real-time notifications for Django: Redis pub/sub to a listener, Channels to the browser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from notifications.models import Notification

__all__ = ["broadcast", "notify"]


def notify(
    recipient: Any, title: str, body: str = "", level: str = "info", url: str = "", **extra: Any
) -> Notification:
    """Create a notification for one user; it is pushed once the transaction commits."""
    from notifications.services import notify as _notify

    return _notify(recipient, title, body=body, level=level, url=url, **extra)


def broadcast(
    title: str,
    body: str = "",
    level: str = "info",
    url: str = "",
    audience: str = "all",
    group: Any = None,
    **extra: Any,
) -> Notification:
    """Create a notification for everyone, all staff, or one group's members."""
    from notifications.services import broadcast as _broadcast

    return _broadcast(
        title, body=body, level=level, url=url, audience=audience, group=group, **extra
    )
