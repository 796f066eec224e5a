#!/usr/bin/env python3
"""Run the whole notifyproject stack on one machine: Redis if needed, daphne and the listener.

``make run`` calls this after ``migrate`` and ``seed_demo``, with the virtualenv's Python.
Environment:

- ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) is used if it answers. Otherwise, if
  ``redis-server`` is installed, a private one is started on a free port and handed to the
  children as their ``REDIS_URL``; it stops with this script.
- ``HOST`` (default ``127.0.0.1``) and ``PORT`` (default ``8000``): where daphne listens.

Ctrl-C (SIGINT), SIGTERM or SIGHUP stops every child (SIGTERM, then SIGKILL after 5 s) and exits
0. If a child dies on its own, the others are stopped and the exit status is 1.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import redis

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SETTINGS_MODULE = "notifyproject.settings"
ASGI_APPLICATION = "notifyproject.asgi:application"
STOP_GRACE_SECONDS = 5.0
REDIS_START_SECONDS = 10.0
HTTP_START_SECONDS = 60.0
POLL_SECONDS = 0.2
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104
DEMO_LOGINS = (
    ("admin", "admin-demo-pw", "superuser, can use /admin/"),
    ("alice", "alice-demo-pw", "member of demo-team"),
    ("bob", "bob-demo-pw", "member of demo-team"),
)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StackError(Exception):
    """A problem that stops the stack, with a message meant for the person running it."""


@dataclass
class Child:
    """A child process with the name used in messages."""

    name: str
    process: subprocess.Popen[bytes]

    def alive(self) -> bool:
        """Return whether the process is still running (reaping it if it is not)."""
        return self.process.poll() is None


@dataclass
class Stack:
    """The running children and whether a stop signal has arrived."""

    infrastructure: list[Child] = field(default_factory=list)
    apps: list[Child] = field(default_factory=list)
    stop_signal: int | None = None

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: remember the signal; the main loop does the stopping."""
        self.stop_signal = signum

    def children(self) -> list[Child]:
        """Return every child, in start order."""
        return self.infrastructure + self.apps


def say(message: str) -> None:
    """Print one of this script's own messages to stderr, set apart from the children's."""
    print(f"[run_stack] {message}", file=sys.stderr, flush=True)


def safe_url(url: str) -> str:
    """Return ``url`` with any password masked, for printing."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def url_host(host: str) -> str:
    """Return ``host`` as it appears in a URL: wildcards as loopback, IPv6 in brackets."""
    host = WILDCARD_HOSTS.get(host, host)
    return f"[{host}]" if ":" in host else host


def describe_exit(returncode: int) -> str:
    """Describe a process's return code in words ("exit code 1", "killed by SIGKILL")."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def read_port() -> int:
    """Return PORT from the environment (default 8000), or fail with a clear message."""
    raw = os.environ.get("PORT", "8000")
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise StackError(f"PORT={raw!r} is not a TCP port number (1-65535).")
    return port


def child_environment() -> dict[str, str]:
    """Return the environment for the children: ours, plus the Django settings module."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start(name: str, command: list[str], env: dict[str, str]) -> Child:
    """Start ``command`` in its own process group (so Ctrl-C reaches only this script)."""
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, process_group=0
    )
    return Child(name, process)


def signal_child(child: Child, signum: int) -> None:
    """Send ``signum`` to the child's process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signum)


