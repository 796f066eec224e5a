"""Fault-injection fixtures: a private redis-server per module, and a stack per test.

Every module gets its own ``redis-server`` on a free port, used by its child processes for
both pub/sub and the channel layer and by this process's publisher, so stopping, pausing or
restarting Redis never touches the Redis the rest of the suite shares. The ``stack`` fixture
starts listeners, daphne processes and bell clients on demand, and stops all of them (and
resumes anything paused) before the test's database flush.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings

from notifications import publisher
from notifications.models import Delivery, Notification
from tests import processes
from tests.conftest import session_cookie
from tests.faults.client import BellClient, ClientLoop

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from tests.faults.browser_pages import BellPage

# Every fault test starts real processes, takes seconds, and needs committed rows that
# other processes can see.
FAULT_TEST = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.django_db(transaction=True),
]
SMALL_CAPACITY_SETTINGS = "tests.faults.small_capacity_settings"
DISPATCHED_LINE = re.compile(r"Dispatched notification (\d+) ")


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str | Callable[[], str] = "the condition",
    interval: float = 0.05,
) -> float:
    """Poll ``predicate`` until it is true; return the seconds it took, or fail after timeout."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            detail = what() if callable(what) else what
            raise AssertionError(f"not true after {timeout:g} s: {detail}")
        time.sleep(interval)


# ---- Redis ------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this module's own, which tests may stop, pause and restart."""

    def __init__(self) -> None:
        self.port = processes.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: processes.Process | None = None
        self.paused = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.popen.poll() is None

    def start(self) -> None:
        self.proc = processes.start_redis(self.port)
        self.paused = False

    def stop(self) -> None:
        if self.proc is not None:
            self.resume()
            self.proc.stop()
            self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)  # the length of the outage, not a synchronisation
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets open and answers nothing (half-open)."""
        assert self.proc is not None
        self.proc.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            self.proc.signal(signal.SIGCONT)
            self.paused = False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ---- the stack ---------------------------------------------------------------------------


@dataclass
class Daphne:
    proc: processes.Process
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/notifications/"


@dataclass
class Stack:
    """Processes and clients of one test, all stopped by ``close()``."""

    redis: PrivateRedis
    env: dict[str, str]
    listeners: list[processes.Process] = field(default_factory=list)
    daphnes: list[Daphne] = field(default_factory=list)
    loop: ClientLoop | None = None
    paused: set[int] = field(default_factory=set)

    # ---- processes ----------------------------------------------------------------------

    def child_env(self, settings_module: str | None = None, **extra: str) -> dict[str, str]:
        env = dict(self.env)
        if settings_module:
            env["DJANGO_SETTINGS_MODULE"] = settings_module
        env.update(extra)
        return env

    def start_listener(
        self, *, settings_module: str | None = None, wait: bool = True
    ) -> processes.Process:
        proc = processes.start_listener(self.child_env(settings_module), wait=False)
        proc.name = f"listener-{len(self.listeners) + 1}"
        self.listeners.append(proc)
        if wait:
            proc.wait_for_line("Subscribed to", timeout=20)
        return proc

    def start_daphne(self, *, settings_module: str | None = None) -> Daphne:
        port = processes.free_port()
        proc = processes.start_daphne(port, self.child_env(settings_module))
        proc.name = f"daphne-{len(self.daphnes) + 1}"
        daphne = Daphne(proc, port)
        self.daphnes.append(daphne)
        return daphne

    def kill(self, proc: processes.Process) -> None:
        """SIGKILL: no clean-up, no finishing the batch; wait until it is gone."""
        proc.signal(signal.SIGKILL)
        proc.popen.wait(10)

    def pause(self, proc: processes.Process) -> None:
        proc.signal(signal.SIGSTOP)
        self.paused.add(proc.popen.pid)

    def resume(self, proc: processes.Process) -> None:
        proc.signal(signal.SIGCONT)
        self.paused.discard(proc.popen.pid)

    def layer_state(self) -> dict[str, int]:
        """Sizes of the channel layer's queues in Redis (messages waiting, per key)."""
        with contextlib.closing(self.redis.client()) as client:
            return {
                key.decode(): client.zcard(key)
                for key in client.scan_iter(count=1000)
                if client.type(key) == b"zset" and b"group" not in key
            }

    def all_output(self) -> str:
        procs = [*self.listeners, *(d.proc for d in self.daphnes)]
        if self.redis.proc is not None:
            procs.append(self.redis.proc)
        return "\n\n".join(f"--- {p.name} ---\n{p.output}" for p in procs)

    def wait_logged(self, ids: Iterable[int], timeout: float = 10.0) -> Counter[int]:
        """Wait until every listener's log names each of ``ids`` (logged after the push)."""
        wanted = set(ids)
        wait_until(
            lambda: wanted <= set(self.dispatch_counts()),
            timeout,
            lambda: f"never logged as dispatched: {sorted(wanted - set(self.dispatch_counts()))}",
        )
        return self.dispatch_counts()

    def dispatch_counts(self) -> Counter[int]:
        """How many times each notification id was dispatched, over every listener's log."""
        counts: Counter[int] = Counter()
        for proc in self.listeners:
            for line in list(proc.lines):
                match = DISPATCHED_LINE.search(line)
                if match:
                    counts[int(match.group(1))] += 1
        return counts

    # ---- bell clients -------------------------------------------------------------------

    def bell(self, user: Any, daphne: Daphne, *, wait: bool = True, **options: Any) -> BellClient:
        if self.loop is None:
            self.loop = ClientLoop()
        options.setdefault("name", f"{user.username}@{daphne.proc.name}")
        client = BellClient(daphne.ws_url, session_cookie(user), daphne.origin, **options)
        self.loop.start(client)
        if wait and not client.hello_seen.wait(15):
            raise AssertionError(f"{client.name} never got hello: {client.snapshot()}")
        return client

    # ---- the end ------------------------------------------------------------------------

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()
        self.redis.resume()
        every = [*self.listeners, *(d.proc for d in self.daphnes)]
        for proc in every:
            if proc.popen.pid in self.paused:
                proc.signal(signal.SIGCONT)
        self.paused.clear()
        # Listeners first: each finishes its batch, so the flush never races a dispatch.
        for proc in self.listeners:
            proc.stop()
        for daphne in self.daphnes:
            daphne.proc.stop()
        if not self.redis.running:
            self.redis.start()


CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture
def stack(
    request: pytest.FixtureRequest,
    private_redis: PrivateRedis,
    live_env: dict[str, str],
    transactional_db: None,
) -> Iterator[Stack]:
    """This test's processes, on the module's private Redis; this process publishes there too."""
    if not private_redis.running:
        private_redis.start()
    private_redis.resume()
    with contextlib.closing(private_redis.client()) as client:
        client.flushall()
    env = {**live_env, "TEST_REDIS_URL": private_redis.url}
    with override_settings(
        NOTIFICATIONS={**settings.NOTIFICATIONS, "REDIS_URL": private_redis.url}
    ):
        publisher.reset()
        instance = Stack(private_redis, env)
        try:
            yield instance
        finally:
            instance.close()
            publisher.reset()
            if request.node.stash.get(CALL_FAILED, False):
                print(instance.all_output())  # shown with the failure


# ---- data --------------------------------------------------------------------------------


def make_users(count: int, prefix: str = "u", **fields: Any) -> list[Any]:
    """Create ``count`` active users in one statement (no password: sockets use sessions)."""
    User = get_user_model()
    users = [
        User(username=f"{prefix}{i:04d}", email=f"{prefix}{i}@example.com", **fields)
        for i in range(count)
    ]
    User.objects.bulk_create(users)
    return list(User.objects.filter(username__startswith=prefix).order_by("pk"))


def delivered_ids(user: Any) -> set[int]:
    return set(Delivery.objects.filter(user=user).values_list("notification_id", flat=True))


def undispatched() -> int:
    """Notifications not yet dispatched, or dispatched but with rows still to write."""
    return Notification.objects.due().count() + Notification.objects.unrecorded().count()


