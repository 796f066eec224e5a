"""notifications.setup and notifications.asgi: what host sites call instead of copying the demo."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.db.utils import ConnectionHandler
from django.test import override_settings

from notifications import auth, checks
from notifications.asgi import websocket_application
from notifications.setup import (
    channel_layers,
    sentinel_address,
    sentinel_master_options,
    sqlite_database,
    tune_garbage_collector,
)
from notifyproject.env import parse_database_url
from tests.conftest import asession_cookie
from tests.factories import UserFactory
from tests.processes import ROOT

# ---- channel_layers ----------------------------------------------------------------------


def test_one_url_gives_the_safe_layer() -> None:
    layers = channel_layers("redis://127.0.0.1:6379/0")
    assert layers == {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": "redis://127.0.0.1:6379/0",
                        "socket_timeout": None,
                        "socket_connect_timeout": 5,
                        "max_connections": 1000,
                    }
                ],
                "capacity": 5000,
                "expiry": 60,
                "prefix": "asgi",
            },
        }
    }


@pytest.mark.parametrize(
    "layers",
    [
        channel_layers("redis://127.0.0.1:6379/0"),
        channel_layers(["redis://a:6379/0", "redis://b:6379/0"]),
        channel_layers("rediss://r:6380/0", options={"ssl_ca_certs": "/ca.pem"}),
    ],
)
def test_the_helpers_output_passes_the_apps_own_checks(layers: dict) -> None:
    """No W002 (socket timeout), W003 (plain address) or W004 (capacity), even without DEBUG."""
    with override_settings(CHANNEL_LAYERS=layers, DEBUG=False):
        assert checks.check_channel_layer() == []


@pytest.mark.parametrize(
    "urls",
    [
        ["redis://a:6379/0", "redis://b:6379/1"],
        ("redis://a:6379/0", "redis://b:6379/1"),
        "redis://a:6379/0,redis://b:6379/1",
        " redis://a:6379/0 , redis://b:6379/1 ,",
    ],
)
def test_several_urls_are_shards_in_order(urls) -> None:
    hosts = channel_layers(urls)["default"]["CONFIG"]["hosts"]
    assert [host["address"] for host in hosts] == ["redis://a:6379/0", "redis://b:6379/1"]
    assert all(host["socket_timeout"] is None for host in hosts)


def test_keyword_arguments_and_options_pass_through() -> None:
    layers = channel_layers(
        ["rediss://a:6380/0", "rediss://b:6380/0"],
        max_connections=50,
        capacity=20_000,
        expiry=30,
        prefix="site-a",
        options={"ssl_ca_certs": "/etc/ssl/ca.pem", "ssl_cert_reqs": "required"},
    )
    config = layers["default"]["CONFIG"]
    assert (config["capacity"], config["expiry"], config["prefix"]) == (20_000, 30, "site-a")
    for host in config["hosts"]:
        assert host["max_connections"] == 50
        assert host["ssl_ca_certs"] == "/etc/ssl/ca.pem"
        assert host["ssl_cert_reqs"] == "required"


def test_options_may_override_a_safe_default_on_purpose() -> None:
    host = channel_layers("redis://a", options={"socket_connect_timeout": 1})["default"]
    assert host["CONFIG"]["hosts"][0]["socket_connect_timeout"] == 1


@pytest.mark.parametrize("urls", ["", " , ", []])
def test_no_url_is_refused(urls) -> None:
    with pytest.raises(ValueError, match="at least one Redis URL"):
        channel_layers(urls)


async def test_the_layer_works_against_the_real_redis() -> None:
    config = channel_layers(os.environ["REDIS_URL"], prefix=f"test-setup-{uuid.uuid4().hex}")
    layer = RedisChannelLayer(**config["default"]["CONFIG"])
    try:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "hello.world"})
        assert await layer.receive(channel) == {"type": "hello.world"}
    finally:
        await layer.flush()
        await layer.close_pools()


def test_the_demo_settings_use_the_helper() -> None:
    from notifyproject import settings as project

    assert (
        channel_layers(
            os.environ.get("CHANNEL_LAYER_URLS", project.REDIS_URL),
            prefix=os.environ["CHANNELS_PREFIX"],
            options=project.REDIS_OPTIONS,
        )
        == project.CHANNEL_LAYERS
    )


# ---- sqlite_database ---------------------------------------------------------------------


def test_sqlite_database_options(tmp_path: Path) -> None:
    entry = sqlite_database(tmp_path / "site.sqlite3")
    assert entry == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(tmp_path / "site.sqlite3"),
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
    assert sqlite_database(str(tmp_path / "x"), timeout=5)["OPTIONS"]["timeout"] == 5
    assert checks.sqlite_messages({"default": entry}) == []


def test_sqlite_database_really_opens_in_wal_mode(tmp_path: Path, django_db_blocker) -> None:
    connections = ConnectionHandler({"default": sqlite_database(tmp_path / "site.sqlite3")})
    connection = connections["default"]
    try:
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
        assert connection.transaction_mode == "IMMEDIATE"
    finally:
        connection.close()


def test_parse_database_url_still_builds_the_same_entry(tmp_path: Path) -> None:
    assert parse_database_url("sqlite:///db.sqlite3", base_dir=tmp_path) == sqlite_database(
        tmp_path / "db.sqlite3"
    )
    assert parse_database_url("sqlite:////srv/db.sqlite3", base_dir=tmp_path) == sqlite_database(
        "/srv/db.sqlite3"
    )


# ---- tune_garbage_collector --------------------------------------------------------------


@pytest.fixture
def restored_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_tune_garbage_collector_freezes_and_raises_the_threshold() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    tune_garbage_collector()
    assert gc.get_threshold() == (700, 10, 100)
    assert gc.get_freeze_count() > 0
    tune_garbage_collector((1000, 20, 50))
    assert gc.get_threshold() == (1000, 20, 50)


# ---- websocket_application ---------------------------------------------------------------


async def handshake(app, user, origin: str | None) -> tuple[WebsocketCommunicator, bool]:
    headers = [(b"host", b"localhost")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if user is not None:
        headers.append((b"cookie", (await asession_cookie(user)).encode()))
    communicator = WebsocketCommunicator(app, "/ws/notifications/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


@pytest.mark.django_db(transaction=True)
async def test_websocket_application_accepts_a_logged_in_user() -> None:
    user = await sync_to_async(UserFactory)()
    communicator, connected = await handshake(websocket_application(), user, "http://localhost")
    assert connected
    assert await communicator.receive_json_from(timeout=5) == {
        "type": "hello",
        "unread": 0,
        "last_id": None,
    }
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_websocket_application_closes_an_anonymous_socket_with_4401() -> None:
    communicator, connected = await handshake(websocket_application(), None, "http://localhost")
    assert connected
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", ["http://evil.example", "null", None])
async def test_websocket_application_refuses_before_reading_the_session(
    origin: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await sync_to_async(UserFactory)()

    async def must_not_run(*args, **kwargs):
        raise AssertionError("a refused handshake read the session")

    monkeypatch.setattr(auth, "aload_handshake", must_not_run)
    _, connected = await handshake(websocket_application(), user, origin)
    assert not connected


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_before_django_is_set_up_the_import_works_and_the_call_says_what_to_do() -> None:
    result = run_python(
        """
        from notifications.asgi import websocket_application
        try:
            websocket_application()
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImproperlyConfigured")
    assert "get_asgi_application()" in result.stdout


