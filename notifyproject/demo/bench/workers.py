"""Child processes of the benchmark: started in their own session, dying with the benchmark.

The supervisor (``notifyproject.demo.supervisor``) starts and stops them; ``Worker`` wraps a
child that speaks JSON lines (one command on stdin, one reply on stdout): the socket clients
and the creators.
"""

from __future__ import annotations

import contextlib
import json
import queue
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from notifyproject.demo.supervisor import SupervisorError, spawn, tail


class BenchError(SupervisorError):
    """A failure of the benchmark itself, with a message meant for the person running it."""


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


# Every benchmark child runs in a session of its own (Ctrl-C reaches only the benchmark, which
# stops it) and gets SIGTERM when the benchmark dies, even by SIGKILL.
CHILD_OPTIONS: dict[str, Any] = {"own_group": True, "die_with_parent": True}


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
        self.process = spawn(
            name,
            args,
            env,
            cwd=cwd,
            output=log_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            **CHILD_OPTIONS,
        )
        self.popen = self.process.popen
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
            self.process.stop(timeout=5.0)
        if self.popen.stdout is not None:
            with contextlib.suppress(OSError):
                self.popen.stdout.close()
        self._reader.join(2)
