"""System checks: every configuration that would fail silently is named by ``manage.py check``.

Ids are stable (the README lists them): E001-E006 bad NOTIFICATIONS values (E005-E006 its
Sentinel keys), E010 no channel layer; W001-W004 the channel layer's options; W005-W009 the
site's wiring (ALLOWED_HOSTS, ASGI_APPLICATION, publishing and the layer on different Redis
servers, SQLite without IMMEDIATE transactions, Sentinel on one side only); I001-I002 what
only matters to some set-ups (runserver without daphne, channels not in INSTALLED_APPS).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Warning, register

from notifications import conf


@register()
def check_notification_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report every invalid key or value in ``settings.NOTIFICATIONS``."""
    return [
        Error(problem.message, hint=problem.hint, id=f"notifications.{problem.id}")
        for problem in conf.problems(conf.user_values())
    ]


@register()
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when daphne and the listener could never reach each other through the layer."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    default = layers.get("default")
    if not default:
        return [
            Error(
                "CHANNEL_LAYERS has no 'default' layer.",
                hint="CHANNEL_LAYERS = notifications.setup.channel_layers("
                "'redis://127.0.0.1:6379/0') (see the README, 'Add it to your site').",
                id="notifications.E010",
            )
        ]
    backend = default.get("BACKEND", "")
    messages: list[CheckMessage] = []
    if backend.endswith("InMemoryChannelLayer"):
        # With DEBUG too: the bell still "works" (its ping's sync finds new rows in the
        # database), which hides the problem until someone times a push.
        messages.append(
            Warning(
                "The default channel layer is in-memory: pushes never reach the browser, "
                "they only show up at the bell's next ping (BELL_PING_INTERVAL, 30 s by default).",
                hint="daphne and listen_notifications run in separate processes and never "
                "see each other's messages through it. Use a Redis layer: "
                "CHANNEL_LAYERS = notifications.setup.channel_layers('redis://…').",
                id="notifications.W001",
            )
        )
    if backend.startswith("channels_redis."):
        messages.extend(_redis_layer_messages(default.get("CONFIG", {})))
    return messages


def _redis_layer_messages(config: dict[str, Any]) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for host in config.get("hosts", []):
        if isinstance(host, dict) and host.get("socket_timeout", "unset") is not None:
            messages.append(
                Warning(
                    "A channel layer host does not set socket_timeout=None.",
                    hint="redis-py 8 times out idle reads after 5 s, the same 5 s channels-redis "
                    "blocks for: idle WebSockets then close with 1011. Add "
                    "'socket_timeout': None to the host dict.",
                    id="notifications.W002",
                )
            )
        elif isinstance(host, str | tuple | list):
            messages.append(
                Warning(
                    "A channel layer host is given as a plain address.",
                    hint="Use a dict {'address': url, 'socket_timeout': None, "
                    "'max_connections': 1000} so idle sockets survive and bursts fit the pool.",
                    id="notifications.W003",
                )
            )
    capacity = config.get("capacity", 100)
    if isinstance(capacity, int) and capacity < 1000:
        messages.append(
            Warning(
                f"The channel layer capacity is {capacity}.",
                hint="RedisChannelLayer drops messages silently to a channel holding that many; "
                "set 'capacity' to a few thousand.",
                id="notifications.W004",
            )
        )
    return messages


