"""Health of the pipeline for probes and supervisors: database, Redis, listeners, backlog."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import redis
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from notifications import conf, heartbeat, redis_clients
from notifications.models import Notification


@dataclass
class HealthReport:
    """What ``notifications_health`` prints; ``healthy`` decides its exit status."""

    database: str = "unknown"
    redis: str = "unknown"
    # Where Redis was looked for (a URL without its password, or the Sentinel master).
    redis_at: str = ""
    listeners: list[dict[str, Any]] = field(default_factory=list)
    backlog: int = 0
    stuck: int = 0
    oldest_stuck_seconds: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def check_database(report: HealthReport) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report.database = "ok"
    except Exception as exc:
        report.database = f"error: {exc}"
        report.problems.append("the database is unreachable")


def check_redis(report: HealthReport, client: redis.Redis) -> bool:
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        report.redis = f"error: {exc}"
        report.problems.append("Redis is unreachable")
        return False
    report.redis = "ok"
    return True


def check_listeners(report: HealthReport, client: redis.Redis, max_age: float) -> None:
    now = time.time()
    beats = [beat for beat in heartbeat.read_all(client) if now - beat.get("at", 0) <= max_age]
    report.listeners = [
        {
            "host": beat.get("host"),
            "pid": beat.get("pid"),
            "age_seconds": round(now - beat["at"], 1),
            "dispatched": beat.get("dispatched"),
        }
        for beat in beats
    ]
    if not beats:
        report.problems.append(f"no listener has written a heartbeat in the last {max_age:g} s")


def check_backlog(report: HealthReport, grace_seconds: float) -> None:
    """Count due, undispatched notifications, and those due for longer than the grace."""
    now = timezone.now()
    due = Notification.objects.due(now)
    cutoff = now - timedelta(seconds=grace_seconds)
    stuck = due.filter(Q(publish_at__lt=cutoff) | Q(publish_at__isnull=True, created_at__lt=cutoff))
    report.backlog = due.count()
    report.stuck = stuck.count()
    oldest = stuck.order_by("created_at").values_list("created_at", "publish_at").first()
    if oldest:
        since = max(value for value in oldest if value is not None)
        report.oldest_stuck_seconds = round((now - since).total_seconds(), 1)
        report.problems.append(
            f"{report.stuck} notification(s) due for more than {grace_seconds:g} s "
            "are not dispatched"
        )


def health_report(*, grace_seconds: float | None = None) -> HealthReport:
    """Check everything; a stuck notification is one due for over two sweep intervals."""
    settings = conf.get()
    report = HealthReport()
    check_database(report)
    report.redis_at = redis_clients.describe(settings)
    # Under Sentinel this is the current master: the report follows a failover.
    client = redis_clients.sync_client(socket_timeout=2, socket_connect_timeout=2)
    try:
        if check_redis(report, client):
            check_listeners(report, client, settings.HEARTBEAT_MAX_AGE)
    finally:
        redis_clients.close(client)
    if report.database == "ok":
        check_backlog(
            report, grace_seconds if grace_seconds is not None else 2 * settings.SWEEP_INTERVAL + 5
        )
    return report
