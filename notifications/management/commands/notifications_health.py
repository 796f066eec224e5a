"""Report the pipeline's health; exit 1 when unhealthy (for systemd, Kubernetes, cron)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from notifications.asyncdb import limit_pool_checkout
from notifications.health import health_report

# Seconds the command waits for a pooled database connection before reporting it down.
HEALTH_CHECKOUT_SECONDS = 3.0


class Command(BaseCommand):
    help = (
        "Check the database, Redis, listener heartbeats and the backlog of undispatched "
        "notifications. Exits 1 when anything is wrong."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--grace",
            type=float,
            default=None,
            help="Seconds a due notification may wait before it counts as "
            "stuck (default: two sweep intervals + 5 s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # A probe must answer within seconds: with the database down, a pooled checkout
        # would otherwise wait out the pool's 30 s before saying so.
        limit_pool_checkout(HEALTH_CHECKOUT_SECONDS)
        report = health_report(grace_seconds=options["grace"])
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(f"database:  {report.database}")
            self.stdout.write(f"redis:     {report.redis} ({report.redis_at})")
            self.stdout.write(f"listeners: {len(report.listeners)} alive")
            for beat in report.listeners:
                self.stdout.write(
                    f"  - {beat['host']} pid {beat['pid']}, last beat "
                    f"{beat['age_seconds']} s ago, {beat['dispatched']} dispatched"
                )
            self.stdout.write(f"backlog:   {report.backlog} due, {report.stuck} stuck")
            for problem in report.problems:
                self.stderr.write(f"UNHEALTHY: {problem}")
            if report.healthy:
                self.stdout.write(self.style.SUCCESS("healthy"))
        if not report.healthy:
            raise SystemExit(1)
