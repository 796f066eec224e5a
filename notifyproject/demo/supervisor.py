"""The one process supervisor: start, watch and stop daphne, the listener and redis-server.

``make run`` (``manage.py run_stack``), the benchmark (``notifyproject.demo.bench``) and the
live, fault and browser tests (``tests/processes.py``) all start their children here, so a
fix to how a child is started, awaited or stopped reaches every one of them. It imports
nothing from Django: it runs before (and without) settings.

A child's output goes to one of three places (``Output``): ``"capture"`` keeps its lines in
memory for assertions and failure messages (the tests), a ``Path`` appends them to a log file
(the benchmark), ``"inherit"`` leaves them on this terminal (``make run``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import redis

ROOT = Path(__file__).resolve().parents[2]
DEMO_ASGI_APPLICATION = "notifyproject.asgi:application"
# daphne refuses a bigger client frame from its header, before buffering it (the app's own
# MAX_FRAME_BYTES check, 4413, only runs once daphne has read the whole frame).
MAX_FRAME_BYTES = 64 * 1024
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Long enough for a listener to finish the batch it is writing, short enough that a hung
# child does not hold up a test run or a Ctrl-C for long.
STOP_GRACE_SECONDS = 10.0
# A cold daphne imports Django and the project in a second or two; a loaded CI machine
# shared with other jobs has been seen to take several times that.
START_SECONDS = 15.0
POLL_SECONDS = 0.05
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104
PR_SET_PDEATHSIG = 1

Output = Literal["capture", "inherit"] | Path


class SupervisorError(RuntimeError):
    """A child that did not start (or exited); the message carries what it printed."""


class NotReady(SupervisorError, TimeoutError):
    """A child still running but not ready when its deadline passed."""


def _load_libc() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


# Loaded before any fork: the child only calls into it between fork and exec.
_LIBC = _load_libc() if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, even by SIGKILL.

    Linux ties this to the thread that forked, so only callers that spawn from a thread
    living as long as the process (the benchmark's main thread) ask for it.
    """
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


# ---- small helpers -------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def bind_error(host: str, port: int) -> OSError | None:
    """Return why ``host:port`` cannot be listened on (something already does), or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((WILDCARD_HOSTS.get(host, host), port), 0.2):
            return True
    except OSError:
        return False


def http_answers(port: int, host: str = "127.0.0.1", path: str = "/") -> bool:
    """Return whether an HTTP server on ``host:port`` answers a GET of ``path`` (any status)."""
    connection = http.client.HTTPConnection(WILDCARD_HOSTS.get(host, host), port, timeout=2)
    try:
        connection.request("GET", path)
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def redis_answers(url: str) -> bool:
    """Return whether the Redis at ``url`` answers PING within a second."""
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


def safe_url(url: str) -> str:
    """Return ``url`` with any password masked, for printing."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def describe_exit(returncode: int | None) -> str:
    """Describe a return code in words ("exit code 1", "killed by SIGKILL")."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def tail(path: Path, lines: int = 20) -> str:
    """Return the last ``lines`` lines of a log file (empty if it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16_000))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ---- one child -----------------------------------------------------------------------------


