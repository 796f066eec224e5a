"""Test settings with a tiny channel-layer capacity, so a burst overflows a socket's channel.

channels-redis drops a group message silently when the target channel already holds
``capacity`` messages (the sender decides, so the listener must run with this too), and the
receiving process buffers at most ``capacity`` per channel. Set as DJANGO_SETTINGS_MODULE of
the child processes of tests/faults/test_dropped_pushes.py.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import CHANNEL_LAYERS

CHANNEL_LAYERS = {
    "default": {
        **CHANNEL_LAYERS["default"],
        "CONFIG": {
            **CHANNEL_LAYERS["default"]["CONFIG"],
            "capacity": int(os.environ.get("FAULTS_CHANNEL_CAPACITY", "20")),
        },
    }
}
