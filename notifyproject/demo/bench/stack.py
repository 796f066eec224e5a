"""The stack under test: daphne and listener processes, started and stopped by the benchmark.

They run as the site runs them (``daphne -b 127.0.0.1 -p <port> <ASGI app>``, and
``manage.py listen_notifications``), with the benchmark's environment: the same settings,
database and Redis, but a channel-layer prefix and a pub/sub channel of the run's own.
Their output goes to log files; RSS and CPU time come from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from notifyproject.demo import supervisor
from notifyproject.demo.bench.workers import CHILD_OPTIONS, BenchError

START_TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ERROR_LINE = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|Exception\b|Error:")


def rss_kib(pid: int) -> int | None:
    """Return a process's resident set size in KiB (``VmRSS``), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """Return a process's CPU time in seconds, or None if it is gone.

    Summed over its threads' ``schedstat`` (nanoseconds) where the kernel has it; ``stat``'s
    utime + stime otherwise (clock ticks: 10 ms steps, too coarse for small runs).
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total_ns = 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                total_ns += int(schedstat.read().split()[0])
        except FileNotFoundError:
            continue  # a thread that just ended
        except (OSError, ValueError, IndexError):
            break
    else:
        return total_ns / 1e9
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Child:
    """One daphne or listener process and its log."""

    kind: str  # "daphne" | "listener"
    process: supervisor.Process
    port: int | None = None
    log_offset: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        return self.process.popen

    @property
    def log_path(self) -> Path:
        assert self.process.log_path is not None  # noqa: S101 - bench children always log
        return self.process.log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss_kib(self) -> int | None:
        return rss_kib(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid) or 0.0

    def new_error_lines(self) -> list[str]:
        """Return log lines that look like errors, written since the last call."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self.log_offset)
                data = handle.read()
                self.log_offset = handle.tell()
        except OSError:
            return []
        found = [
            f"{self.name}: {line}"
            for line in data.decode("utf-8", "replace").splitlines()
            if ERROR_LINE.search(line)
        ]
        self.errors.extend(found)
        return found

    def stop(self) -> None:
        self.process.stop(timeout=10)


class Stack:
    """Start, reshape, pause and stop the daphne and listener processes of one run."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        cwd: Path,
        log_dir: Path,
        asgi_application: str,
        channel: str,
        redis_client: redis.Redis,
    ) -> None:
        self.env = env
        self.cwd = cwd
        self.log_dir = log_dir
        self.asgi_application = asgi_application
        self.channel = channel
        self.redis = redis_client
        self.daphnes: list[Child] = []
        self.listeners: list[Child] = []
        self._started = 0

    # ---- commands ------------------------------------------------------------------------

    def daphne_args(self, port: int) -> list[str]:
        return supervisor.daphne_command(port, application=self.asgi_application)

    def listener_args(self) -> list[str]:
        # Verbosity 1: per-notification log lines would cost the listener measured CPU.
        return supervisor.listener_command(verbosity=1, cwd=self.cwd)

    # ---- shape ---------------------------------------------------------------------------

    def ensure(self, daphnes: int, listeners: int) -> None:
        """Run exactly this many daphnes and listeners (restarting any that died)."""
        for child in [c for c in self.daphnes + self.listeners if not c.alive()]:
            child.new_error_lines()
            self._drop(child)
        while len(self.daphnes) > daphnes:
            self._drop(self.daphnes[-1])
        while len(self.listeners) > listeners:
            self._drop(self.listeners[-1])
        new_daphnes = [self._start_daphne() for _ in range(daphnes - len(self.daphnes))]
        new_listeners = [self._start_listener() for _ in range(listeners - len(self.listeners))]
        self.daphnes.extend(new_daphnes)
        self.listeners.extend(new_listeners)
        for child in new_daphnes:
            self._wait_for_port(child)
        if new_listeners:
            self._wait_for_subscribers(len(self.listeners))

    def restart_daphnes(self) -> None:
        """Replace every daphne with a fresh process (a clean RSS baseline)."""
        count = len(self.daphnes)
        for child in list(self.daphnes):
            self._drop(child)
        self.ensure(count, len(self.listeners))

    def _drop(self, child: Child) -> None:
        child.stop()
        child.new_error_lines()
        for group in (self.daphnes, self.listeners):
            if child in group:
                group.remove(child)

    def _spawn(self, kind: str, args: list[str]) -> supervisor.Process:
        self._started += 1
        name = f"{kind}-{self._started}"
        log = self.log_dir / f"{name}.log"
        return supervisor.spawn(name, args, self.env, cwd=self.cwd, output=log, **CHILD_OPTIONS)

    def _start_daphne(self) -> Child:
        port = supervisor.free_port()
        return Child("daphne", self._spawn("daphne", self.daphne_args(port)), port=port)

    def _start_listener(self) -> Child:
        return Child("listener", self._spawn("listener", self.listener_args()))

    def _wait_for_port(self, child: Child) -> None:
        child.process.wait_for_port(child.port or 0, START_TIMEOUT)

    def _wait_for_subscribers(self, count: int) -> None:
        """Wait until ``count`` listeners are subscribed to the run's channel."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for child in self.listeners:
                if not child.alive():
                    child.process.check_alive()
            numsub = dict(self.redis.pubsub_numsub(self.channel))
            subscribed = next(iter(numsub.values()), 0) if numsub else 0
            if subscribed >= count:
                return
            time.sleep(0.05)
        raise BenchError(f"{count} listener(s) did not subscribe within {START_TIMEOUT:.0f} s")

    # ---- observation ---------------------------------------------------------------------

    def ws_urls(self, path: str = "/ws/notifications/") -> list[str]:
        return [f"ws://127.0.0.1:{child.port}{path}" for child in self.daphnes]

    def check(self) -> None:
        """Raise if a child died since it started."""
        for child in self.daphnes + self.listeners:
            if not child.alive():
                child.process.check_alive("during the run")

    def cpu(self, kind: str | None = None) -> float:
        """Return the CPU seconds used so far by the children (of one kind)."""
        return sum(c.cpu() for c in self.daphnes + self.listeners if kind in (None, c.kind))

    def settle(self, timeout: float = 5.0, busy: float = 0.15) -> float:
        """Wait until the children use under ``busy`` of a core; return the seconds waited."""
        started = time.monotonic()
        previous = self.cpu()
        while time.monotonic() - started < timeout:
            time.sleep(0.2)
            current = self.cpu()
            if current - previous < busy * 0.2:
                break
            previous = current
        return time.monotonic() - started

    def error_lines(self) -> list[str]:
        """Return error-looking log lines of every child written since the last call."""
        lines: list[str] = []
        for child in self.daphnes + self.listeners:
            lines.extend(child.new_error_lines())
        return lines

    @contextlib.contextmanager
    def listeners_paused(self) -> Iterator[None]:
        """SIGSTOP every listener for the block (SIGCONT afterwards, whatever happens)."""
        for child in self.listeners:
            child.popen.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for child in self.listeners:
                with contextlib.suppress(ProcessLookupError):
                    child.popen.send_signal(signal.SIGCONT)

    def describe(self) -> dict[str, object]:
        return {
            "daphne": [*self.daphne_args(0)[:-2], "<port>", self.asgi_application],
            "listener": self.listener_args(),
        }

    def stop(self) -> None:
        for child in self.listeners + self.daphnes:
            with contextlib.suppress(Exception):
                self._drop(child)