@register()
def check_wiring(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Name what would leave the bell unconnected, slow or refused without any error."""
    messages: list[CheckMessage] = []
    if not apps.is_installed("channels"):
        messages.append(
            Info(
                "'channels' is not in INSTALLED_APPS.",
                hint="The app uses Channels as a library and works without it, but Channels' "
                "runworker command and documentation expect it: add 'channels' to "
                "INSTALLED_APPS.",
                id="notifications.I002",
            )
        )
    if settings.DEBUG and not apps.is_installed("daphne"):
        messages.append(
            Info(
                "'daphne' is not in INSTALLED_APPS: manage.py runserver serves no WebSockets, "
                "so the bell never connects under it.",
                hint="Add 'daphne' first in INSTALLED_APPS, or run an ASGI server yourself "
                "(daphne mysite.asgi:application, or uvicorn). Production servers are not "
                "affected.",
                id="notifications.I001",
            )
        )
    if not getattr(settings, "ASGI_APPLICATION", None):
        messages.append(
            Warning(
                "ASGI_APPLICATION is not set: nothing says this site serves WebSockets, and "
                "under a WSGI server the bell never connects.",
                hint="Set ASGI_APPLICATION = 'mysite.asgi.application', an application whose "
                "'websocket' route is notifications.asgi.websocket_application(), and serve "
                "it with daphne or uvicorn (see the README, 'Add it to your site').",
                id="notifications.W006",
            )
        )
    if "*" in settings.ALLOWED_HOSTS:
        messages.append(
            Warning(
                "ALLOWED_HOSTS contains '*': the notification socket does not take it to allow "
                "every Origin, and accepts only pages from the handshake's own host, the "
                "other ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS.",
                hint="List the site's host names in ALLOWED_HOSTS (Django then also refuses "
                "forged Host headers); put the origins of other sites' pages that may open "
                "the socket in CSRF_TRUSTED_ORIGINS.",
                id="notifications.W005",
            )
        )
    messages.extend(_redis_mismatch_messages())
    messages.extend(_sentinel_mismatch_messages())
    messages.extend(sqlite_messages(settings.DATABASES))
    return messages


# The same server under its usual names: "localhost" and "127.0.0.1" must not look different.
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _redis_server(url_or_host: Any) -> tuple[str, Any] | None:
    """Return a comparable (host, port) or ("unix", path) for a Redis address; None if unknown."""
    url = conf.redis_url_of_host(url_or_host)
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        return None
    if parts.scheme == "unix":
        return ("unix", parts.path)
    hostname = (parts.hostname or "").lower()
    return ("loopback" if hostname in _LOOPBACK else hostname, port)


def _redis_mismatch_messages() -> list[CheckMessage]:
    values = conf.user_values()
    if not isinstance(values, dict) or not isinstance(values.get("REDIS_URL"), str):
        return []  # unset: REDIS_URL follows the channel layer (conf.layer_redis_defaults)
    if values.get("REDIS_SENTINELS") and values.get("REDIS_SENTINEL_MASTER"):
        return []  # REDIS_URL is unused under Sentinel; W009 compares the masters
    layer = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default") or {}
    if not str(layer.get("BACKEND", "")).startswith("channels_redis."):
        return []
    hosts = (layer.get("CONFIG") or {}).get("hosts") or []
    servers = [_redis_server(host) for host in hosts]
    published = _redis_server(values["REDIS_URL"])
    if not servers or None in servers or published is None or published in servers:
        return []  # Sentinel or keyword hosts: nothing to compare with confidence
    return [
        Warning(
            "NOTIFICATIONS['REDIS_URL'] and the channel layer point at different Redis servers.",
            hint="Publishing and the listener use REDIS_URL, pushes use the layer: both servers "
            "must be up, and usually one of them is a leftover. Remove REDIS_URL from "
            "NOTIFICATIONS to use the layer's first host, or silence notifications.W007 if "
            "the split is deliberate.",
            id="notifications.W007",
        )
    ]


def _sentinel_mismatch_messages() -> list[CheckMessage]:
    """W009: Sentinel on one side only (the app's clients or the layer), or two masters."""
    layer = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default") or {}
    if not str(layer.get("BACKEND", "")).startswith("channels_redis."):
        return []
    hosts = (layer.get("CONFIG") or {}).get("hosts") or []
    layer_masters = {
        str(host["master_name"])
        for host in hosts
        if isinstance(host, dict) and host.get("sentinels") and host.get("master_name")
    }
    app = conf.get()
    app_master = app.REDIS_SENTINEL_MASTER if app.REDIS_SENTINELS else ""
    if (not app_master and not layer_masters) or app_master in layer_masters:
        return []
    if app_master:
        what = (
            f"The app finds its Redis through Sentinel (master {app_master!r}) but the "
            "channel layer does not use that master."
        )
    else:
        what = (
            "The channel layer follows a Sentinel master but the app's own clients use the "
            "fixed NOTIFICATIONS['REDIS_URL']."
        )
    return [
        Warning(
            what,
            hint="After a failover one side would stay on the former master: publishing and "
            "the listener (NOTIFICATIONS['REDIS_SENTINELS'] / ['REDIS_SENTINEL_MASTER']) and "
            "the layer (channel_layers(sentinels=…, master_name=…)) should follow the same "
            "master. Silence notifications.W009 if the split is deliberate.",
            id="notifications.W009",
        )
    ]


def sqlite_messages(databases: dict[str, Any]) -> list[CheckMessage]:
    """Return a W008 for each SQLite database of ``databases`` without IMMEDIATE transactions."""
    messages: list[CheckMessage] = []
    for alias, database in databases.items():
        if not str(database.get("ENGINE", "")).endswith("sqlite3"):
            continue
        mode = str((database.get("OPTIONS") or {}).get("transaction_mode", "")).upper()
        if mode != "IMMEDIATE":
            messages.append(
                Warning(
                    f"The SQLite database {alias!r} does not use IMMEDIATE transactions.",
                    hint="daphne and the listener write at once, and a deferred transaction "
                    "that must upgrade its lock fails with 'database is locked'. Use "
                    "notifications.setup.sqlite_database(path) (IMMEDIATE, WAL, a lock "
                    "timeout), or set OPTIONS['transaction_mode'] = 'IMMEDIATE'.",
                    id="notifications.W008",
                )
            )
    return messages
