"""Read the project's configuration from the environment (twelve-factor style)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from notifications.setup import sqlite_database

TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """Return the boolean in environment variable ``name``; reject anything ambiguous."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated environment variable as a list of stripped items."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# Connections per process: daphne's thread pool and the listener's batches fit well within it.
POOL_SIZE = 20


def _query_bool(name: str, raw: str) -> bool:
    """Return a DATABASE_URL query flag, read like env_bool (so ``pool=0`` means off)."""
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES - {""}:
        return False
    raise ValueError(f"DATABASE_URL: {name}={raw!r} is not a boolean (use 1/0, true/false)")


def _query_positive_int(name: str, raw: str) -> int:
    """Return a DATABASE_URL query number that must be a whole number of at least 1."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"DATABASE_URL: {name}={raw!r} is not a whole number of at least 1")
    return value


def parse_database_url(url: str, base_dir: Path) -> dict[str, Any]:
    """Turn ``sqlite:///path`` or ``postgres://user:pw@host:port/name`` into a DATABASES entry."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query))
    if scheme == "sqlite":
        # sqlite:///relative.sqlite3 is relative to the project; sqlite:////abs/path is absolute.
        raw_path = unquote(parts.path)
        path = Path(raw_path[1:]) if raw_path.startswith("/") else Path(raw_path)
        if not path.is_absolute():
            path = base_dir / path
        return sqlite_database(path)
    if scheme in {"postgres", "postgresql", "pgsql"}:
        # The two keys that are ours come out first; what is left goes to libpq as is
        # (sslmode=..., connect_timeout=...), and libpq refuses a key it does not know.
        pool = _query_bool("pool", options.pop("pool", "1"))
        pool_size = _query_positive_int("pool_size", options.pop("pool_size", str(POOL_SIZE)))
        db_options: dict[str, Any] = dict(options)
        if pool:
            # A connection pool, not CONN_MAX_AGE: under ASGI each request runs in a thread of
            # its own, and per-thread persistent connections would leak. The pool lets daphne
            # and the listener reuse connections instead of paying a connect per query.
            db_options["pool"] = {"min_size": 1, "max_size": pool_size}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": not pool,
            "OPTIONS": db_options,
        }
    raise ValueError(f"DATABASE_URL scheme {scheme!r} is not supported (use sqlite or postgres)")