@dataclass(eq=False)
class Process:
    """A child process, where its output goes, and the ways to wait for it and stop it."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None = None
    own_group: bool = False
    capture: bool = False
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader: threading.Thread | None = None
        if self.capture:
            self._reader = threading.Thread(target=self._read, name=self.name, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None  # noqa: S101 - capture always pipes stdout
        for raw in self.popen.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def alive(self) -> bool:
        """Return whether the process still runs (reaping it if it does not)."""
        return self.popen.poll() is None

    @property
    def output(self) -> str:
        """What the child printed: every captured line, or the end of its log file."""
        if self.capture:
            return "\n".join(self.lines)
        if self.log_path is not None:
            return tail(self.log_path)
        return ""

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child (to its whole group if it leads one); ignore one gone."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            if self.own_group:
                os.killpg(self.popen.pid, sig)
            else:
                self.popen.send_signal(sig)

    def stop(self, timeout: float = STOP_GRACE_SECONDS) -> int | None:
        """Stop the child (SIGTERM, SIGKILL after ``timeout`` s); return its exit status."""
        stop_all([self], timeout)
        return self.popen.returncode

    def failure(self, what: str) -> str:
        """Return a message saying ``what`` happened, followed by the child's output."""
        output = self.output
        return f"{self.name} {what}:\n{output}" if output else f"{self.name} {what}."

    def check_alive(self, stage: str = "at start") -> None:
        """Raise SupervisorError (with the child's output) if it has exited."""
        if not self.alive():
            self._finish_reading()
            raise SupervisorError(
                self.failure(f"exited {stage} ({describe_exit(self.returncode)})")
            )

    def _finish_reading(self) -> None:
        if self._reader is not None:
            self._reader.join(2)

    def wait_for_line(self, text: str, timeout: float = START_SECONDS, start: int = 0) -> None:
        """Wait until a captured line from index ``start`` on contains ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines[start:]):
                return
            if not self.alive():
                self._finish_reading()
                if any(text in line for line in self.lines[start:]):
                    return
                self.check_alive(f"before printing {text!r}")
            time.sleep(POLL_SECONDS)
        raise NotReady(self.failure(f"never printed {text!r} within {timeout:g} s"))

    def wait_for_port(
        self, port: int, timeout: float = START_SECONDS, host: str = "127.0.0.1"
    ) -> None:
        """Wait until ``host:port`` accepts connections; fail at once if the child exits."""
        wait_until_ready(lambda: port_answers(port, host), [self], timeout, f"listen on {port}")


def spawn(
    name: str,
    args: Sequence[str],
    env: dict[str, str],
    *,
    cwd: Path = ROOT,
    output: Output = "capture",
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = None,
    own_group: bool = False,
    die_with_parent: bool = False,
) -> Process:
    """Start ``args`` as a child called ``name``.

    ``own_group`` puts it in a session of its own: a terminal's Ctrl-C then reaches only
    this process, which stops its children in order (``make run``, the benchmark). Without
    it the child stays in the caller's group, so whoever kills that group (a terminal, a
    CI ``timeout``) kills the child too: what a test run wants. ``stdout`` overrides where
    stdout goes (a pipe the caller reads), with stderr still following ``output``.
    """
    log = None
    if isinstance(output, Path):
        output.parent.mkdir(parents=True, exist_ok=True)
        log = open(output, "ab")  # noqa: SIM115 - the child keeps its own copy of the descriptor
        out, err = (stdout if stdout is not None else log), log
    elif output == "capture":
        out, err = subprocess.PIPE, subprocess.STDOUT
    else:
        out, err = stdout, None
    try:
        popen = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=err,
            start_new_session=own_group,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    finally:
        if log is not None:
            log.close()
    return Process(
        name,
        popen,
        log_path=output if isinstance(output, Path) else None,
        own_group=own_group,
        capture=output == "capture",
    )


def wait_until_ready(
    ready: Callable[[], bool],
    children: Iterable[Process],
    timeout: float,
    what: str,
    should_stop: Callable[[], bool] | None = None,
) -> bool:
    """Poll ``ready`` until true (True); False if ``should_stop`` says so first.

    Raise SupervisorError as soon as one of ``children`` exits, NotReady at the deadline.
    """
    children = list(children)
    deadline = time.monotonic() + timeout
    while not ready():
        for child in children:
            child.check_alive("while starting")
        if should_stop is not None and should_stop():
            return False
        if time.monotonic() > deadline:
            names = ", ".join(child.name for child in children) or "the stack"
            detail = "\n".join(child.output for child in children if child.output)
            raise NotReady(f"{names} did not {what} within {timeout:g} s\n{detail}".rstrip())
        time.sleep(POLL_SECONDS)
    return True


def stop_all(children: Iterable[Process], grace: float = STOP_GRACE_SECONDS) -> list[Process]:
    """Stop ``children`` together: SIGTERM, then SIGKILL for any alive after ``grace`` s.

    SIGCONT goes first, so a child a fault test paused can act on the SIGTERM. Return the
    children that had to be killed.
    """
    running = [child for child in children if child.alive()]
    for child in running:
        child.signal(signal.SIGCONT)
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    killed = []
    for child in running:
        try:
            child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(child)
            child.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(5)
    for child in running:
        child._finish_reading()
    return killed


# ---- the stack's children ------------------------------------------------------------------


def daphne_command(
    port: int, *, host: str = "127.0.0.1", application: str = DEMO_ASGI_APPLICATION
) -> list[str]:
    """Return the daphne command line: this Python's daphne (the virtualenv's) if it has one."""
    beside = Path(sys.executable).with_name("daphne")
    found = str(beside) if beside.exists() else shutil.which("daphne")
    daphne = [found] if found else [sys.executable, "-m", "daphne"]
    limits = ["--websocket-max-message-size", str(MAX_FRAME_BYTES)]
    limits += ["--websocket-max-frame-size", str(MAX_FRAME_BYTES)]
    return [*daphne, "-b", host, "-p", str(port), *limits, application]


def listener_command(*extra_args: str, verbosity: int = 2, cwd: Path = ROOT) -> list[str]:
    """Return ``manage.py listen_notifications`` (``django-admin`` where there is no manage.py)."""
    base = ["manage.py"] if (cwd / "manage.py").exists() else ["-m", "django"]
    return [sys.executable, *base, "listen_notifications", "-v", str(verbosity), *extra_args]


def watcher_command(*extra_args: str, cwd: Path = ROOT) -> list[str]:
    """Return ``manage.py watch_notifications`` (``django-admin`` where there is no manage.py)."""
    base = ["manage.py"] if (cwd / "manage.py").exists() else ["-m", "django"]
    return [sys.executable, *base, "watch_notifications", *extra_args]


def start_daphne(
    port: int,
    env: dict[str, str],
    *,
    host: str = "127.0.0.1",
    application: str = DEMO_ASGI_APPLICATION,
    name: str = "daphne",
    wait: bool = True,
    timeout: float = START_SECONDS,
    **options: Any,
) -> Process:
    """Start daphne on ``host:port``; with ``wait``, return once it accepts connections.

    ``options`` go to ``spawn`` (``output``, ``cwd``, ``own_group``, ``die_with_parent``).
    """
    process = spawn(name, daphne_command(port, host=host, application=application), env, **options)
    if wait:
        try:
            process.wait_for_port(port, timeout, host)
        except SupervisorError:
            process.stop()
            raise
    return process


def start_listener(
    env: dict[str, str],
    *extra_args: str,
    wait: bool = True,
    verbosity: int = 2,
    name: str = "listener",
    timeout: float = START_SECONDS,
    **options: Any,
) -> Process:
    """Start ``manage.py listen_notifications``; with ``wait``, return once it has subscribed.

    Waiting reads its output, so it needs ``output="capture"`` (the default).
    """
    cwd = options.get("cwd", ROOT)
    command = listener_command(*extra_args, verbosity=verbosity, cwd=cwd)
    process = spawn(name, command, env, **options)
    if wait:
        if not process.capture:
            raise ValueError("waiting for the listener to subscribe needs output='capture'")
        process.wait_for_line("Subscribed to", timeout)
    return process


def start_redis(
    port: int,
    *extra: str,
    tls: bool = False,
    name: str = "redis-server",
    timeout: float = START_SECONDS,
    env: dict[str, str] | None = None,
    **options: Any,
) -> Process:
    """Start a private redis-server on 127.0.0.1:``port`` that keeps nothing on disk.

    ``extra`` are more redis-server options (e.g. ``--requirepass``); with ``tls`` the port
    is the TLS port and the plain one is off (pass the certificate options in ``extra``).
    """
    server = shutil.which("redis-server")
    if server is None:
        raise SupervisorError("redis-server is not installed")
    workdir = tempfile.mkdtemp(prefix="notifyproject-redis-")
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    ports = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
    args = [server, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", workdir, *extra]
    process = spawn(name, args, dict(os.environ) if env is None else env, **options)
    try:
        process.wait_for_port(port, timeout)
    except SupervisorError:
        process.stop()
        raise
    return process


def no_redis_message(url: str) -> str:
    """Explain what to do when no Redis answers and none can be started."""
    return (
        f"No Redis answers at {safe_url(url)}, and redis-server is not installed.\n"
        "  Install and start Redis (Debian/Ubuntu: sudo apt-get install redis-server;\n"
        "  macOS: brew install redis && brew services start redis), then try again,\n"
        "  or point REDIS_URL at a Redis that runs: REDIS_URL=redis://HOST:6379/0"
    )


def redis_or_private(url: str, **options: Any) -> tuple[str, Process | None]:
    """Return ``url`` if a Redis answers there, else start a private one and return its URL.

    The private redis-server (returned too, for the caller to stop) listens on a free
    port; SupervisorError explains what to do when none answers and none is installed.
    """
    if redis_answers(url):
        return url, None
    if shutil.which("redis-server") is None:
        raise SupervisorError(no_redis_message(url))
    port = free_port()
    process = start_redis(port, "--loglevel", "warning", **options)
    return f"redis://127.0.0.1:{port}/0", process


# ---- a whole stack -------------------------------------------------------------------------


class Supervisor:
    """Children run together and stopped together: the apps first, then what they use.

    ``install_signal_handlers`` turns SIGINT/SIGTERM/SIGHUP into a stop request that the
    caller's loop (``wait_until_stopped``) acts on, so the stopping never runs inside a
    signal handler.
    """

    def __init__(self, grace: float = STOP_GRACE_SECONDS) -> None:
        self.grace = grace
        self.infrastructure: list[Process] = []
        self.apps: list[Process] = []
        self.stop_signal: int | None = None

    def add(self, process: Process, *, infrastructure: bool = False) -> Process:
        """Supervise ``process``; ``infrastructure`` (Redis) is stopped after the apps."""
        (self.infrastructure if infrastructure else self.apps).append(process)
        return process

    def children(self) -> list[Process]:
        """Return every child, in start order."""
        return self.infrastructure + self.apps

    def install_signal_handlers(self) -> None:
        """Make SIGINT, SIGTERM and SIGHUP request a stop instead of killing this process."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.request_stop)

    def request_stop(self, signum: int, frame: FrameType | None = None) -> None:
        """Signal handler: remember the signal; the waiting loop does the stopping."""
        self.stop_signal = signum

    def stopping(self) -> bool:
        """Return whether a stop signal has arrived."""
        return self.stop_signal is not None

    def check(self, stage: str = "unexpectedly") -> None:
        """Raise SupervisorError naming the first child that has exited."""
        for child in self.children():
            if not child.alive():
                raise SupervisorError(
                    f"{child.name} exited {stage} ({describe_exit(child.returncode)})."
                )

    def wait_until_stopped(self, poll: float = 0.2) -> int:
        """Block until a stop signal (return it) or a child's exit (SupervisorError)."""
        while self.stop_signal is None:
            self.check()
            time.sleep(poll)
        return self.stop_signal

    def stop(self) -> list[Process]:
        """Stop the apps, then the infrastructure; return the children that had to be killed."""
        return stop_all(self.apps, self.grace) + stop_all(self.infrastructure, self.grace)
