"""How far one notification got, for the admin: counts, shares and a timeline, in two queries.

Both queries are aggregates over the notification's Delivery rows, which the unique
(notification, user) index finds without touching anyone else's: one counts the states and
finds the last moment anything happened, the other counts, for each point of the timeline,
how many rows had been pushed, delivered and read by then. Neither returns rows to Python,
so a broadcast to 100,000 people costs two index range scans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Q
from django.utils import timezone

from notifications.models import Delivery, DeliveryState

# Points on the timeline: enough to show a curve's shape, few enough that every point keeps
# a readable label in the table that screen readers get.
TIMELINE_POINTS = 12
# The shortest span drawn: a notification read by everyone within the same second still
# gets a timeline that reads as "at once" rather than a division by zero.
MIN_TIMELINE_SPAN = timedelta(minutes=1)


@dataclass(frozen=True)
class NotificationStats:
    """Counts of one notification's deliveries; ``delivered`` includes the read ones."""

    recipients: int
    pending: int
    delivered: int
    read: int
    archived: int
    snoozed: int
    last_activity: datetime | None

    def percent(self, part: int) -> int:
        """Return ``part`` as a whole percentage of the recipients (0 without any)."""
        return round(100 * part / self.recipients) if self.recipients else 0

    def rows(self) -> list[dict[str, Any]]:
        """Return each count with its share, in the order the admin shows them."""
        return [
            {"key": key, "count": count, "percent": self.percent(count)}
            for key, count in (
                ("delivered", self.delivered),
                ("read", self.read),
                ("pending", self.pending),
                ("archived", self.archived),
                ("snoozed", self.snoozed),
            )
        ]


@dataclass(frozen=True)
class TimelinePoint:
    """Cumulative counts at one moment: rows written (pushed), delivered and read by then."""

    at: datetime
    pushed: int
    delivered: int
    read: int


@dataclass(frozen=True)
class Timeline:
    start: datetime
    end: datetime
    points: list[TimelinePoint]


def notification_stats(notification_id: int, *, now: datetime | None = None) -> NotificationStats:
    """Return the delivery counts of one notification in one aggregate query.

    Snoozed counts the rows still asleep at ``now``: one whose time has come is back in the
    bell even before the listener has pushed it again.
    """
    now = now or timezone.now()
    counts = Delivery.objects.filter(notification_id=notification_id).aggregate(
        recipients=Count("pk"),
        pending=Count("pk", filter=Q(state=DeliveryState.PENDING)),
        delivered=Count("pk", filter=~Q(state=DeliveryState.PENDING)),
        read=Count("pk", filter=Q(state=DeliveryState.READ)),
        archived=Count("pk", filter=Q(archived_at__isnull=False)),
        snoozed=Count("pk", filter=Q(snoozed_until__gt=now)),
        last_created=Max("created_at"),
        last_delivered=Max("delivered_at"),
        last_read=Max("read_at"),
    )
    moments = [counts.pop(k) for k in ("last_created", "last_delivered", "last_read")]
    present = [m for m in moments if m is not None]
    return NotificationStats(**counts, last_activity=max(present) if present else None)


def notification_timeline(
    notification_id: int,
    start: datetime,
    end: datetime | None,
    *,
    points: int = TIMELINE_POINTS,
) -> Timeline:
    """Return cumulative pushed/delivered/read counts at ``points`` moments from start to end.

    ``start`` is the dispatch time and ``end`` the last activity (``NotificationStats``).
    One query: a conditional count per point and series over the notification's rows. A
    read row always has ``delivered_at`` (a read implies a delivery), so delivered never
    falls below read.
    """
    end = max(end or start, start + MIN_TIMELINE_SPAN)
    step = (end - start) / points
    moments = [start + step * i for i in range(1, points + 1)]
    moments[-1] = end  # no rounding may leave the last row out
    aggregates: dict[str, Any] = {}
    for i, moment in enumerate(moments):
        aggregates[f"p{i}"] = Count("pk", filter=Q(created_at__lte=moment))
        aggregates[f"d{i}"] = Count("pk", filter=Q(delivered_at__lte=moment))
        aggregates[f"r{i}"] = Count("pk", filter=Q(read_at__lte=moment))
    counts = Delivery.objects.filter(notification_id=notification_id).aggregate(**aggregates)
    return Timeline(
        start=start,
        end=end,
        points=[
            TimelinePoint(
                at=moment, pushed=counts[f"p{i}"], delivered=counts[f"d{i}"], read=counts[f"r{i}"]
            )
            for i, moment in enumerate(moments)
        ],
    )
