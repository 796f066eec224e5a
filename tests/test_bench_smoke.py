"""``manage.py bench_notifications --quick`` runs through, reports sane figures, cleans up.

The triage scenarios (T1, T2) and issue 12's (M2: a broadcast to users some of whom muted its
category; R1: a recall) run in both client modes: bell in the full smoke run, passive in runs
of their own.

The benchmark is a command, not a test: this only checks that the smoke version completes
against the test database and Redis, that every scenario reports non-zero, consistent figures
with no frame lost, and that it leaves no user, row or Redis key behind.
"""

import json
import subprocess
import sys

import pytest
import redis
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session

from notifications.models import CategoryPreference, Notification
from notifyproject.demo.bench.config import SCENARIOS
from tests import processes

pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.bench,
    pytest.mark.django_db(transaction=True),
]


def median(scenario: dict, key: str) -> float | None:
    return scenario["figures"][key]["median"]


def assert_latency(scenario: dict, p50: str = "p50_ms", p99: str = "p99_ms") -> None:
    assert median(scenario, p50) > 0
    assert median(scenario, p50) <= median(scenario, p99)
    assert median(scenario, "expected") > 0
    assert median(scenario, "received") == median(scenario, "expected")
    assert median(scenario, "missing") == 0


def run_bench(live_env, output, *args: str, timeout: float = 540) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "bench_notifications",
            "--quick",
            "--output",
            str(output),
            *args,
        ],
        cwd=processes.ROOT,
        env=live_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_triage(scenarios: dict) -> None:
    """T1: every other tab heard of every verb; T2: every snooze came back, none early."""
    t1 = scenarios["t1"]
    # A verb whose push to the user's group missed its deadline (a stalled Redis on a busy
    # machine) is told to the sending tab alone, by design: daphne logs it, and only that
    # excuses a missing frame on the other tabs (at most two per verb) or a doubled echo.
    excused = median(t1, "push_deadline_missed")
    assert median(t1, "p50_ms") > 0
    assert median(t1, "p50_ms") <= median(t1, "p99_ms")
    assert median(t1, "expected") > 0
    assert median(t1, "missing") <= 2 * excused
    assert median(t1, "duplicates") <= excused
    assert median(t1, "sent") == t1["params"]["users"] * t1["params"]["actions_per_user"]
    for verb in ("archive", "snooze", "unread"):
        assert median(t1, f"{verb}_p99_ms") > 0, verb
    t2 = scenarios["t2"]
    assert_latency(t2)
    assert median(t2, "expected") == t2["params"]["sockets"]
    assert median(t2, "early") == 0
    assert median(t2, "duplicates") == 0
    assert median(t2, "same_max_ms") > 0
    assert median(t2, "spread_max_ms") > 0
    assert median(t2, "snoozed_p99_ms") > 0


def assert_preferences_and_recall(scenarios: dict) -> None:
    """M2: every socket that did not mute got it, none that did; rows = audience - muted.
    R1: every socket got the recalled frame, once."""
    m2 = scenarios["m2"]
    assert_latency(m2)
    assert m2["params"]["muted_online"] > 0
    assert median(m2, "muted_sockets") == m2["params"]["muted_online"]
    assert median(m2, "expected") == m2["params"]["online"] - m2["params"]["muted_online"]
    assert median(m2, "muted_frames") == 0
    assert median(m2, "duplicates") == 0
    assert median(m2, "persisted_ms") > 0
    assert median(m2, "deliveries") == median(m2, "deliveries_expected")
    assert median(m2, "deliveries_expected") == (
        m2["repetitions"][0]["audience"] - m2["params"]["muted_users"]
    )
    assert median(m2, "row_errors") == 0
    assert median(m2, "muted_rows") == 0
    assert median(m2, "muted_count") == m2["params"]["muted_users"]
    r1 = scenarios["r1"]
    assert_latency(r1)
    assert median(r1, "expected") == r1["params"]["online"]
    assert median(r1, "duplicates") == 0
    assert median(r1, "broadcast_missing") == 0
    assert median(r1, "call_ms") > 0


def assert_clean(report: dict, live_env: dict) -> None:
    """Nothing of the run is left: users, sessions, notifications, Redis keys."""
    run_id = report["run_id"]
    assert report["remaining_users"] == 0
    assert not get_user_model().objects.filter(username__startswith="bench-").exists()
    assert not Session.objects.filter(session_key__startswith=f"bench{run_id}").exists()
    assert not Notification.objects.filter(title__startswith=f"[bench-{run_id}]").exists()
    assert not CategoryPreference.objects.filter(user__username__startswith="bench-").exists()
    client = redis.Redis.from_url(live_env["REDIS_URL"])
    try:
        assert not list(client.scan_iter(match=f"notifybench-{run_id}*", count=1000))
    finally:
        client.close()