def terminate(children: list[Child]) -> None:
    """Stop ``children`` together: SIGTERM, then SIGKILL for any still alive after the grace."""
    running = [child for child in children if child.alive()]
    for child in running:
        signal_child(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in running:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop within {STOP_GRACE_SECONDS:.0f} s; killing it.")
            signal_child(child, signal.SIGKILL)
            child.process.wait()


def stop_all(stack: Stack) -> None:
    """Stop daphne and the listener first, then the private Redis they were using."""
    running = [child.name for child in stack.children() if child.alive()]
    if not running:
        return
    say(f"Stopping {', '.join(running)}.")
    terminate(stack.apps)
    terminate(stack.infrastructure)
    say("Stopped.")


def first_dead(children: list[Child]) -> Child | None:
    """Return the first child that has exited, if any."""
    return next((child for child in children if not child.alive()), None)


def check_children(stack: Stack, stage: str = "") -> None:
    """Raise StackError naming the first child that has exited."""
    dead = first_dead(stack.children())
    if dead is not None:
        exit_text = describe_exit(dead.process.returncode)
        raise StackError(f"{dead.name} exited unexpectedly{stage} ({exit_text}).")


def redis_answers(url: str) -> bool:
    """Return whether the Redis at ``url`` answers PING within a second."""
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def no_redis_message(url: str) -> str:
    """Explain what to do when no Redis answers and none can be started."""
    return (
        f"No Redis answers at {safe_url(url)}, and redis-server is not installed.\n"
        "  Install and start Redis (Debian/Ubuntu: sudo apt-get install redis-server;\n"
        "  macOS: brew install redis && brew services start redis), then run `make run` again,\n"
        "  or point REDIS_URL at a Redis that runs: REDIS_URL=redis://HOST:6379/0 make run"
    )


def wait_for_redis(stack: Stack, url: str) -> None:
    """Wait until the private Redis answers; fail if it dies or takes too long."""
    deadline = time.monotonic() + REDIS_START_SECONDS
    while not redis_answers(url):
        check_children(stack, " while starting")
        if stack.stop_signal is not None:
            return
        if time.monotonic() > deadline:
            raise StackError(f"redis-server did not answer at {url} within 10 s.")
        time.sleep(POLL_SECONDS)


def ensure_redis(stack: Stack, env: dict[str, str]) -> tuple[str, bool]:
    """Return the Redis URL to use and whether it is a private one this script started."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if redis_answers(url):
        say(f"Using the Redis at {safe_url(url)}.")
        return url, False
    server = shutil.which("redis-server")
    if server is None:
        raise StackError(no_redis_message(url))
    port = free_port()
    private_url = f"redis://127.0.0.1:{port}/0"
    say(f"No Redis answers at {safe_url(url)}; starting a private redis-server on port {port}.")
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--loglevel", "warning"]
    stack.infrastructure.append(start("redis-server", command, env))
    wait_for_redis(stack, private_url)
    env["REDIS_URL"] = private_url
    return private_url, True


def daphne_executable() -> str:
    """Return the daphne next to this Python (the virtualenv's), or the one on PATH."""
    beside = Path(sys.executable).with_name("daphne")
    if beside.exists():
        return str(beside)
    found = shutil.which("daphne")
    if found is None:
        raise StackError("daphne is not installed for this Python; run `make venv` first.")
    return found


def ensure_port_free(host: str, port: int) -> None:
    """Fail early, with a hint, if something already listens on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StackError(
                f"Cannot listen on {host}:{port} ({exc.strerror}); is another server running "
                f"there? Choose another port: PORT={port + 1} make run"
            ) from exc


def http_answers(host: str, port: int) -> bool:
    """Return whether an HTTP server at ``host:port`` answers a GET of ``/``."""
    connection = http.client.HTTPConnection(WILDCARD_HOSTS.get(host, host), port, timeout=2)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def wait_for_http(stack: Stack, host: str, port: int) -> bool:
    """Wait until daphne answers; return False if a stop signal came first."""
    deadline = time.monotonic() + HTTP_START_SECONDS
    while not http_answers(host, port):
        check_children(stack, " while starting")
        if stack.stop_signal is not None:
            return False
        if time.monotonic() > deadline:
            raise StackError(f"daphne did not answer on {host}:{port} within 60 s.")
        time.sleep(POLL_SECONDS)
    return True


def banner(host: str, port: int, redis_url: str, private_redis: bool) -> str:
    """Return the text shown once everything answers."""
    base = f"http://{url_host(host)}:{port}"
    prefix = f"REDIS_URL={redis_url} " if private_redis else ""
    redis_note = " (private: stops with this script)" if private_redis else ""
    logins = "\n".join(f"    {user:<6} {pw:<14} {note}" for user, pw, note in DEMO_LOGINS)
    rule = "=" * 78
    return (
        f"\n{rule}\n"
        f"  notifyproject is running at {base}/\n"
        f"  Admin:  {base}/admin/\n"
        f"  Redis:  {safe_url(redis_url)}{redis_note}\n\n"
        f"  Demo logins (username, password):\n{logins}\n\n"
        "  Try it: log in as alice in one window, as admin in another, and send a\n"
        "  notification from /admin/ or, in another terminal:\n"
        f"    {prefix}python manage.py send_notification --user alice --title Hi\n\n"
        "  Ctrl-C stops everything.\n"
        f"{rule}\n"
    )


def supervise(stack: Stack) -> int:
    """Wait for a stop signal (exit status 0) or for a child to die (exit status 1)."""
    while stack.stop_signal is None:
        check_children(stack)
        time.sleep(POLL_SECONDS)
    return stopped(stack)


def stopped(stack: Stack) -> int:
    """Say which signal asked us to stop; return exit status 0."""
    if stack.stop_signal is not None:
        say(f"Got {signal.Signals(stack.stop_signal).name}.")
    return 0


def run(stack: Stack) -> int:
    """Start Redis if needed, then daphne and the listener, and supervise them."""
    host = os.environ.get("HOST", "127.0.0.1")
    port = read_port()
    ensure_port_free(host, port)
    env = child_environment()
    redis_url, private_redis = ensure_redis(stack, env)
    if stack.stop_signal is not None:
        return stopped(stack)
    daphne = [daphne_executable(), "-b", host, "-p", str(port), ASGI_APPLICATION]
    stack.apps.append(start("daphne", daphne, env))
    listener = [sys.executable, "manage.py", "listen_notifications", "-v", "2"]
    stack.apps.append(start("listener (manage.py listen_notifications)", listener, env))
    if not wait_for_http(stack, host, port):
        return stopped(stack)
    print(banner(host, port, redis_url, private_redis), flush=True)
    return supervise(stack)


def main() -> int:
    """Run the stack; always stop the children before returning the exit status."""
    stack = Stack()
    for signum in STOP_SIGNALS:
        signal.signal(signum, stack.request_stop)
    try:
        return run(stack)
    except StackError as exc:
        say(str(exc))
        return 1
    finally:
        stop_all(stack)


if __name__ == "__main__":
    sys.exit(main())