# A busy web process of its own: creates notifications through the real save hook
# (``transaction.on_commit`` → ``PUBLISH``) at a steady rate and prints each new id.
CREATOR_SCRIPT = """
import json, sys, time
import django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from notifications.services import broadcast, notify
plan = json.load(open(sys.argv[1]))
rate = float(sys.argv[2])
users = {u.pk: u for u in get_user_model().objects.filter(
    pk__in=[t for kind, t, _ in plan if kind == "user"])}
groups = {g.pk: g for g in Group.objects.all()}
print("creator ready", flush=True)
started = time.monotonic()
for index, (kind, target, title) in enumerate(plan):
    delay = started + index / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    if kind == "user":
        made = notify(users[target], title)
    elif kind == "group":
        made = broadcast(title, audience="group", group=groups[target])
    else:
        made = broadcast(title, audience=kind)
    print(f"created {index} {made.pk}", flush=True)
print(f"creator done in {time.monotonic() - started:.3f} s", flush=True)
"""
CREATED_LINE = re.compile(r"^created (\d+) (\d+)$")
DONE_LINE = re.compile(r"^creator done in ([\d.]+) s$")


@dataclass(frozen=True)
class Spec:
    """One planned notification: ``kind`` is user, group, staff or all; ``target`` a pk."""

    kind: str
    target: int | None
    title: str


class Creator:
    """A child process creating the planned notifications at ``rate`` per second."""

    def __init__(self, stack: Stack, plan: list[Spec], rate: float) -> None:
        self.plan = plan
        self.rate = rate
        handle, self.plan_path = tempfile.mkstemp(prefix="faults-plan-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump([[s.kind, s.target, s.title] for s in plan], out)
        self.proc = processes.spawn(
            "creator",
            [sys.executable, "-c", CREATOR_SCRIPT, self.plan_path, str(rate)],
            stack.child_env(),
        )
        self.proc.wait_for_line("creator ready", timeout=30)
        self.started_at = time.monotonic()

    @property
    def created(self) -> list[int]:
        """Ids created so far, in plan order."""
        ids = []
        for line in list(self.proc.lines):
            match = CREATED_LINE.match(line)
            if match:
                ids.append(int(match.group(2)))
        return ids

    def count(self) -> int:
        return sum(1 for line in list(self.proc.lines) if line.startswith("created "))

    def wait_for(self, count: int, timeout: float) -> None:
        wait_until(
            lambda: self.count() >= count or self.proc.popen.poll() is not None,
            timeout,
            lambda: f"creator made {self.count()} of {count}",
        )
        if self.count() < count:
            raise AssertionError(f"the creator exited early:\n{self.proc.output}")

    def finish(self, timeout: float) -> list[int]:
        try:
            code = self.proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"creator still running after {timeout} s") from None
        self.proc.stop()
        assert code == 0, self.proc.output
        created = self.created
        assert len(created) == len(self.plan), self.proc.output
        return created

    @property
    def achieved_rate(self) -> float:
        """Notifications per second, over the creator's own run (its last line says how long)."""
        for line in reversed(list(self.proc.lines)):
            match = DONE_LINE.match(line)
            if match:
                return len(self.created) / float(match.group(1))
        return len(self.created) / max(1e-9, time.monotonic() - self.started_at)

    def halt(self) -> None:
        self.proc.stop()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.plan_path)


@pytest.fixture
def run_creator(stack: Stack) -> Iterator[Callable[..., Creator]]:
    """Start creator processes, always stopped before the stack stops and the database flushes."""
    creators: list[Creator] = []

    def start(plan: list[Spec], rate: float) -> Creator:
        creator = Creator(stack, plan, rate)
        creators.append(creator)
        return creator

    yield start
    for creator in creators:
        creator.halt()


def no_tracebacks(output: str) -> bool:
    return "Traceback" not in output and "DoesNotExist" not in output


@pytest.fixture(scope="module")
def browser(live_env: dict[str, str]) -> Iterator[Browser]:
    """One headless Chromium for a module's bell pages."""
    from tests.faults.browser_pages import chromium  # it imports this module

    with chromium() as instance:
        yield instance


@pytest.fixture
def pages(stack: Stack) -> Iterator[list[BellPage]]:
    """This test's bell pages, closed before the stack's daphnes stop."""
    opened: list[BellPage] = []
    yield opened
    for page in opened:
        page.close()
