"""Real-time notifications for Django: Redis pub/sub to a listener, Channels to the browser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from notifications.models import Notification

__all__ = ["broadcast", "edit", "notify", "recall"]


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


def recall(notification: Notification, by: Any = None) -> bool:
    """Recall a notification: it leaves every open bell and inbox at once (kept for audit)."""
    from notifications.recalls import recall as _recall

    return _recall(notification, by=by)


def edit(notification: Notification, by: Any = None, **fields: Any) -> list[str]:
    """Edit a notification's title, body, url or level; open bells update it in place."""
    from notifications.recalls import edit as _edit

    return _edit(notification, by=by, **fields)
