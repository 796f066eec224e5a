"""Passwords in REDIS_URL and DATABASE_URL never reach the logs, driven for real.

The listener names its Redis when it connects and when it loses it; the publisher logs each
PUBLISH that fails; the health command reports the database and Redis it could not reach.
Each runs here against a real password-protected Redis or a refused port, and the captured
output is searched for the password.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

from notifications import publisher
from notifications.listener import NotificationListener
from tests import processes

# A test password, searched for in the logs.
PASSWORD = "hunter2-never-logged"
# Both ways a Redis URL carries a password: requirepass alone, and an ACL user's.
URL_TEMPLATES = {
    "password only": "redis://:{password}@127.0.0.1:{port}/0",
    "user and password": "redis://default:{password}@127.0.0.1:{port}/0",
}


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture every level of the app's loggers, whatever the site's LOGGING says.

    The demo's LOGGING stops ``notifications`` records at its own handler (propagate off),
    so caplog's root handler is attached to that logger directly.
    """
    app_logger = logging.getLogger("notifications")
    app_logger.addHandler(caplog.handler)
    previous = app_logger.level
    app_logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    app_logger.setLevel(previous)
    app_logger.removeHandler(caplog.handler)


def notifications_with(url: str, **extra: object) -> override_settings:
    return override_settings(
        NOTIFICATIONS={
            **settings.NOTIFICATIONS,
            "REDIS_URL": url,
            "RECONNECT_MIN_DELAY": 0.1,
            "RECONNECT_MAX_DELAY": 0.2,
            **extra,
        }
    )


async def wait_for_text(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in caplog.text:
        if time.monotonic() > deadline:
            raise AssertionError(f"never logged {text!r}:\n{caplog.text}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("template", URL_TEMPLATES.values(), ids=URL_TEMPLATES.keys())
@pytest.mark.django_db(transaction=True)
async def test_the_listener_never_logs_the_redis_password(template, captured):
    port = processes.free_port()
    redis_server = await sync_to_async(processes.start_redis)(port, "--requirepass", PASSWORD)
    url = template.format(password=PASSWORD, port=port)
    try:
        with notifications_with(url):
            listener = NotificationListener(handle_signals=False)
            task = asyncio.create_task(listener.run())
            try:
                await wait_for_text(captured, "Subscribed to")  # the connect line
                # Redis goes away: the lost-connection line and the refused reconnects.
                await sync_to_async(redis_server.stop)()
                await wait_for_text(captured, "reconnecting")
                await asyncio.sleep(0.5)  # a few refused reconnects, each logged
            finally:
                listener.stop()
                await asyncio.wait_for(task, timeout=10)
    finally:
        await sync_to_async(redis_server.stop)()
    assert captured.text.count("reconnecting") >= 2
    assert PASSWORD not in captured.text
    # The lines still say where Redis is: the host and port, without the secret.
    assert f"127.0.0.1:{port}" in captured.text


@pytest.mark.parametrize("template", URL_TEMPLATES.values(), ids=URL_TEMPLATES.keys())
@pytest.mark.django_db
def test_a_failed_publish_never_logs_the_redis_password(template, captured):
    url = template.format(password=PASSWORD, port=processes.free_port())  # nothing listens
    with notifications_with(url, PUBLISH_BACKOFF=0.0):
        publisher.reset()
        try:
            assert publisher._publish_now_unsafe(12345) is False
        finally:
            publisher.reset()
    assert "Could not publish notification 12345" in captured.text
    assert PASSWORD not in captured.text


def test_the_health_command_never_prints_a_database_or_redis_password():
    """Run it as an operator does, with both services refusing: exit 1, no password."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        # pool=0: with the pool, the command waits out psycopg_pool's 30 s getconn timeout
        # before it reports the database down (what it prints is the same).
        "DATABASE_URL": (
            f"postgres://notify:{PASSWORD}@127.0.0.1:{processes.free_port()}/notify?pool=0"
        ),
        "TEST_REDIS_URL": f"redis://default:{PASSWORD}@127.0.0.1:{processes.free_port()}/0",
        "NOTIFICATIONS_LOG_LEVEL": "DEBUG",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "notifications_health", "--json"],
        cwd=processes.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert '"database": "error' in result.stdout, output
    assert '"redis": "error' in result.stdout, output
    assert PASSWORD not in output
