"""``manage.py bench_notifications --quick`` runs through, reports sane figures, cleans up.

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

from notifications.models import Notification
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


@pytest.mark.timeout(600)
def test_quick_benchmark_reports_every_scenario_and_cleans_up(live_env, tmp_path):
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "manage.py", "bench_notifications", "--quick", "--output", str(output)],
        cwd=processes.ROOT,
        env=live_env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "commit -> socket p50" in done.stdout  # the table

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

    # Nothing of the run is left: users, sessions, notifications, Redis keys.
    run_id = report["run_id"]
    assert not get_user_model().objects.filter(username__startswith="bench-").exists()
    assert not Session.objects.filter(session_key__startswith=f"bench{run_id}").exists()
    assert not Notification.objects.filter(title__startswith=f"[bench-{run_id}]").exists()
    client = redis.Redis.from_url(live_env["REDIS_URL"])
    try:
        assert not list(client.scan_iter(match=f"notifybench-{run_id}*", count=1000))
    finally:
        client.close()
