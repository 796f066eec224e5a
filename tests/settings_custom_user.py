"""Test settings for tests/custom_user: the same isolated stack, a UUID-keyed user model.

Everything else comes from tests.settings (Redis db 15, per-run key prefixes); only the user
model and the test database's name differ, so this suite may run beside the main one.
"""

from tests.settings import *  # noqa: F403
from tests.settings import BASE_DIR, DATABASES, INSTALLED_APPS, RUN_ID

INSTALLED_APPS = [*INSTALLED_APPS, "tests.custom_user.accounts"]
AUTH_USER_MODEL = "accounts.User"

DATABASES = {"default": {**DATABASES["default"]}}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {
        "NAME": str(BASE_DIR / f".test-db-{RUN_ID}-custom-user.sqlite3")
    }
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_custom_user"}
