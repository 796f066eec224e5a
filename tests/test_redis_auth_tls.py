"""The whole pipeline through a password-protected Redis and through Redis over TLS."""

import asyncio
import json
import subprocess
import tempfile
from pathlib import Path

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

from notifications import publisher
from notifications.services import notify
from tests import processes
from tests.conftest import session_cookie
from tests.factories import UserFactory

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PASSWORD = "s3cret!pw"


async def deliver_through(url: str, env: dict[str, str], options: dict) -> None:
    """Save in this process, dispatch in a listener process, push through daphne."""
    user = await sync_to_async(UserFactory)()
    child_env = {**env, "TEST_REDIS_URL": url}
    port = processes.free_port()
    daphne = await sync_to_async(processes.start_daphne)(port, child_env)
    listener = await sync_to_async(processes.start_listener)(child_env)
    try:
        cookie = await sync_to_async(session_cookie)(user)
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/notifications/",
            origin=f"http://127.0.0.1:{port}",
            additional_headers={"Cookie": cookie},
        ) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
            overrides = {**settings.NOTIFICATIONS, "REDIS_URL": url, "REDIS_OPTIONS": options}
            with override_settings(NOTIFICATIONS=overrides):
                publisher.reset()
                notification = await sync_to_async(notify)(user, "Through a locked Redis")
                # The PUBLISH went through too: no "Could not publish" fallback to the sweep.
                assert publisher._skip_until == 0.0
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["type"] == "notification":
                    break
            assert frame["notification"]["id"] == notification.pk
    finally:
        await sync_to_async(listener.stop)()
        await sync_to_async(daphne.stop)()
        publisher.reset()


async def test_password_protected_redis(live_env):
    port = processes.free_port()
    redis_proc = await sync_to_async(processes.start_redis)(port, "--requirepass", PASSWORD)
    try:
        url = f"redis://:{PASSWORD.replace('!', '%21')}@127.0.0.1:{port}/0"
        await deliver_through(url, live_env, {})
    finally:
        redis_proc.stop()


@pytest.fixture(scope="module")
def tls_files():
    directory = Path(tempfile.mkdtemp(prefix="notifyproject-tls-"))
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(directory / "key.pem"),
            "-out",
            str(directory / "cert.pem"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return directory


async def test_redis_over_tls(live_env, tls_files):
    port = processes.free_port()
    cert, key = str(tls_files / "cert.pem"), str(tls_files / "key.pem")
    redis_proc = await sync_to_async(processes.start_redis)(
        port,
        *("--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert),
        *("--tls-auth-clients", "no"),
        tls=True,
    )
    try:
        url = f"rediss://127.0.0.1:{port}/0"
        await deliver_through(url, {**live_env, "REDIS_TLS_CA_FILE": cert}, {"ssl_ca_certs": cert})
    finally:
        redis_proc.stop()
