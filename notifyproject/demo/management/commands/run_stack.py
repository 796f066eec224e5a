"""``manage.py run_stack``: the whole demo on one machine: Redis if needed, daphne, the listener.

``make run`` calls it. It checks first and changes things after: the port must be free and a
Redis must answer (or start) before it migrates the database and seeds the demo users
(``seed_demo``: created once, left alone afterwards, so a restart logs nobody out). The
console shows the pipeline: ``watch_notifications`` prints a line per event (created,
dispatched, delivered, read, …), the listener only its warnings, and daphne's access log
leaves out static files. Environment:

- ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) is used if it answers. Otherwise, if
  ``redis-server`` is installed, a private one is started on a free port and handed to the
  children as their ``REDIS_URL``; it stops with this command.
- ``HOST`` (default ``127.0.0.1``) and ``PORT`` (default ``8000``): where daphne listens.

Ctrl-C (SIGINT), SIGTERM or SIGHUP stops every child (SIGTERM, then SIGKILL after 5 s) and
exits 0. If a child dies on its own, the others are stopped and the exit status is 1. The
processes themselves are started and stopped by ``notifyproject.demo.supervisor``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
from typing import IO, Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from notifyproject.demo import supervisor
from notifyproject.demo.management.commands.seed_demo import (
    DEMO_GROUP,
    DEMO_GROUP_MEMBERS,
    DEMO_USERS,
    seed,
)

SETTINGS_MODULE = "notifyproject.settings"
# The demo's children stop in well under a second; 5 s is a hung one, not a slow one.
STOP_GRACE_SECONDS = 5.0
REDIS_START_SECONDS = 10.0
# The first request of a cold daphne imports the whole project.
HTTP_START_SECONDS = 60.0
# daphne's access-log lines left off the console: a page load is a dozen static GETs, which
# would bury the pipeline's lines (the issue counted 238 of them to 38 dispatches).
QUIET_REQUESTS = re.compile(r'"(?:GET|HEAD) (?:/static/|/favicon\.ico)')


def copy_access_log(stream: IO[bytes], out: IO[str]) -> None:
    """Copy daphne's access log to ``out``, less the static files; returns at EOF."""
    for raw in stream:
        line = raw.decode("utf-8", "replace")
        if not QUIET_REQUESTS.search(line):
            out.write(line)
            out.flush()


def prepare_database() -> None:
    """Migrate, then create the demo users and group if they are missing (never reset)."""
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        say(f"Applying {len(pending)} migration(s).")
        call_command("migrate", interactive=False, verbosity=0)
    # Seeding a new user sends its welcome notification before any listener runs: the
    # publisher's "no listener is subscribed" (or, with a private Redis this process does
    # not use, "could not publish") is expected here, and the listener's first sweep
    # dispatches it.
    publisher_logger = logging.getLogger("notifications.publisher")
    level = publisher_logger.level
    publisher_logger.setLevel(logging.ERROR)
    try:
        done = seed()
    finally:
        publisher_logger.setLevel(level)
    if done.created:
        say(f"Created the demo users {', '.join(done.created)}.")
    if done.left_alone:
        say(
            f"Demo users {', '.join(done.left_alone)} exist; left as they are (so nobody is "
            "logged out). manage.py seed_demo --reset restores the demo passwords."
        )
    connection.close()  # the children open their own; this process sleeps from here on


def say(message: str) -> None:
    """Print one of the supervisor's own messages to stderr, set apart from the children's."""
    print(f"[run_stack] {message}", file=sys.stderr, flush=True)


def url_host(host: str) -> str:
    """Return ``host`` as it appears in a URL: wildcards as loopback, IPv6 in brackets."""
    host = supervisor.WILDCARD_HOSTS.get(host, host)
    return f"[{host}]" if ":" in host else host


def read_port() -> int:
    """Return PORT from the environment (default 8000), or fail with a clear message."""
    raw = os.environ.get("PORT", "8000")
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise CommandError(f"PORT={raw!r} is not a TCP port number (1-65535).")
    return port


def demo_logins() -> str:
    """Return the demo users' lines of the banner (the users seed_demo creates)."""
    lines = []
    for username, password, superuser in DEMO_USERS:
        if superuser:
            note = "superuser, can use /admin/"
        elif username in DEMO_GROUP_MEMBERS:
            note = f"member of {DEMO_GROUP}"
        else:
            note = ""
        lines.append(f"    {username:<6} {password:<14} {note}".rstrip())
    return "\n".join(lines)


