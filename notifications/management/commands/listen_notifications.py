"""Run the notification listener: subscribe to Redis, persist deliveries, push to sockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from notifications import conf
from notifications.listener import NotificationListener

# -v 0 keeps warnings (Redis or the database lost): quiet is not blind. -v 1 adds the
# DEFAULT_LINES below, -v 2 every INFO line, -v 3 DEBUG.
VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
# The listener's INFO lines shown at the default verbosity: one per dispatch (id, audience,
# title, recipients, ms), snoozes coming back, and each (re)subscription. The rest of its
# INFO (batches, sweeps, broadcast timings) waits for -v 2.
DEFAULT_LINES = (
    "Dispatched notification ",
    "Notification %s had expired before dispatch",
    "Brought back ",
    "Subscribed to ",
)
# Where nothing configures the app's loggers (a host site without LOGGING for them), the
# command's lines still need a place to go.
FALLBACK_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class DefaultLines(logging.Filter):
    """Pass warnings and errors, and of the INFO records only the ``DEFAULT_LINES``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return isinstance(record.msg, str) and record.msg.startswith(DEFAULT_LINES)


class Command(BaseCommand):
    help = (
        "Listen for new notifications on Redis pub/sub, record their deliveries and push "
        "them to browsers. Runs until SIGINT/SIGTERM. Prints a line per dispatch; -v 2 adds "
        "sweeps and batches, -v 0 only warnings and errors. To watch the pipeline without "
        "dispatching, run watch_notifications instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Dispatch every due, undispatched notification, then exit.",
        )

    def handle(self, *args: Any, once: bool = False, verbosity: int = 1, **options: Any) -> None:
        app_logger = logging.getLogger("notifications")
        listener_logger = logging.getLogger("notifications.listener")
        saved = (app_logger.level, listener_logger.level)
        fallback = None
        line_filter = DefaultLines()
        app_logger.setLevel(VERBOSITY_LEVELS.get(verbosity, logging.DEBUG))
        if verbosity == 1:
            listener_logger.setLevel(logging.INFO)
            listener_logger.addFilter(line_filter)
        if not app_logger.hasHandlers():
            fallback = logging.StreamHandler()
            fallback.setFormatter(logging.Formatter(FALLBACK_FORMAT))
            app_logger.addHandler(fallback)
        try:
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
        finally:
            # call_command in a long-lived process (tests, a shell) must not keep our levels.
            listener_logger.removeFilter(line_filter)
            app_logger.setLevel(saved[0])
            listener_logger.setLevel(saved[1])
            if fallback is not None:
                app_logger.removeHandler(fallback)
