"""Test settings whose bell pings every ``BELL_PING_INTERVAL`` seconds (from the environment).

Real pages notice a dropped push at their next ping; 30 s (the default) is too long for a
test. Set as DJANGO_SETTINGS_MODULE of the daphne that serves the test's pages, on top of
``BELL_BASE_SETTINGS`` (default ``tests.settings``; e.g. the small-capacity settings of the
dropped-push test), so every other setting is that module's.
"""

import importlib
import os

_base = importlib.import_module(os.environ.get("BELL_BASE_SETTINGS", "tests.settings"))
globals().update({name: value for name, value in vars(_base).items() if name.isupper()})

NOTIFICATIONS = {
    **_base.NOTIFICATIONS,
    "BELL_PING_INTERVAL": float(os.environ.get("BELL_PING_INTERVAL", "1.0")),
}
