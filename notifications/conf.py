"""The only reader of ``settings.NOTIFICATIONS``: defaults, validation, a cache reset on change."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import cache
from typing import Any, NamedTuple

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from notifications.setup import sentinel_address

DEFAULTS: dict[str, Any] = {
    # Where the save hook publishes and the listener subscribes. Unset, it is the default
    # channel layer's first Redis host (see layer_redis_defaults), and only then this.
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    # Extra keyword arguments for every Redis client the app makes (pub/sub, PUBLISH, health),
    # e.g. {"ssl_ca_certs": "/etc/ssl/redis-ca.pem"} for a rediss:// URL with a private CA.
    # Under Sentinel the master's "password", "username" and "db" go here (no URL names them).
    "REDIS_OPTIONS": {},
    # Sentinel: the sentinels, as (host, port) pairs or "host:port" strings, and the name of
    # the master they watch. With both set, every client the app makes (PUBLISH, the
    # listener, health) asks them where the master is and follows it through a failover;
    # REDIS_URL is then unused.
    "REDIS_SENTINELS": [],
    "REDIS_SENTINEL_MASTER": "",
    # Keyword arguments for the connections to the sentinels themselves (not the master),
    # e.g. {"password": "…"} for sentinels started with requirepass.
    "REDIS_SENTINEL_OPTIONS": {},
    # The pub/sub channel name; give each site sharing one Redis its own.
    "CHANNEL": "notifications",
    # How often the listener looks for committed-but-undispatched rows (missed messages,
    # Redis outages, scheduled ones): short enough that an outage heals in seconds, long
    # enough that an idle site costs one cheap indexed query every few seconds.
    "SWEEP_INTERVAL": 5.0,
    # A broadcast's Delivery rows are written by one INSERT … SELECT per this many users,
    # inside the database (no Python lists). Each chunk costs a boundary query: 2,000 made a
    # 10,000-user broadcast 13% slower than one statement, and bought nothing.
    "CHUNK_SIZE": 10_000,
    # After a failed PUBLISH, skip further attempts for this long: a request should not pay
    # a connect timeout per save while Redis is down; the sweep delivers those rows.
    "PUBLISH_BACKOFF": 5.0,
    # Connect/read timeout of the save hook's PUBLISH, in seconds.
    "PUBLISH_TIMEOUT": 1.0,
    # Most notifications the bell asks for on sync, and the page size cap of the API.
    "MAX_SYNC": 200,
    # A sync's cursor never passes a Delivery row younger than this: it must exceed the
    # longest dispatch transaction, so no row can still appear below the cursor.
    "SYNC_SETTLE_SECONDS": 30.0,
    # Largest list of ids a client frame may carry.
    "MAX_IDS": 500,
    # Largest client frame in bytes; bigger closes the socket with 4413.
    "MAX_FRAME_BYTES": 64 * 1024,
    # Token bucket per socket: sustained frames per second and burst; past it, close 4429.
    "RATE_LIMIT_PER_SECOND": 10.0,
    "RATE_LIMIT_BURST": 40,
    # Listener reconnect backoff: first delay and ceiling, in seconds (with jitter). The
    # ceiling stays near SWEEP_INTERVAL so a Redis outage heals within two sweeps of its end.
    "RECONNECT_MIN_DELAY": 0.5,
    "RECONNECT_MAX_DELAY": 5.0,
    # The listener PINGs an idle subscription this often and gives up on the connection when
    # no answer comes within HEALTH_CHECK_TIMEOUT: a half-open connection never errors.
    "HEALTH_CHECK_INTERVAL": 10.0,
    "HEALTH_CHECK_TIMEOUT": 5.0,
    # A listener whose heartbeat is older than this is reported dead by notifications_health.
    "HEARTBEAT_MAX_AGE": 30.0,
    # The bell pings this often: it notices a dead connection, a lost push (pong's last_id)
    # and a drifted badge (pong's unread) within one interval.
    "BELL_PING_INTERVAL": 30.0,
    # The template the inbox page extends. It must define {% block content %} (and may define
    # {% block title %} and {% block head %}); the app's own is a plain standalone page, so the
    # inbox works on a site whose layout has another name.
    "BASE_TEMPLATE": "notifications/base.html",
    # The admin asks "Send to N people?" before saving a notification for Everyone or for an
    # audience larger than this.
    "CONFIRM_AUDIENCE_OVER": 1000,
    # The kinds of notification a site sends, slug -> {"label", "description", "mutable",
    # "default"} (see notifications.categories): users mute them, or their toasts, one by
    # one on the preferences page. Every notification has one (DEFAULT_CATEGORY unless
    # given); a "critical" notification ignores mutes and quiet hours.
    "CATEGORIES": {"general": {"label": "General"}},
    "DEFAULT_CATEGORY": "general",
    # Send a welcome notification to every new user (a model-signal example).
    "WELCOME_NEW_USERS": True,
    # Tell users when they are added to a Group (a model-signal example).
    "NOTIFY_GROUP_JOINS": True,
}


@dataclass(frozen=True)
class NotificationSettings:
    """Validated, typed view of ``settings.NOTIFICATIONS``."""

    REDIS_URL: str
    REDIS_OPTIONS: dict[str, Any]
    REDIS_SENTINELS: list[Any]
    REDIS_SENTINEL_MASTER: str
    REDIS_SENTINEL_OPTIONS: dict[str, Any]
    CHANNEL: str
    SWEEP_INTERVAL: float
    CHUNK_SIZE: int
    PUBLISH_BACKOFF: float
    PUBLISH_TIMEOUT: float
    MAX_SYNC: int
    SYNC_SETTLE_SECONDS: float
    MAX_IDS: int
    MAX_FRAME_BYTES: int
    RATE_LIMIT_PER_SECOND: float
    RATE_LIMIT_BURST: int
    RECONNECT_MIN_DELAY: float
    RECONNECT_MAX_DELAY: float
    HEALTH_CHECK_INTERVAL: float
    HEALTH_CHECK_TIMEOUT: float
    HEARTBEAT_MAX_AGE: float
    BELL_PING_INTERVAL: float
    BASE_TEMPLATE: str
    CONFIRM_AUDIENCE_OVER: int
    CATEGORIES: dict[str, Any]
    DEFAULT_CATEGORY: str
    WELCOME_NEW_USERS: bool
    NOTIFY_GROUP_JOINS: bool


def user_values() -> dict[str, Any]:
    """Return the raw ``settings.NOTIFICATIONS`` dict (empty when unset)."""
    value = getattr(settings, "NOTIFICATIONS", None)
    return value if value is not None else {}


class Problem(NamedTuple):
    """One invalid setting: check id, the key at fault, and what to say about it."""

    id: str
    key: str
    message: str
    hint: str


def problems(values: Any) -> list[Problem]:
    """Return every invalid entry of ``NOTIFICATIONS``; the system checks report them."""
    found: list[Problem] = []
    if not isinstance(values, dict):
        return [Problem("E001", "", "NOTIFICATIONS must be a dict.", "Set NOTIFICATIONS = {...}.")]
    for key in sorted(set(values) - set(DEFAULTS)):
        found.append(
            Problem(
                "E002",
                key,
                f"NOTIFICATIONS has an unknown key {key!r}.",
                "Known keys: " + ", ".join(sorted(DEFAULTS)) + ".",
            )
        )
    merged = {**DEFAULTS, **{k: v for k, v in values.items() if k in DEFAULTS}}
    for field in fields(NotificationSettings):
        value = merged[field.name]
        expected = field.type
        ok = _has_type(value, expected)
        if ok and expected in ("float", "int") and not value > 0:  # also rejects NaN
            ok = False
        if ok and expected == "str" and not value and field.name not in _MAY_BE_EMPTY:
            ok = False
        if not ok:
            found.append(
                Problem(
                    "E003",
                    field.name,
                    f"NOTIFICATIONS[{field.name!r}] = {value!r} is invalid.",
                    f"Use a {_describe(expected)}; the default is {DEFAULTS[field.name]!r}.",
                )
            )
    url = merged["REDIS_URL"]
    if isinstance(url, str) and not url.startswith(("redis://", "rediss://", "unix://")):
        found.append(
            Problem(
                "E004",
                "REDIS_URL",
                f"NOTIFICATIONS['REDIS_URL'] = {url!r} is not a Redis URL.",
                "Use redis://[:password@]host:port/db, rediss://… for TLS, or unix://path.",
            )
        )
    found.extend(_sentinel_problems(values))
    found.extend(category_problems(merged["CATEGORIES"], merged["DEFAULT_CATEGORY"]))
    return found


_CATEGORY_KEYS = {"label": str, "description": str, "mutable": bool, "default": bool}


def category_problems(declared: Any, default: Any) -> list[Problem]:
    """E007: a CATEGORIES entry that is no slug or has a bad key; E008: a bad DEFAULT_CATEGORY."""
    if not isinstance(declared, dict):
        return []  # E003 says so already
    found: list[Problem] = []
    hint = (
        'Declare each as "slug": {"label": "…", "description": "…", "mutable": True,'
        ' "default": True}.'
    )
    for slug, spec in declared.items():
        if not _SLUG.fullmatch(slug):
            found.append(
                Problem(
                    "E007",
                    "CATEGORIES",
                    f"Category {slug!r} is not a slug (a-z, 0-9, -, _; at most 50).",
                    hint,
                )
            )
            continue
        if not isinstance(spec, dict):
            found.append(
                Problem(
                    "E007", "CATEGORIES", f"Category {slug!r} must be a dict, not {spec!r}.", hint
                )
            )
            continue
        for key, value in spec.items():
            kind = _CATEGORY_KEYS.get(key)
            if kind is None or not isinstance(value, kind):
                found.append(
                    Problem(
                        "E007", "CATEGORIES", f"Category {slug!r} has {key!r}: {value!r}.", hint
                    )
                )
        if spec.get("mutable") is False and spec.get("default") is False:
            found.append(
                Problem(
                    "E007",
                    "CATEGORIES",
                    f"Category {slug!r} is off by default and nobody may switch it on"
                    " (mutable False).",
                    "An unmutable category is always shown: drop default False.",
                )
            )
    if isinstance(default, str) and default not in declared:
        found.append(
            Problem(
                "E008",
                "DEFAULT_CATEGORY",
                f"NOTIFICATIONS['DEFAULT_CATEGORY'] = {default!r} is not among CATEGORIES.",
                "Name one of: " + ", ".join(declared) + ".",
            )
        )
    return found


_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")

# Keys whose empty value means "off" (Sentinel unused) rather than a mistake.
_MAY_BE_EMPTY = frozenset({"REDIS_SENTINEL_MASTER"})


def _sentinel_problems(values: dict[str, Any]) -> list[Problem]:
    """E005: a sentinel that is no address; E006: sentinels without a master name, or back."""
    found: list[Problem] = []
    sentinels = values.get("REDIS_SENTINELS", [])
    master = values.get("REDIS_SENTINEL_MASTER", "")
    if isinstance(sentinels, list | tuple):
        for entry in sentinels:
            try:
                sentinel_address(entry)
            except ValueError as exc:
                found.append(
                    Problem(
                        "E005",
                        "REDIS_SENTINELS",
                        f"NOTIFICATIONS['REDIS_SENTINELS'] holds {entry!r}: {exc}.",
                        'Give each sentinel as ("host", 26379) or "host:26379".',
                    )
                )
    given_both = isinstance(sentinels, list | tuple) and isinstance(master, str)
    if given_both and bool(sentinels) != bool(master):
        given, missing = (
            ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER")
            if sentinels
            else ("REDIS_SENTINEL_MASTER", "REDIS_SENTINELS")
        )
        found.append(
            Problem(
                "E006",
                missing,
                f"NOTIFICATIONS sets {given} without {missing}: Sentinel stays off and "
                "REDIS_URL is used.",
                "Set both: the sentinels' addresses and the master name they monitor "
                "(sentinel monitor <name> …).",
            )
        )
    return found


def _describe(expected: str) -> str:
    if expected in ("float", "int"):
        return "positive number"
    if expected.startswith("dict"):
        return "dict of keyword arguments"
    if expected.startswith("list"):
        return "list of addresses"
    return expected


def redis_kwargs(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for a Redis client: REDIS_OPTIONS, then the caller's timeouts."""
    return {**get().REDIS_OPTIONS, **overrides}


