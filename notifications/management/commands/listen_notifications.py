"""Run the notification listener: subscribe to Redis, persist deliveries, push to sockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from notifications import conf
from notifications.listener import NotificationListener

VERBOSITY_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}


class Command(BaseCommand):
    help = (
        "Listen for new notifications on Redis pub/sub, record their deliveries and push "
        "them to browsers. Runs until SIGINT/SIGTERM; -v 2 prints a line per event."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Dispatch every due, undispatched notification, then exit.",
        )

    def handle(self, *args: Any, once: bool = False, verbosity: int = 1, **options: Any) -> None:
        logging.getLogger("notifications").setLevel(VERBOSITY_LEVELS.get(verbosity, logging.DEBUG))
        if verbosity >= 1 and not once:
            settings = conf.get()
            self.stdout.write(
                f"Listening on channel {settings.CHANNEL!r}; sweeping every "
                f"{settings.SWEEP_INTERVAL:g} s. Ctrl-C to stop."
            )
        listener = NotificationListener(once=once)
        asyncio.run(listener.run())
        if verbosity >= 1:
            self.stdout.write(f"Dispatched {listener.dispatched_total} notification(s).")
