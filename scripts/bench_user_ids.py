"""Time the recording of a broadcast's rows with integer user ids and with UUID user ids.

Issue 9's target: recording P2's rows (a 10,000-user ``all`` broadcast) with UUID user ids
stays within 2x of integer ids. Each case runs in a child process of its own (the user model
is fixed once Django is set up) against a scratch database it creates and drops:

    .venv/bin/python scripts/bench_user_ids.py                 # SQLite and PostgreSQL
    .venv/bin/python scripts/bench_user_ids.py --databases sqlite --users 2000

Integer ids use ``auth.User`` (tests.settings); UUID ids use the custom user model of
tests/custom_user (tests.settings_custom_user). Each figure is the median of ``--runs``
recordings of ``dispatch.record_broadcast``, rests between chunks included (that is what a
broadcast costs the listener); ``work`` leaves the rests out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"int": "tests.settings", "uuid": "tests.settings_custom_user"}
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/bench_user_ids"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--ids", default="int,uuid")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--child", nargs=2, metavar=("IDS", "DATABASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.users, args.runs)))
        return
    results = []
    for database in args.databases.split(","):
        for ids in args.ids.split(","):
            results.append({"database": database, "ids": ids, **spawn(ids, database, args)})
    report(results, args.users)


def spawn(ids: str, database: str, args: argparse.Namespace) -> dict:
    """Run one case in a fresh interpreter and return what it measured."""
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/bench.sqlite3" if database == "sqlite" else args.postgres_url
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": SETTINGS[ids],
            "DATABASE_URL": url,
            "NOTIFICATIONS_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, __file__, "--child", ids, database]
        command += ["--users", str(args.users), "--runs", str(args.runs)]
        done = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{ids} ids on {database} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_case(users: int, runs: int) -> dict:
    """In the child: create a test database, ``users`` users, and time ``runs`` recordings."""
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        return _measure(users, runs)
    finally:
        connection.creation.destroy_test_db(name, verbosity=0)


def _measure(users: int, runs: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from notifications import dispatch
    from notifications.models import Audience, Delivery, Notification

    model = get_user_model()
    model.objects.bulk_create(
        [
            model(username=f"u{i}", email=f"u{i}@example.com", password="!")  # noqa: S106
            for i in range(users)
        ],
        batch_size=1000,
    )
    backend_cpu = _backend_cpu_clock(connection)
    slept = [0.0]
    real_sleep = time.sleep

    def counting_sleep(seconds: float) -> None:
        slept[0] += seconds
        real_sleep(seconds)

    time.sleep = counting_sleep  # this child process only: to tell rests from work
    totals, works, cpus, inserts, statements = [], [], [], 0, 0
    for run in range(runs):
        [row] = Notification.objects.bulk_create(
            [Notification(title=f"P2 {run}", audience=Audience.ALL)]
        )  # bulk_create: no save hook, so nothing is published
        assert dispatch.claim_broadcast(row.pk) is not None  # noqa: S101
        slept[0] = 0.0
        with CaptureQueriesContext(connection) as queries:
            cpu_began, server_began = time.process_time(), backend_cpu()
            began = time.perf_counter()
            count = dispatch.record_broadcast(row.pk)
            elapsed = time.perf_counter() - began
            cpu = time.process_time() - cpu_began + backend_cpu() - server_began
        assert count == users, count  # noqa: S101
        totals.append(elapsed * 1000)
        works.append((elapsed - slept[0]) * 1000)
        cpus.append(cpu * 1000)
        table = Delivery._meta.db_table
        inserts = sum(
            query["sql"].startswith("INSERT") and table in query["sql"]
            for query in queries.captured_queries
        )
        statements = len(queries.captured_queries)
    return {
        "total_ms": statistics.median(totals),
        "work_ms": statistics.median(works),
        "cpu_ms": statistics.median(cpus),
        "runs_ms": [round(value, 1) for value in totals],
        "chunks": inserts,
        "statements": statements,
    }


def _backend_cpu_clock(connection: object) -> object:
    """Return a function giving the CPU seconds the database has spent for this connection.

    SQLite works inside this process (process_time counts it): 0. PostgreSQL's backend is
    a process of its own; on this machine its /proc schedstat says how long it ran. Wall
    times on a shared 2-core box swing by 2x; CPU time is what the recording costs.
    """
    if connection.vendor != "postgresql":  # type: ignore[attr-defined]
        return lambda: 0.0
    with connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    stat = Path(f"/proc/{pid}/schedstat")
    if not stat.exists():  # a server on another machine
        return lambda: 0.0
    return lambda: int(stat.read_text().split()[0]) / 1e9


def report(results: list[dict], users: int) -> None:
    """Print one line per case and the UUID / int ratios."""
    print(f"record_broadcast: the rows of a {users:,}-user `all` broadcast; median of runs, ms")
    print("(total: wall, rests between chunks included; work: without rests; cpu: this")
    print(" process + the PostgreSQL backend, the figure least disturbed by a busy machine)")
    header = f"{'database':<11} {'ids':<5} {'total':>7} {'work':>7} {'cpu':>7}"
    print(f"{header} {'chunks':>6} {'stmts':>5}  runs (total)")
    for row in results:
        print(
            f"{row['database']:<11} {row['ids']:<5} {row['total_ms']:>7.1f} {row['work_ms']:>7.1f}"
            f" {row['cpu_ms']:>7.1f} {row['chunks']:>6} {row['statements']:>5}  {row['runs_ms']}"
        )
    for database in dict.fromkeys(row["database"] for row in results):
        by_ids = {row["ids"]: row for row in results if row["database"] == database}
        if {"int", "uuid"} <= by_ids.keys():
            uuid_row, int_row = by_ids["uuid"], by_ids["int"]
            print(
                f"{database}: UUID / int = {uuid_row['total_ms'] / int_row['total_ms']:.2f}x"
                f" wall, {uuid_row['cpu_ms'] / int_row['cpu_ms']:.2f}x cpu (target: at most 2x)"
            )


if __name__ == "__main__":
    main()
