"""The test suite's side of the supervisor: its children share this run's database and Redis.

Starting, waiting for and stopping daphne, the listener and redis-server is the job of
``notifyproject.demo.supervisor`` (also used by ``make run`` and the benchmark); this module
re-exports what the tests call and adds the one thing only a test run knows: the test
database's URL, for the children's environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

from notifyproject.demo.supervisor import (
    ROOT,
    Process,
    free_port,
    spawn,
    start_daphne,
    start_listener,
    start_redis,
)

__all__ = [
    "BIN",
    "ROOT",
    "Process",
    "child_env",
    "database_url",
    "free_port",
    "spawn",
    "start_daphne",
    "start_listener",
    "start_redis",
]

BIN = Path(sys.executable).parent


def database_url() -> str:
    """Return a DATABASE_URL for the test database this process is using now."""
    database = connection.settings_dict
    if database["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{database['NAME']}"
    user = database.get("USER") or ""
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = database.get("HOST") or "127.0.0.1"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{database['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process sharing this test run's database and Redis.

    The children run this run's settings module: tests.settings, or the custom-user-model
    suite's (``--ds``), so both sides agree on the user model.
    """
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=settings.SETTINGS_MODULE or "tests.settings",
        DATABASE_URL=database_url(),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env
