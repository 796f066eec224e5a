"""conf: defaults, override_settings, and the system checks that name bad configuration."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from django.core import checks as django_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from notifications import checks, conf
from notifyproject import settings as project_settings
from tests.processes import ROOT

REDIS_LAYER = "channels_redis.core.RedisChannelLayer"
GOOD_HOST = {"address": "redis://127.0.0.1:6379/15", "socket_timeout": None}


def notification_check_ids() -> list[str]:
    return sorted(
        message.id
        for message in django_checks.run_checks(include_deployment_checks=False)
        if message.id and message.id.startswith("notifications.")
    )


def check_failure(**notifications: Any) -> str:
    """Run ``manage.py check`` with these NOTIFICATIONS; return the SystemCheckError text."""
    with override_settings(NOTIFICATIONS=notifications), pytest.raises(SystemCheckError) as exc:
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    return str(exc.value)


def layer_ids(layer: dict[str, Any] | None, *, debug: bool = False) -> list[str]:
    layers = {} if layer is None else {"default": layer}
    with override_settings(CHANNEL_LAYERS=layers, DEBUG=debug):
        return [message.id for message in checks.check_channel_layer()]


def redis_layer(**config: Any) -> dict[str, Any]:
    return {"BACKEND": REDIS_LAYER, "CONFIG": {"capacity": 5000, "hosts": [GOOD_HOST], **config}}


# ---- conf.get() --------------------------------------------------------------------------


def test_defaults_when_unset() -> None:
    # No channel layer either: an unset REDIS_URL would follow it (tests/test_checks.py).
    with override_settings(NOTIFICATIONS={}, CHANNEL_LAYERS={}):
        assert conf.get() == conf.NotificationSettings(**conf.DEFAULTS)
    with override_settings(NOTIFICATIONS=None, CHANNEL_LAYERS={}):
        assert conf.get() == conf.NotificationSettings(**conf.DEFAULTS)


def test_documented_defaults() -> None:
    with override_settings(NOTIFICATIONS={}, CHANNEL_LAYERS={}):
        settings = conf.get()
    assert settings.CHANNEL == "notifications"
    assert settings.REDIS_URL == "redis://127.0.0.1:6379/0"
    assert settings.CHUNK_SIZE == 10_000
    assert settings.MAX_SYNC == 200
    assert settings.MAX_IDS == 500
    assert settings.MAX_FRAME_BYTES == 64 * 1024
    assert settings.WELCOME_NEW_USERS is True
    assert settings.NOTIFY_GROUP_JOINS is True


def test_every_default_is_valid() -> None:
    assert conf.problems(dict(conf.DEFAULTS)) == []
    assert set(conf.DEFAULTS) == set(conf.NotificationSettings.__dataclass_fields__)


def test_override_settings_takes_effect_and_is_undone() -> None:
    before = conf.get().CHUNK_SIZE
    with override_settings(NOTIFICATIONS={"CHUNK_SIZE": 3, "CHANNEL": "elsewhere"}):
        assert conf.get().CHUNK_SIZE == 3
        assert conf.get().CHANNEL == "elsewhere"
        with override_settings(NOTIFICATIONS={"CHUNK_SIZE": 7}):
            assert conf.get().CHUNK_SIZE == 7
            assert conf.get().CHANNEL == "notifications"
        assert conf.get().CHUNK_SIZE == 3
    assert conf.get().CHUNK_SIZE == before != 3


def test_other_settings_do_not_clear_the_cache() -> None:
    first = conf.get()
    with override_settings(DEBUG=True):
        assert conf.get() is first


def test_int_is_accepted_for_float_settings() -> None:
    with override_settings(NOTIFICATIONS={"SWEEP_INTERVAL": 2}):
        assert conf.get().SWEEP_INTERVAL == 2
        assert conf.problems({"SWEEP_INTERVAL": 2}) == []


def test_invalid_values_fall_back_to_defaults() -> None:
    bad = {"CHUNK_SIZE": 0, "REDIS_URL": "http://example.com", "MAX_IDS": "10", "NOPE": 1}
    with override_settings(NOTIFICATIONS={**bad, "MAX_SYNC": 50}):
        settings = conf.get()
    assert settings.CHUNK_SIZE == 10_000
    assert settings.REDIS_URL == "redis://127.0.0.1:6379/0"
    assert settings.MAX_IDS == 500
    assert settings.MAX_SYNC == 50
    assert not hasattr(settings, "NOPE")


def test_not_a_dict_falls_back_to_defaults() -> None:
    with override_settings(NOTIFICATIONS=["CHUNK_SIZE", 3], CHANNEL_LAYERS={}):
        assert conf.get() == conf.NotificationSettings(**conf.DEFAULTS)


# ---- manage.py check: NOTIFICATIONS -------------------------------------------------------


def test_unknown_key_is_e002() -> None:
    text = check_failure(CHUNKSIZE=10)
    assert "notifications.E002" in text
    assert "CHUNKSIZE" in text
    assert "CHUNK_SIZE" in text  # the hint lists the known keys


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CHUNK_SIZE", "10"),
        ("CHUNK_SIZE", 2.5),
        ("CHUNK_SIZE", True),
        ("CHUNK_SIZE", None),
        ("SWEEP_INTERVAL", "5"),
        ("SWEEP_INTERVAL", True),
        ("WELCOME_NEW_USERS", 1),
        ("WELCOME_NEW_USERS", "yes"),
        ("CHANNEL", 5),
        ("CHANNEL", ""),
        ("REDIS_URL", None),
    ],
)
def test_wrong_type_is_e003(key: str, value: Any) -> None:
    text = check_failure(**{key: value})
    assert "notifications.E003" in text
    assert key in text


@pytest.mark.parametrize("key", ["CHUNK_SIZE", "MAX_IDS", "SWEEP_INTERVAL", "PUBLISH_TIMEOUT"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_number_is_e003(key: str, value: int) -> None:
    text = check_failure(**{key: value})
    assert "notifications.E003" in text
    assert key in text


def test_nan_is_e003() -> None:
    text = check_failure(SWEEP_INTERVAL=float("nan"))
    assert "notifications.E003" in text


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/0", "127.0.0.1:6379", "localhost", "redis:/localhost"]
)
def test_bad_redis_url_is_e004(url: str) -> None:
    text = check_failure(REDIS_URL=url)
    assert "notifications.E004" in text
    assert url in text


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:pw@redis.example.com:6380/1", "unix:///r.sock"]
)
def test_good_redis_urls(url: str) -> None:
    assert conf.problems({"REDIS_URL": url}) == []


def test_not_a_dict_is_e001() -> None:
    with override_settings(NOTIFICATIONS=[("CHUNK_SIZE", 3)]):
        ids = [message.id for message in checks.check_notification_settings()]
    assert ids == ["notifications.E001"]


def test_every_problem_is_reported_with_a_hint() -> None:
    values = {"CHUNK_SIZE": 0, "MAX_SYNC": "x", "REDIS_URL": "tcp://r", "EXTRA": 1}
    with override_settings(NOTIFICATIONS=values):
        messages = checks.check_notification_settings()
    assert sorted(message.id for message in messages) == [
        "notifications.E002",
        "notifications.E003",
        "notifications.E003",
        "notifications.E004",
    ]
    assert all(message.hint for message in messages)
    assert all(message.is_serious() for message in messages)


def test_valid_settings_pass_check() -> None:
    with override_settings(NOTIFICATIONS={"CHUNK_SIZE": 10, "CHANNEL": "site-a"}):
        assert checks.check_notification_settings() == []
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


# ---- channel layer checks ----------------------------------------------------------------


def test_missing_default_layer_is_e010() -> None:
    assert layer_ids(None) == ["notifications.E010"]


def test_in_memory_layer_is_w001_with_debug_on_too() -> None:
    # With DEBUG on, pushes still never cross from the listener to daphne: they only show
    # up at the bell's next ping.
    layer = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    assert layer_ids(layer, debug=False) == ["notifications.W001"]
    assert layer_ids(layer, debug=True) == ["notifications.W001"]


def test_host_dict_without_socket_timeout_none_is_w002() -> None:
    assert layer_ids(redis_layer(hosts=[{"address": "redis://127.0.0.1:6379/0"}])) == [
        "notifications.W002"
    ]
    with_timeout = {"address": "redis://127.0.0.1:6379/0", "socket_timeout": 5}
    assert layer_ids(redis_layer(hosts=[with_timeout])) == ["notifications.W002"]
    assert layer_ids(redis_layer(hosts=[GOOD_HOST])) == []


@pytest.mark.parametrize("host", ["redis://127.0.0.1:6379/0", ("127.0.0.1", 6379)])
def test_plain_host_is_w003(host: Any) -> None:
    assert layer_ids(redis_layer(hosts=[host])) == ["notifications.W003"]


def test_one_warning_per_bad_host() -> None:
    hosts = [GOOD_HOST, "redis://a:6379/0", {"address": "redis://b:6379/0"}]
    assert sorted(layer_ids(redis_layer(hosts=hosts))) == [
        "notifications.W002",
        "notifications.W003",
    ]


@pytest.mark.parametrize("capacity", [1, 100, 999])
def test_small_capacity_is_w004(capacity: int) -> None:
    assert layer_ids(redis_layer(capacity=capacity)) == ["notifications.W004"]


def test_default_capacity_is_w004() -> None:
    layer = {"BACKEND": REDIS_LAYER, "CONFIG": {"hosts": [GOOD_HOST]}}
    assert layer_ids(layer) == ["notifications.W004"]


@pytest.mark.parametrize("capacity", [1000, 5000])
def test_large_capacity_is_fine(capacity: int) -> None:
    assert layer_ids(redis_layer(capacity=capacity)) == []


def test_channel_layer_warnings_have_hints_and_are_not_errors() -> None:
    layer = {"BACKEND": REDIS_LAYER, "CONFIG": {"hosts": ["redis://a", {"address": "redis://b"}]}}
    with override_settings(CHANNEL_LAYERS={"default": layer}):
        messages = checks.check_channel_layer()
    assert len(messages) == 3
    assert all(message.hint and not message.is_serious() for message in messages)


def test_warnings_fail_check_at_warning_level() -> None:
    layer = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    with (
        override_settings(CHANNEL_LAYERS={"default": layer}, DEBUG=False),
        pytest.raises(SystemCheckError, match=r"notifications\.W001"),
    ):
        call_command("check", fail_level="WARNING", stdout=io.StringIO(), stderr=io.StringIO())


# ---- the project's own settings ----------------------------------------------------------


def test_test_settings_produce_no_notification_messages() -> None:
    assert notification_check_ids() == []


def test_project_settings_produce_no_notification_messages() -> None:
    with override_settings(
        NOTIFICATIONS=project_settings.NOTIFICATIONS,
        CHANNEL_LAYERS=project_settings.CHANNEL_LAYERS,
        DEBUG=False,
    ):
        assert notification_check_ids() == []


# ---- Sentinel ----------------------------------------------------------------------------

SENTINEL_LAYER = {
    "BACKEND": REDIS_LAYER,
    "CONFIG": {
        "capacity": 5000,
        "hosts": [
            {
                "sentinels": [("s1", 26379), ("s2", 26379)],
                "master_name": "notify",
                "socket_timeout": None,
                "max_connections": 1000,
                "password": "pw",
                "db": 2,
                "sentinel_kwargs": {"password": "spw"},
            }
        ],
    },
}


def test_sentinel_is_off_by_default() -> None:
    with override_settings(NOTIFICATIONS={}, CHANNEL_LAYERS={}):
        assert conf.get().REDIS_SENTINELS == []
        assert conf.get().REDIS_SENTINEL_MASTER == ""
        assert conf.get().REDIS_SENTINEL_OPTIONS == {}


@pytest.mark.parametrize(
    "sentinels",
    [
        ["s1:26379", "s2:26380"],
        [("s1", 26379), ["s2", 26380]],
        ("s1:26379",),
        ["[::1]:26379", "s3"],  # no port: Sentinel's own 26379
    ],
)
def test_sentinel_forms_are_valid(sentinels: list[Any]) -> None:
    assert conf.problems({"REDIS_SENTINELS": sentinels, "REDIS_SENTINEL_MASTER": "m"}) == []


@pytest.mark.parametrize(
    "entry", ["s1:port", ":26379", ("s1", "26379"), ("s1", 0), ("s1", True), 26379, ("s1",)]
)
def test_a_sentinel_that_is_no_address_is_e005(entry: Any) -> None:
    text = check_failure(REDIS_SENTINELS=[entry], REDIS_SENTINEL_MASTER="m")
    assert "notifications.E005" in text
    assert "REDIS_SENTINELS" in text


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({"REDIS_SENTINELS": ["s1:26379"]}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ],
)
def test_one_sentinel_key_without_the_other_is_e006(values: dict, missing: str) -> None:
    text = check_failure(**values)
    assert "notifications.E006" in text
    assert missing in text
    with override_settings(NOTIFICATIONS=values):
        assert not (conf.get().REDIS_SENTINELS and conf.get().REDIS_SENTINEL_MASTER)


@pytest.mark.parametrize(
    ("key", "value"),
    [("REDIS_SENTINELS", "s1:26379"), ("REDIS_SENTINEL_MASTER", 5), ("REDIS_SENTINEL_OPTIONS", [])],
)
def test_sentinel_keys_of_the_wrong_type_are_e003(key: str, value: Any) -> None:
    assert "notifications.E003" in check_failure(**{key: value})


def test_an_unset_app_follows_a_sentinel_layer() -> None:
    with override_settings(NOTIFICATIONS={}, CHANNEL_LAYERS={"default": SENTINEL_LAYER}):
        settings = conf.get()
        assert settings.REDIS_SENTINELS == [("s1", 26379), ("s2", 26379)]
        assert settings.REDIS_SENTINEL_MASTER == "notify"
        assert settings.REDIS_SENTINEL_OPTIONS == {"password": "spw"}
        # Who and which database carry over; the layer's pool size and timeouts do not.
        assert settings.REDIS_OPTIONS == {"password": "pw", "db": 2}
        # The app follows the layer's master: nothing to warn about.
        assert "notifications.W009" not in [message.id for message in checks.check_wiring()]


def test_the_sentinel_layer_passes_the_layer_checks() -> None:
    assert layer_ids(SENTINEL_LAYER) == []


def test_sentinel_on_one_side_only_is_w009() -> None:
    app = {"REDIS_SENTINELS": ["s1:26379"], "REDIS_SENTINEL_MASTER": "notify"}
    plain = redis_layer()
    with override_settings(NOTIFICATIONS=app, CHANNEL_LAYERS={"default": plain}):
        assert "notifications.W009" in [message.id for message in checks.check_wiring()]
    fixed = {"REDIS_URL": "redis://127.0.0.1:6379/15"}
    with override_settings(NOTIFICATIONS=fixed, CHANNEL_LAYERS={"default": SENTINEL_LAYER}):
        ids = [message.id for message in checks.check_wiring()]
        assert "notifications.W009" in ids
        assert "notifications.W007" not in ids  # nothing to compare a URL with
    with override_settings(NOTIFICATIONS=app, CHANNEL_LAYERS={"default": SENTINEL_LAYER}):
        ids = [message.id for message in checks.check_wiring()]
        assert "notifications.W009" not in ids
        assert "notifications.W007" not in ids


def test_the_demo_reads_the_sentinel_environment() -> None:
    """REDIS_SENTINELS / REDIS_SENTINEL_MASTER configure the layer and the app alike."""
    script = (
        "import json, django; django.setup()\n"
        "from django.conf import settings as s\n"
        "from notifications import conf\n"
        "host = s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]\n"
        "c = conf.get()\n"
        "print(json.dumps([host['sentinels'], host['master_name'], host['socket_timeout'],"
        " host['db'], c.REDIS_SENTINELS, c.REDIS_SENTINEL_MASTER, c.REDIS_OPTIONS]))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "notifyproject.settings",
        "REDIS_SENTINELS": "127.0.0.1:26379, 127.0.0.1:26380",
        "REDIS_SENTINEL_MASTER": "notify",
        "REDIS_URL": "redis://:pw@ignored:6379/3",
    }
    env.pop("CHANNEL_LAYER_URLS", None)
    env.pop("REDIS_TLS_CA_FILE", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    sentinels, master, timeout, db, app_sentinels, app_master, options = json.loads(done.stdout)
    assert sentinels == app_sentinels == [["127.0.0.1", 26379], ["127.0.0.1", 26380]]
    assert master == app_master == "notify"
    assert timeout is None
    assert db == 3
    assert options == {"db": 3, "password": "pw"}