def _has_type(value: Any, expected: str) -> bool:
    if expected.startswith("list"):
        return isinstance(value, list | tuple)
    if expected.startswith("dict"):
        return isinstance(value, dict) and all(isinstance(key, str) for key in value)
    if expected == "bool":
        return isinstance(value, bool)
    if expected == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


# Keys of a channel layer host dict that say which server and who we are, and so carry
# over to the app's own clients; the layer's timeouts and pool size are its own business.
_CARRIED_HOST_KEYS = ("username", "password")
# A Sentinel host dict names its database with a key too (an address URL carries it).
_CARRIED_SENTINEL_HOST_KEYS = ("username", "password", "db")


def layer_redis_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Return REDIS_URL (and REDIS_OPTIONS) taken from the channel layer, for unset keys.

    A site that sets up the channel layer and no NOTIFICATIONS would otherwise publish to
    127.0.0.1 while its layer is elsewhere: every push would wait for the sweep, or fail
    where no local Redis runs. Its first host (the first shard) is where the layer already
    works, credentials and TLS options included.
    """
    if "REDIS_URL" in values or "REDIS_SENTINELS" in values:
        return {}
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    default = layers.get("default") if isinstance(layers, dict) else None
    if not isinstance(default, dict) or not str(default.get("BACKEND", "")).startswith(
        "channels_redis."
    ):
        return {}
    hosts = (default.get("CONFIG") or {}).get("hosts") or []
    if not isinstance(hosts, list | tuple) or not hosts:
        return {}
    host = hosts[0]
    if isinstance(host, dict) and host.get("sentinels") and host.get("master_name"):
        return _layer_sentinel_defaults(host, values)
    url = redis_url_of_host(host)
    if url is None:
        return {}
    found: dict[str, Any] = {"REDIS_URL": url}
    if isinstance(host, dict) and "REDIS_OPTIONS" not in values:
        options = {
            key: value
            for key, value in host.items()
            if isinstance(key, str) and (key.startswith("ssl") or key in _CARRIED_HOST_KEYS)
        }
        if options:
            found["REDIS_OPTIONS"] = options
    return found


def _layer_sentinel_defaults(host: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Return the Sentinel keys of a channels-redis Sentinel host dict: the layer's master."""
    try:
        sentinels = [sentinel_address(entry) for entry in host["sentinels"]]
    except (TypeError, ValueError):
        return {}
    found: dict[str, Any] = {
        "REDIS_SENTINELS": sentinels,
        "REDIS_SENTINEL_MASTER": str(host["master_name"]),
    }
    if isinstance(host.get("sentinel_kwargs"), dict) and "REDIS_SENTINEL_OPTIONS" not in values:
        found["REDIS_SENTINEL_OPTIONS"] = dict(host["sentinel_kwargs"])
    if "REDIS_OPTIONS" not in values:
        options = {
            key: value
            for key, value in host.items()
            if isinstance(key, str)
            and (key.startswith("ssl") or key in _CARRIED_SENTINEL_HOST_KEYS)
        }
        if options:
            found["REDIS_OPTIONS"] = options
    return found


def redis_url_of_host(host: Any) -> str | None:
    """Return a channel layer host (URL, (host, port) or a dict with an address) as a URL."""
    address = host.get("address") if isinstance(host, dict) else host
    if isinstance(address, str):
        return address if address.startswith(("redis://", "rediss://", "unix://")) else None
    if isinstance(address, list | tuple) and len(address) == 2:
        return f"redis://{address[0]}:{address[1]}/0"
    return None


@cache
def get() -> NotificationSettings:
    """Return the app settings; invalid values fall back to defaults (the checks report them)."""
    values = user_values()
    if not isinstance(values, dict):
        values = {}
    bad = {problem.key for problem in problems(values)}
    defaults = {**DEFAULTS, **layer_redis_defaults(values)}
    merged = {
        key: (values[key] if key in values and key not in bad else default)
        for key, default in defaults.items()
    }
    return NotificationSettings(**merged)


@receiver(setting_changed, dispatch_uid="notifications.conf.reset")
def _reset(*, setting: str, **kwargs: Any) -> None:
    # CHANNEL_LAYERS too: an unset REDIS_URL follows the channel layer.
    if setting in ("NOTIFICATIONS", "CHANNEL_LAYERS"):
        get.cache_clear()
