"""Test settings: the real stack, kept apart from any other data on the same Redis.

Tests use Redis db 15 (override with TEST_REDIS_URL) and key prefixes unique to the run, and
remove what they create. SQLite runs on a file so daphne and listener subprocesses share it.
"""

import os
import uuid

RUN_ID = os.environ.setdefault("NOTIFYPROJECT_TEST_RUN", uuid.uuid4().hex[:8])
os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CHANNELS_PREFIX", f"notifyproject-test-{RUN_ID}")
os.environ.setdefault("NOTIFICATIONS_CHANNEL", f"notifyproject-test-{RUN_ID}:notifications")

from notifyproject.settings import *  # noqa: E402, F403
from notifyproject.settings import BASE_DIR, DATABASES, NOTIFICATIONS  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{RUN_ID}.sqlite3")}
# PostgreSQL runs with the connection pool production uses; tests/conftest.py closes the
# pools before the test database is dropped, and renews one a test's event loop leaked into.

NOTIFICATIONS = {
    **NOTIFICATIONS,
    # Tests count exact Delivery rows; the model-signal examples have tests of their own.
    "WELCOME_NEW_USERS": False,
    "NOTIFY_GROUP_JOINS": False,
    "SWEEP_INTERVAL": 1.0,
    "RECONNECT_MAX_DELAY": 1.0,
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests

# The live daphne outlives the content types of each transactional test (see the module).
MIDDLEWARE = [*MIDDLEWARE, "tests.live_middleware.ForgetContentTypes"]  # noqa: F405
