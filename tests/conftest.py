"""Fixtures shared by the suite: users, sockets through the real ASGI app, the listener."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from notifications import publisher
from notifications.listener import NotificationListener
from tests import processes
from tests.factories import UserFactory

# tests/custom_user needs its own user model: collected only under tests.settings_custom_user.
collect_ignore_glob = [] if settings.AUTH_USER_MODEL == "accounts.User" else ["custom_user"]


@pytest.fixture(scope="session", autouse=True)
def _clean_redis_keys() -> Iterator[None]:
    """Remove every Redis key this run created (channel layer, groups), and nothing else."""
    yield
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    channel = settings.NOTIFICATIONS["CHANNEL"]
    keys = [
        *client.scan_iter(match=f"{prefix}*", count=1000),
        *client.scan_iter(match=f"{channel}*", count=1000),  # listener heartbeats
    ]
    if keys:
        client.delete(*keys)
    client.close()
    # SQLite's WAL side files outlive the test database Django removes.
    test_name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if test_name:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{test_name}{suffix}")


@pytest.fixture(autouse=True)
def _fresh_publisher() -> Iterator[None]:
    """Each test starts with a new PUBLISH client and no Redis-down back-off."""
    publisher.reset()
    yield
    publisher.reset()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield client
    client.close()


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


asession_cookie = database_sync_to_async(session_cookie)


async def open_socket(
    user=None, *, origin: str | None = "http://localhost", path: str = "/ws/notifications/"
) -> WebsocketCommunicator:
    """Connect through the project's real ASGI stack (origin check, sessions, auth)."""
    from notifyproject.asgi import application

    headers = [(b"host", b"localhost")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if user is not None:
        headers.append((b"cookie", (await asession_cookie(user)).encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def connect(user, **kwargs) -> tuple[WebsocketCommunicator, dict]:
    """Open a socket for ``user`` and return it with its hello frame."""
    communicator = await open_socket(user, **kwargs)
    connected, code = await communicator.connect(timeout=5)
    assert connected, f"refused with {code}"
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "hello"
    return communicator, hello


async def receive_type(
    communicator: WebsocketCommunicator, frame_type: str, timeout: float = 5
) -> dict:
    """Receive frames until one of ``frame_type`` arrives (others are skipped)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        frame = await communicator.receive_json_from(timeout=max(remaining, 0.01))
        if frame["type"] == frame_type:
            return frame


@pytest.fixture
async def listener(transactional_db) -> AsyncIterator[NotificationListener]:
    """The real listener, subscribed to the real Redis, running in this event loop."""
    instance = NotificationListener(handle_signals=False)
    task = asyncio.create_task(instance.run())
    for _ in range(200):
        if instance.subscribed is not None and instance.subscribed.is_set():
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.025)
    else:
        raise TimeoutError("the listener never subscribed")
    yield instance
    instance.stop()
    await asyncio.wait_for(task, timeout=10)


@pytest.fixture(scope="session", autouse=True)
def _drop_stray_connections(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Before the test database is dropped, end connections other threads left open.

    Threads of asgiref's executors keep their own connections; PostgreSQL refuses to drop
    a database anyone is connected to.
    """
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def _live_children() -> list[int]:
    """Return the pids of this process's daphne and listener children still running."""
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as children:
                pids.extend(int(pid) for pid in children.read().split())
    live = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                args = cmdline.read().decode("utf-8", "replace")
        except OSError:
            continue
        if "daphne" in args or "listen_notifications" in args:
            live.append(pid)
    return live


def _stop_children(pids: list[int], timeout: float = 10) -> None:
    """SIGTERM the given children, SIGKILL whichever has not exited by ``timeout``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:  # reaped already (by its Popen)
                break
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError, ChildProcessError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                break
            time.sleep(0.05)


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Close every alias's connection pool before the test databases are dropped.

    The suite runs PostgreSQL with the pool production uses; a pool keeps its connections
    open after every test, and PostgreSQL will not drop a database anyone is connected to.
    Children first (a daphne or listener a failed test left behind would reconnect through
    its own pool), then this process's pools. Declared after _drop_stray_connections, so it
    tears down before that fixture ends whatever other threads still hold.
    """
    yield
    from django.db import connections

    leftover = _live_children()
    if leftover:
        _stop_children(leftover)
    with django_db_blocker.unblock():
        for alias in connections:
            wrapper = connections[alias]
            wrapper.close()
            close_pool = getattr(wrapper, "close_pool", None)  # PostgreSQL only
            if close_pool is not None:
                close_pool()


@pytest.fixture(autouse=True)
def _renew_leaky_connection_pools(request) -> Iterator[None]:
    """After a test that left pooled connections checked out, give the next one a new pool.

    An async test runs in an event loop of its own; a database call it made on that loop's
    default executor keeps its connection checked out when the loop and its threads go
    away (the thread's connection is never closed, so never returned). A daphne process,
    whose threads live on, does not do this; a suite of hundreds of such tests would drain
    the pool and wait out its 30 s timeout. Measured on this suite: one connection per
    WebsocketCommunicator test. (The main thread keeps at most one.)
    """
    yield
    if "django_db_setup" in request.fixturenames:
        renew_leaky_pools()


def renew_leaky_pools() -> None:
    """Close any PostgreSQL pool with more than the main thread's connection checked out.

    Also for tests that run many event loops in one test (Hypothesis examples).
    """
    from django.db import connections

    for alias in connections:
        wrapper = connections[alias]
        if getattr(wrapper, "vendor", "") != "postgresql" or not wrapper.pool:
            continue
        stats = wrapper.pool.get_stats()
        if stats.get("pool_size", 0) - stats.get("pool_available", 0) > 1:
            wrapper.close_pool()


@pytest.fixture(scope="session")
def live_env(django_db_setup, django_db_blocker) -> dict[str, str]:
    """Environment for child processes that share the test database and Redis."""
    with django_db_blocker.unblock():
        return processes.child_env()


@pytest.fixture(scope="module")
def live_stack(live_env) -> Iterator[dict]:
    """A real daphne and a real listener, as separate processes, for one test module.

    Module-scoped so no background listener races the database flushes of other modules.
    """
    port = processes.free_port()
    daphne = processes.start_daphne(port, live_env)
    listener_proc = processes.start_listener(live_env)
    yield {
        "url": f"http://127.0.0.1:{port}",
        "port": port,
        "daphne": daphne,
        "listener": listener_proc,
        "env": live_env,
    }
    listener_proc.stop()
    daphne.stop()


@pytest.fixture(autouse=True)
def _let_live_listener_settle(request) -> Iterator[None]:
    """Before a live test's database flush, let the listener process finish its work.

    PostgreSQL's TRUNCATE and a dispatch transaction in flight can deadlock; waiting until
    nothing is left to dispatch keeps the flush from racing it.
    """
    if "live_stack" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    from notifications.models import Notification

    deadline = time.monotonic() + 5
    while Notification.objects.due().exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
