"""Half-open / silent Redis: SIGSTOP the redis-server; the listener must notice on its own.

A stopped server keeps every TCP connection open and answers nothing, like a peer behind a
dead NAT entry: no error ever arrives. The listener PINGs an idle subscription after
HEALTH_CHECK_INTERVAL and gives up after HEALTH_CHECK_TIMEOUT without an answer, reconnects
once Redis answers again, and catches up from the database.
"""

from __future__ import annotations

import time

import pytest

from notifications import conf
from notifications.models import Delivery
from notifications.services import notify
from tests.faults.conftest import (
    FAULT_TEST,
    Stack,
    delivered_ids,
    make_users,
    undispatched,
    wait_until,
)

pytestmark = FAULT_TEST


@pytest.mark.timeout(150)
def test_listener_detects_a_silent_redis_reconnects_and_catches_up(stack: Stack) -> None:
    settings = conf.get()
    (user,) = make_users(1, "silent")
    daphne = stack.start_daphne()
    listener = stack.start_listener()
    tab = stack.bell(user, daphne)
    before = notify(user, "before the stall")
    wait_until(lambda: tab.ids() == {before.pk}, 10, "the first push")

    mark = len(listener.lines)
    stack.redis.pause()
    paused_at = time.monotonic()
    started = time.monotonic()
    early = notify(user, "saved as the stall began")  # PUBLISH times out; the save succeeds
    early_seconds = time.monotonic() - started

    # Detection: an unanswered PING, within interval + timeout (plus the sweeps' own waits
    # on the silent server, each bounded too).
    detect_budget = settings.HEALTH_CHECK_INTERVAL + settings.HEALTH_CHECK_TIMEOUT + 15
    listener.wait_for_line("Redis connection lost", timeout=detect_budget, start=mark)
    detected = time.monotonic() - paused_at
    late = [notify(user, f"saved during the stall {i}").pk for i in range(3)]
    stalled = time.monotonic() - paused_at

    resume_mark = len(listener.lines)
    stack.redis.resume()
    resumed = time.monotonic()
    listener.wait_for_line("Subscribed to", timeout=20, start=resume_mark)
    resubscribed = time.monotonic() - resumed
    saved = {early.pk, *late}
    caught_up = wait_until(
        lambda: Delivery.objects.filter(notification_id__in=saved).count() == len(saved),
        15,
        lambda: f"{undispatched()} undispatched\n{listener.output}",
    )
    wait_until(
        lambda: tab.ids() == delivered_ids(user),
        15,
        lambda: f"tab has {sorted(tab.ids())}, db {sorted(delivered_ids(user))}",
    )
    print(
        f"\nsilent Redis: stalled {stalled:.1f} s, stall detected after {detected:.1f} s, "
        f"resubscribed {resubscribed:.2f} s after SIGCONT, backlog dispatched "
        f"{caught_up:.2f} s later; the save during the stall took {early_seconds:.2f} s"
    )
    lost = "\n".join(line for line in listener.lines[mark:] if "connection lost" in line)
    print(lost)

    assert detected <= detect_budget
    assert early_seconds < settings.PUBLISH_TIMEOUT + 1.0
    assert listener.popen.poll() is None, "the same listener recovers"
    snap = tab.snapshot()
    assert snap.ids == {before.pk, *saved}
    assert snap.duplicate_pushes == 0
    assert undispatched() == 0
