"""Start and stop the real processes of the stack (daphne, the listener, redis-server)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def database_url() -> str:
    """Return a DATABASE_URL for the test database this process is using now."""
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{settings['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process sharing this test run's database and Redis."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url(),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Process:
    """A child process whose combined output is collected for assertions and failures."""

    name: str
    popen: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 15.0, start: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines[start:]):
                return
            if self.popen.poll() is not None:
                time.sleep(0.2)
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.output}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} never printed {text!r}:\n{self.output}")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(2)
        return self.popen.returncode


def spawn(name: str, args: list[str], env: dict[str, str]) -> Process:
    popen = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    return Process(name, popen)


def start_daphne(port: int, env: dict[str, str]) -> Process:
    proc = spawn(
        "daphne",
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "notifyproject.asgi:application"],
        env,
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        proc.stop()
        raise RuntimeError(f"daphne did not start:\n{proc.output}") from None
    return proc


def start_listener(env: dict[str, str], *extra_args: str, wait: bool = True) -> Process:
    proc = spawn(
        "listener",
        [sys.executable, "manage.py", "listen_notifications", "-v", "2", *extra_args],
        env,
    )
    if wait:
        proc.wait_for_line("Subscribed to")
    return proc


def start_redis(port: int, *extra: str, tls: bool = False) -> Process:
    """Start a private redis-server on ``port``, keeping nothing on disk.

    ``extra`` are more redis-server options (e.g. ``--requirepass``); with ``tls`` the port
    is the TLS port and the plain one is off (pass the certificate options in ``extra``).
    """
    workdir = tempfile.mkdtemp(prefix="notifyproject-redis-")
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    ports = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
    args = [
        "redis-server",
        *ports,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        workdir,
        *extra,
    ]
    proc = spawn("redis-server", args, dict(os.environ))
    wait_for_port(port)
    return proc