def test_the_demo_asgi_loads_in_a_site_without_serve_static(tmp_path: Path) -> None:
    """Copying the demo's asgi.py into a host site no longer fails on SERVE_STATIC."""
    (tmp_path / "host_settings.py").write_text(
        "from tests.settings import *  # noqa\ndel SERVE_STATIC\n"
    )
    result = run_python(
        """
        from django.conf import settings
        import notifyproject.asgi as asgi
        assert not hasattr(settings, "SERVE_STATIC")
        print(type(asgi.application).__name__)
        """,
        DJANGO_SETTINGS_MODULE="host_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ProtocolTypeRouter"


# ---- channel_layers with Sentinel ---------------------------------------------------------


def test_the_sentinel_form_gives_channels_redis_its_sentinel_host() -> None:
    layers = channel_layers(
        sentinels="s1:26379, s2:26380",
        master_name="notify",
        options={"password": "pw", "db": 1},
        sentinel_options={"password": "spw"},
        max_connections=50,
    )
    (host,) = layers["default"]["CONFIG"]["hosts"]
    assert host == {
        "sentinels": [("s1", 26379), ("s2", 26380)],
        "master_name": "notify",
        "socket_timeout": None,
        "socket_connect_timeout": 5,
        "max_connections": 50,
        "password": "pw",
        "db": 1,
        "sentinel_kwargs": {"socket_timeout": 5, "socket_connect_timeout": 5, "password": "spw"},
    }
    with override_settings(CHANNEL_LAYERS=layers, DEBUG=False):
        assert checks.check_channel_layer() == []


def test_channels_redis_builds_a_sentinel_pool_from_it() -> None:
    from channels_redis.utils import create_pool
    from redis.asyncio.sentinel import SentinelConnectionPool

    layers = channel_layers(sentinels=[("s1", 26379)], master_name="notify")
    layer = RedisChannelLayer(**layers["default"]["CONFIG"])
    pool = create_pool(layer.hosts[0])
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "notify"
    assert pool.connection_kwargs["socket_timeout"] is None
    assert pool.max_connections == 1000
    sentinel = pool.sentinel_manager.sentinels[0]
    assert sentinel.connection_pool.connection_kwargs["socket_timeout"] == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sentinels": "s1:26379"},
        {"master_name": "m"},
        {"sentinels": "", "master_name": "m"},
        {"sentinels": "s1:26379", "master_name": "m", "urls": "redis://a"},
    ],
)
def test_an_incomplete_sentinel_form_is_refused(kwargs: dict) -> None:
    urls = kwargs.pop("urls", None)
    with pytest.raises(ValueError, match="Sentinel"):
        channel_layers(urls, **kwargs)


@pytest.mark.parametrize(
    ("entry", "address"),
    [
        ("s1:26379", ("s1", 26379)),
        (" s1:26380 ", ("s1", 26380)),
        ("s1", ("s1", 26379)),
        ("[::1]:26379", ("::1", 26379)),
        (("s1", 26381), ("s1", 26381)),
    ],
)
def test_sentinel_addresses_in_every_form(entry, address) -> None:
    assert sentinel_address(entry) == address


def test_sentinel_master_options_keep_what_a_url_says_besides_where() -> None:
    assert sentinel_master_options("rediss://u:p%40w@host:6380/4") == {
        "db": 4,
        "password": "p@w",
        "username": "u",
        "ssl": True,
    }
    assert sentinel_master_options("redis://host:6379") == {}
