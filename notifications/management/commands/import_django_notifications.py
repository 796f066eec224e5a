"""``manage.py import_django_notifications``: bring a django-notifications site's history over.

Examples::

    python manage.py import_django_notifications --dry-run
    python manage.py import_django_notifications
    python manage.py import_django_notifications --table myapp_notification --batch-size 5000

Safe to run again: rows imported before are skipped (see notifications.importer).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from notifications.importer import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_TABLE,
    ImportStats,
    SourceTableError,
    import_notifications,
)


class Command(BaseCommand):
    help = (
        "Import django-notifications(-hq/-community) rows from their table, left in place, as "
        "notifications with their read state. Soft-deleted rows and rows whose recipient is "
        "gone or inactive are skipped and counted. Idempotent: a second run imports nothing twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--table",
            default=DEFAULT_TABLE,
            help=f"Their table (default {DEFAULT_TABLE}; another one if "
            "NOTIFICATIONS_NOTIFICATION_MODEL swapped the model).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Rows per transaction (default {DEFAULT_BATCH_SIZE:,}).",
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: default)."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be imported; write nothing."
        )
        parser.add_argument(
            "--include-inactive",
            action="store_true",
            help="Also import the notifications of inactive users (skipped by default).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        dry_run = bool(options["dry_run"])
        verbose = int(options["verbosity"]) >= 1

        def progress(stats: ImportStats) -> None:
            if verbose:
                self.stdout.write(stats.line(dry_run=dry_run))

        try:
            stats = import_notifications(
                table=options["table"],
                batch_size=options["batch_size"],
                using=options["database"],
                dry_run=dry_run,
                include_inactive=bool(options["include_inactive"]),
                progress=progress,
            )
        except SourceTableError as exc:
            raise CommandError(str(exc)) from exc
        if verbose:
            prefix = "Dry run, nothing written: " if dry_run else "Done: "
            self.stdout.write(self.style.SUCCESS(prefix + stats.line(dry_run=dry_run) + "."))