def banner(host: str, port: int, redis_url: str, private_redis: bool) -> str:
    """Return the text shown once everything answers."""
    base = f"http://{url_host(host)}:{port}"
    prefix = f"REDIS_URL={redis_url} " if private_redis else ""
    redis_note = " (private: stops with this command)" if private_redis else ""
    rule = "=" * 78
    return (
        f"\n{rule}\n"
        f"  notifyproject is running at {base}/\n"
        f"  Admin:  {base}/admin/\n"
        f"  Redis:  {supervisor.safe_url(redis_url)}{redis_note}\n\n"
        f"  Demo logins (username, password):\n{demo_logins()}\n\n"
        "  Try it: log in as alice in one window, as admin in another, and send a\n"
        "  notification from /admin/ or, in another terminal:\n"
        f"    {prefix}python manage.py send_notification --user alice --title Hi\n\n"
        "  Below: a line per pipeline event (created, dispatched, delivered, read, …)\n"
        "  from manage.py watch_notifications, and the pages daphne serves.\n"
        "  Ctrl-C stops everything.\n"
        f"{rule}\n"
    )


class Command(BaseCommand):
    help = (
        "Run the demo stack: Redis (a private redis-server if none answers at REDIS_URL), "
        "then migrate and seed the demo users (once), daphne on HOST:PORT (default "
        "127.0.0.1:8000), the listener and watch_notifications. Ctrl-C stops all."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        """Start everything, wait for Ctrl-C or a child's death, stop everything."""
        stack = supervisor.Supervisor(grace=STOP_GRACE_SECONDS)
        stack.install_signal_handlers()
        try:
            self.run(stack)
        except supervisor.SupervisorError as exc:
            say(str(exc))
            raise CommandError("the stack stopped.", returncode=1) from exc
        finally:
            running = [child.name for child in stack.apps + stack.infrastructure if child.alive()]
            if running:
                say(f"Stopping {', '.join(running)}.")
                for child in stack.stop():
                    say(f"{child.name} did not stop within {STOP_GRACE_SECONDS:g} s; killed it.")
                say("Stopped.")

    def run(self, stack: supervisor.Supervisor) -> None:
        host = os.environ.get("HOST", "127.0.0.1")
        port = read_port()
        error = supervisor.bind_error(host, port)
        if error is not None:
            raise CommandError(
                f"Cannot listen on {host}:{port} ({error.strerror}); is another server running "
                f"there? Choose another port: PORT={port + 1} make run"
            )
        env = dict(os.environ)
        env.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Every child in a session of its own: Ctrl-C reaches only this command, which
        # stops daphne and the listener before the Redis they use.
        child = {"output": "inherit", "own_group": True, "env": env}

        url = os.environ.get("REDIS_URL") or supervisor.DEFAULT_REDIS_URL
        redis_url, redis_process = supervisor.redis_or_private(
            url, timeout=REDIS_START_SECONDS, **child
        )
        if redis_process is None:
            say(f"Using the Redis at {supervisor.safe_url(url)}.")
        else:
            stack.add(redis_process, infrastructure=True)
            say(f"No Redis answers at {supervisor.safe_url(url)}; started a private one.")
            env["REDIS_URL"] = redis_url
        if stack.stopping():
            return self.stopped(stack)

        # Only now, with the port free and Redis answering, is anything changed.
        prepare_database()
        if stack.stopping():
            return self.stopped(stack)

        # The watcher first, so it sees the first events; its lines are the console's.
        watcher = supervisor.spawn(
            "watcher (manage.py watch_notifications)",
            supervisor.watcher_command(),
            **child,
        )
        stack.add(watcher)
        daphne = supervisor.start_daphne(
            port, host=host, wait=False, stdout=subprocess.PIPE, **child
        )
        stack.add(daphne)
        assert daphne.popen.stdout is not None  # noqa: S101 - piped just above
        threading.Thread(
            target=copy_access_log,
            args=(daphne.popen.stdout, sys.stdout),
            name="daphne access log",
            daemon=True,
        ).start()
        # Warnings only (-v 0): the watcher already prints a line per dispatch.
        listener = supervisor.start_listener(
            name="listener (manage.py listen_notifications)", wait=False, verbosity=0, **child
        )
        stack.add(listener)
        ready = supervisor.wait_until_ready(
            lambda: supervisor.http_answers(port, host),
            stack.children(),
            HTTP_START_SECONDS,
            f"answer HTTP on {host}:{port}",
            should_stop=stack.stopping,
        )
        if ready:
            print(banner(host, port, redis_url, redis_process is not None), flush=True)
            stack.wait_until_stopped()
        return self.stopped(stack)

    def stopped(self, stack: supervisor.Supervisor) -> None:
        if stack.stop_signal is not None:
            say(f"Got {signal.Signals(stack.stop_signal).name}.")
