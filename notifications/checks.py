"""System checks: a bad NOTIFICATIONS value or channel layer is named by ``manage.py check``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

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
                hint="Configure channels_redis.core.RedisChannelLayer (see README, Configuration).",
                id="notifications.E010",
            )
        ]
    backend = default.get("BACKEND", "")
    messages: list[CheckMessage] = []
    if backend.endswith("InMemoryChannelLayer") and not settings.DEBUG:
        messages.append(
            Warning(
                "The default channel layer is in-memory.",
                hint="daphne and listen_notifications run in separate processes and would never "
                "see each other's messages; use channels_redis.core.RedisChannelLayer.",
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
