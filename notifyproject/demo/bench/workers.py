"""Child processes of the benchmark: started in their own session, dying with the benchmark.

``spawn`` starts any child with its output in a log file; ``Worker`` wraps a child that speaks
JSON lines (one command on stdin, one reply on stdout): the socket clients and the creators.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import queue
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

PR_SET_PDEATHSIG = 1


class BenchError(RuntimeError):
    """A failure of the benchmark itself, with a message meant for the person running it."""


def _load_libc() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


# Loaded before any fork: the child only calls into it.
_LIBC = _load_libc() if os.uname().sysname == "Linux" else None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the benchmark dies, even by SIGKILL."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def spawn(
    args: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in a new session (Ctrl-C reaches only the benchmark, which stops it).

    Its stderr (and stdout unless piped) goes to ``log_path``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            args,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def terminate(popen: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """Stop a child: SIGCONT (in case it is paused), SIGTERM, then SIGKILL; return its status."""
    if popen.poll() is None:
        for sig in (signal.SIGCONT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(sig)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(5)
    return popen.returncode


def tail(path: Path, lines: int = 20) -> str:
    """Return the last lines of a log file (empty if it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16_000))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Worker:
    """A child speaking JSON lines: ``request()`` sends one command and waits for its reply.

    Every wait is bounded; a child that dies or stays silent raises BenchError with the tail
    of its log. Closing its stdin tells it to exit.
    """

    def __init__(
        self, name: str, args: list[str], *, env: dict[str, str], cwd: Path, log_path: Path
    ):
        self.name = name
        self.log_path = log_path
        self.popen = spawn(
            args,
            env=env,
            cwd=cwd,
            log_path=log_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self._reader.start()
        self.hello: dict[str, Any] | None = None

    def _read(self) -> None:
        stream: BinaryIO | None = self.popen.stdout  # type: ignore[assignment]
        if stream is None:
            return
        for raw in stream:
            try:
                message = json.loads(raw)
            except ValueError:
                continue  # stray output; the log has the rest
            if isinstance(message, dict):
                self._replies.put(message)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, message: dict[str, Any]) -> None:
        stdin = self.popen.stdin
        if stdin is None or not self.alive():
            raise BenchError(f"{self.name} is not running:\n{tail(self.log_path)}")
        try:
            stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise BenchError(
                f"{self.name} stopped listening ({exc}):\n{tail(self.log_path)}"
            ) from exc

    def poll(self) -> dict[str, Any] | None:
        """Return a reply if one has arrived, else None (raise if the child died)."""
        return self._next(0.0)

    def _next(self, wait: float) -> dict[str, Any] | None:
        try:
            reply = self._replies.get(timeout=wait) if wait > 0 else self._replies.get_nowait()
        except queue.Empty:
            if self.alive():
                return None
            self._reader.join(1)
            try:
                reply = self._replies.get_nowait()
            except queue.Empty:
                raise BenchError(
                    f"{self.name} exited with status {self.popen.returncode}:\n"
                    f"{tail(self.log_path)}"
                ) from None
        if "error" in reply and len(reply) == 1:
            raise BenchError(f"{self.name} failed: {reply['error']}")
        return reply

    def receive(self, timeout: float, tick: Callable[[], None] | None = None) -> dict[str, Any]:
        """Wait up to ``timeout`` seconds for the next reply; ``tick`` runs about every second."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            reply = self._next(min(1.0, max(remaining, 0.001)))
            if reply is not None:
                return reply
            if time.monotonic() >= deadline:
                raise BenchError(f"{self.name} gave no answer within {timeout:.0f} s")
            if tick is not None:
                tick()

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(message)
        return self.receive(timeout)

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the child's first line, ``{"ready": true, ...}``."""
        if self.hello is None:
            reply = self.receive(timeout)
            if not reply.get("ready"):
                raise BenchError(f"{self.name} did not start: {reply}")
            self.hello = reply
        return self.hello

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the child to exit (stdin EOF), then terminate it if it does not."""
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            terminate(self.popen)
        if self.popen.stdout is not None:
            with contextlib.suppress(OSError):
                self.popen.stdout.close()
        self._reader.join(2)
