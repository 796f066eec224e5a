"""System checks for the wiring a host site can get silently wrong, and REDIS_URL's default."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core import checks as django_checks
from django.test import override_settings

from notifications import checks, conf
from notifications.setup import channel_layers, sqlite_database

LAYER_URL = "redis://127.0.0.1:6379/15"


def wiring_ids() -> list[str]:
    return sorted(message.id for message in checks.check_wiring())


def all_ids() -> list[str]:
    return sorted(
        message.id
        for message in django_checks.run_checks(include_deployment_checks=False)
        if message.id and message.id.startswith("notifications.")
    )


def test_the_test_settings_are_clean() -> None:
    assert wiring_ids() == []


def test_every_wiring_message_has_a_hint_and_none_is_an_error() -> None:
    with override_settings(
        ALLOWED_HOSTS=["*"],
        ASGI_APPLICATION=None,
        DEBUG=True,
        NOTIFICATIONS={"REDIS_URL": "redis://elsewhere.example:6379/0"},
        CHANNEL_LAYERS=channel_layers(LAYER_URL),
    ):
        messages = checks.check_wiring()
    assert {message.id for message in messages} >= {
        "notifications.W005",
        "notifications.W006",
        "notifications.W007",
    }
    assert all(message.hint for message in messages)
    assert not any(message.is_serious() for message in messages)


# ---- INSTALLED_APPS ----------------------------------------------------------------------


def without(app: str) -> list[str]:
    return [name for name in settings.INSTALLED_APPS if name != app]


def test_channels_not_installed_is_i002() -> None:
    """Informational: the consumer and the layer work without it (channels is a library)."""
    with override_settings(INSTALLED_APPS=without("channels")):
        ids = wiring_ids()
    assert ids == ["notifications.I002"]


def test_daphne_not_installed_is_i001_with_debug_only() -> None:
    """runserver then serves no WebSockets; production runs daphne or uvicorn itself."""
    with override_settings(INSTALLED_APPS=without("daphne"), DEBUG=True):
        assert wiring_ids() == ["notifications.I001"]
    with override_settings(INSTALLED_APPS=without("daphne"), DEBUG=False):
        assert wiring_ids() == []


def test_info_messages_do_not_fail_check() -> None:
    with override_settings(INSTALLED_APPS=without("daphne"), DEBUG=True):
        messages = checks.check_wiring()
    assert [message.level for message in messages] == [django_checks.INFO]


# ---- ASGI_APPLICATION --------------------------------------------------------------------


def test_no_asgi_application_is_w006() -> None:
    with override_settings(ASGI_APPLICATION=None):
        assert wiring_ids() == ["notifications.W006"]
    with override_settings():
        del settings.ASGI_APPLICATION
        assert wiring_ids() == ["notifications.W006"]


# ---- ALLOWED_HOSTS -----------------------------------------------------------------------


@pytest.mark.parametrize("hosts", [["*"], ["example.com", "*"]])
def test_star_in_allowed_hosts_is_w005(hosts: list[str]) -> None:
    with override_settings(ALLOWED_HOSTS=hosts):
        assert wiring_ids() == ["notifications.W005"]


@pytest.mark.parametrize("hosts", [["example.com"], [".example.com", "localhost"], []])
def test_named_allowed_hosts_are_fine(hosts: list[str]) -> None:
    with override_settings(ALLOWED_HOSTS=hosts):
        assert wiring_ids() == []


# ---- publishing and the channel layer on one Redis ---------------------------------------


def redis_ids(notifications: Any, layers: Any) -> list[str]:
    with override_settings(NOTIFICATIONS=notifications, CHANNEL_LAYERS=layers):
        return [m.id for m in checks.check_wiring() if m.id == "notifications.W007"]


def test_explicit_redis_url_on_another_server_is_w007() -> None:
    layers = channel_layers(LAYER_URL)
    assert redis_ids({"REDIS_URL": "redis://redis.example.com:6379/0"}, layers) == [
        "notifications.W007"
    ]
    assert redis_ids({"REDIS_URL": "redis://127.0.0.1:6380/15"}, layers) == ["notifications.W007"]


@pytest.mark.parametrize(
    "url",
    [
        LAYER_URL,
        "redis://127.0.0.1:6379/0",  # another database of one server: pub/sub ignores it
        "redis://localhost:6379/15",  # one server under another name
        "redis://:secret@127.0.0.1/3",  # the default port
    ],
)
def test_explicit_redis_url_on_the_layers_server_is_fine(url: str) -> None:
    assert redis_ids({"REDIS_URL": url}, channel_layers(LAYER_URL)) == []


def test_redis_url_on_any_shard_is_fine() -> None:
    layers = channel_layers(["redis://shard-a:6379/0", "redis://shard-b:6379/0"])
    assert redis_ids({"REDIS_URL": "redis://shard-b:6379/0"}, layers) == []
    assert redis_ids({"REDIS_URL": "redis://shard-c:6379/0"}, layers) == ["notifications.W007"]


def test_no_w007_when_the_layer_cannot_be_compared() -> None:
    sentinel = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"sentinels": [("s1", 26379)], "master_name": "m"}]},
        }
    }
    in_memory = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    url = {"REDIS_URL": "redis://redis.example.com:6379/0"}
    assert redis_ids(url, sentinel) == []
    assert redis_ids(url, in_memory) == []


def test_unset_redis_url_is_no_warning_and_follows_the_layer() -> None:
    layers = channel_layers("redis://redis.example.com:6380/4")
    assert redis_ids({}, layers) == []
    assert redis_ids(None, layers) == []
    with override_settings(NOTIFICATIONS={"CHANNEL": "site"}, CHANNEL_LAYERS=layers):
        assert conf.get().REDIS_URL == "redis://redis.example.com:6380/4"
        assert conf.get().REDIS_OPTIONS == {}
    # The cache follows CHANNEL_LAYERS changes, and the override's end.
    with override_settings(NOTIFICATIONS={}, CHANNEL_LAYERS=channel_layers("redis://b:1/0")):
        assert conf.get().REDIS_URL == "redis://b:1/0"
    assert settings.NOTIFICATIONS["REDIS_URL"] == conf.get().REDIS_URL


def test_the_default_takes_the_first_shard_and_its_tls_options() -> None:
    layers = channel_layers(
        ["rediss://:pw@redis-a.example.com:6380/0", "rediss://redis-b.example.com:6380/0"],
        options={"ssl_ca_certs": "/etc/ssl/redis-ca.pem", "password": "pw", "retry": None},
    )
    with override_settings(NOTIFICATIONS={}, CHANNEL_LAYERS=layers):
        assert conf.get().REDIS_URL == "rediss://:pw@redis-a.example.com:6380/0"
        # Who and where carry over; the layer's timeouts and pool size do not.
        assert conf.get().REDIS_OPTIONS == {
            "ssl_ca_certs": "/etc/ssl/redis-ca.pem",
            "password": "pw",
        }
        assert conf.redis_kwargs(socket_timeout=2)["socket_timeout"] == 2
    with override_settings(
        NOTIFICATIONS={"REDIS_OPTIONS": {"ssl_cert_reqs": "none"}}, CHANNEL_LAYERS=layers
    ):
        assert conf.get().REDIS_URL == "rediss://:pw@redis-a.example.com:6380/0"
        assert conf.get().REDIS_OPTIONS == {"ssl_cert_reqs": "none"}


def test_an_explicit_redis_url_keeps_its_own_options() -> None:
    layers = channel_layers("rediss://r.example.com:6380/0", options={"ssl_ca_certs": "/ca.pem"})
    with override_settings(
        NOTIFICATIONS={"REDIS_URL": "redis://own:6379/0"}, CHANNEL_LAYERS=layers
    ):
        assert conf.get().REDIS_URL == "redis://own:6379/0"
        assert conf.get().REDIS_OPTIONS == {}


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (("redis.example.com", 6390), "redis://redis.example.com:6390/0"),
        ({"address": ("redis.example.com", 6390)}, "redis://redis.example.com:6390/0"),
        ("redis://r.example.com:6379/2", "redis://r.example.com:6379/2"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_every_layer_host_form_gives_a_default(host: Any, url: str) -> None:
    layers = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [host]}}
    }
    with override_settings(NOTIFICATIONS={}, CHANNEL_LAYERS=layers):
        assert url == conf.get().REDIS_URL


def test_no_layer_host_leaves_the_documented_default() -> None:
    sentinel = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"sentinels": [("s1", 26379)], "master_name": "m"}]},
        }
    }
    for layers in ({}, sentinel, {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        with override_settings(NOTIFICATIONS={}, CHANNEL_LAYERS=layers):
            assert conf.DEFAULTS["REDIS_URL"] == conf.get().REDIS_URL


# ---- SQLite ------------------------------------------------------------------------------


def test_sqlite_without_immediate_is_w008() -> None:
    stock = {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}
    deferred = {**stock, "OPTIONS": {"transaction_mode": "DEFERRED"}}
    messages = checks.sqlite_messages({"default": stock, "other": deferred})
    assert [message.id for message in messages] == ["notifications.W008"] * 2
    assert "'default'" in messages[0].msg and "'other'" in messages[1].msg
    assert all("sqlite_database" in message.hint for message in messages)


def test_sqlite_with_immediate_and_other_databases_are_fine() -> None:
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "site"}
    lower = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "x",
        "OPTIONS": {"transaction_mode": "immediate"},
    }
    databases = {"default": sqlite_database("/srv/site/db.sqlite3"), "pg": postgres, "b": lower}
    assert checks.sqlite_messages(databases) == []


def test_w008_runs_on_the_real_settings() -> None:
    assert checks.sqlite_messages(settings.DATABASES) == []
    assert "notifications.W008" not in all_ids()