@pytest.mark.timeout(600)
def test_quick_benchmark_reports_every_scenario_and_cleans_up(live_env, tmp_path):
    output = tmp_path / "bench.json"
    # G1 without its Chromium page here: the bell's side of a burst is what
    # tests/browser/test_bell_grouping.py checks, and one CI run of this (locally 90 s)
    # went past its 540 s with the page in it, cause not yet found.
    done = run_bench({**live_env, "CHROMIUM_PATH": "/nonexistent/chromium"}, output)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "commit -> socket p50" in done.stdout  # the table
    assert "one socket = one browser" in done.stdout  # bell clients model the leader tab

    report = json.loads(output.read_text())
    assert report["errors"] == []
    assert report["remaining_users"] == 0
    assert report["machine"]["cores"] >= 1
    assert report["machine"]["database_vendor"]
    assert report["machine"]["redis"]
    scenarios = report["scenarios"]
    assert set(scenarios) == set(SCENARIOS)
    for name, scenario in scenarios.items():
        assert scenario["error"] is None, name
        assert len(scenario["repetitions"]) == 1, name

    assert_latency(scenarios["p1"])
    assert median(scenarios["p1"], "duplicates") == 0

    p2 = scenarios["p2"]
    assert_latency(p2)
    assert median(p2, "persisted_ms") > 0
    assert median(p2, "deliveries") == p2["params"]["delivery_rows_expected"]

    p3 = scenarios["p3"]
    assert median(p3, "offered_rate") > 0
    assert median(p3, "dispatch_rate") > 0
    assert median(p3, "capacity") > 0
    assert median(p3, "keeps_up") in (0, 1)

    p4 = scenarios["p4"]
    assert median(p4, "sockets") == p4["params"]["sockets"]
    assert median(p4, "failed") == 0
    assert median(p4, "rss_per_socket_kib") > 0
    assert median(p4, "setup_rate") > 0

    p5 = scenarios["p5"]
    assert_latency(p5)
    assert median(p5, "persisted_ms") > 0

    g1 = scenarios["g1"]
    assert_latency(g1)  # P1's load for the other users meanwhile
    assert median(g1, "burst_created") == g1["params"]["burst"]
    assert median(g1, "burst_missing") == 0  # every push still reaches the user's socket
    assert median(g1, "badge_delta") == 1
    assert median(g1, "api_items") == 1
    assert median(g1, "api_group_count") == g1["params"]["burst"]
    if "no bell figures" not in " ".join(g1["notes"]):
        assert median(g1, "bell_rows") == 1
        assert median(g1, "bell_group_count") == g1["params"]["burst"]
        assert median(g1, "bell_badge_delta") == 1
        assert median(g1, "bell_toasts_per_window") == 1

    peers = scenarios["peers"]
    for key in ("hq_s", "fork_s", "ours_s", "hq_ratio", "fork_ratio"):
        assert median(peers, key) > 0, key
    rows = peers["repetitions"][0]["rows"]
    assert rows["hq"] == rows["fork"] == rows["ours"] == peers["params"]["recipients"]

    scale = scenarios["scale"]
    assert_latency(scale, "p50_2d_ms", "p99_2d_ms")
    assert median(scale, "p50_1d_ms") <= median(scale, "p99_1d_ms")
    assert median(scale, "daphnes_reached") == 2
    assert median(scale, "duplicates") == 0
    assert median(scale, "row_errors") == 0

    assert_triage(scenarios)
    assert_preferences_and_recall(scenarios)
    assert_clean(report, live_env)


@pytest.mark.timeout(300)
def test_quick_triage_scenarios_with_passive_clients(live_env, tmp_path):
    output = tmp_path / "bench.json"
    done = run_bench(live_env, output, "--scenario", "t1,t2", "--client-mode", "passive")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "sent on one tab -> frame on another p99" in done.stdout
    assert "snooze end -> notification frame max" in done.stdout
    assert "one socket = one browser" not in done.stdout

    report = json.loads(output.read_text())
    assert report["errors"] == []
    assert set(report["scenarios"]) == {"t1", "t2"}
    for name, scenario in report["scenarios"].items():
        assert scenario["error"] is None, name
        assert len(scenario["repetitions"]) == 1, name
    assert_triage(report["scenarios"])
    # Passive sockets only listen: no ack, seen or gap sync went out.
    assert not any(
        key.startswith("sent:")
        for scenario in report["scenarios"].values()
        for key in scenario["repetitions"][0]["frames"]
    )
    assert_clean(report, live_env)


@pytest.mark.timeout(300)
def test_quick_preferences_and_recall_scenarios_with_passive_clients(live_env, tmp_path):
    output = tmp_path / "bench.json"
    done = run_bench(live_env, output, "--scenario", "m2,r1", "--client-mode", "passive")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "frames received by sockets that muted it" in done.stdout
    assert "recall commit -> recalled frame p99" in done.stdout

    report = json.loads(output.read_text())
    assert report["errors"] == []
    assert set(report["scenarios"]) == {"m2", "r1"}
    for name, scenario in report["scenarios"].items():
        assert scenario["error"] is None, name
        assert len(scenario["repetitions"]) == 1, name
    assert_preferences_and_recall(report["scenarios"])
    assert_clean(report, live_env)
