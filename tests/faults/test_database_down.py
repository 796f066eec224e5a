"""The database goes away under load: PostgreSQL stopped hard for ~20 s, then started again.

A private PostgreSQL cluster (``initdb``/``pg_ctl`` as the ``postgres`` user, its own port and
socket directory, trust auth, fsync off but commits synchronous), shared by the module, holds
the whole stack's data: two daphne processes and two listeners run against it (with the
connection pool the settings give them, as production does), six bell clients stay
connected, and a creator process saves
notifications through the real save hook at a steady rate, retrying while the database is
away (its own failures are not the app's: it connects per query, no pool).

Mid-load the cluster is stopped with ``pg_ctl stop -m immediate`` (a crash: no goodbye to the
clients) and started again ~20 s later. One listener gets SIGTERM during the outage and must
exit 0 promptly. The pass: the other listener and both daphnes never exit; every committed
notification has its Delivery row (0 lost), no row twice, nothing dispatched twice; each
client's ids (pushes and syncs) equal the database's for its user; new pushes are live within
2 s of the database's return; and the listener logs the outage in a line, not a traceback storm.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import processes
from tests.faults.client import BellClient, ClientLoop
from tests.faults.conftest import FAULT_TEST, Stack, wait_until
from tests.processes import ROOT

pytestmark = FAULT_TEST

USERS = 6  # one bell client each, over two daphne processes
RATE = 20.0  # notifications per second
OUTAGE_SECONDS = 20.0
AFTER_SECONDS = 4.0  # load after the return, before the creator stops
PUSH_RESUME_LIMIT = 2.0  # new pushes live within this long after the database's return
DATABASE = "notifyproject"
ARTIFACTS = ROOT / "test-artifacts"  # the figures, kept for the README (git-ignored)

NOTIFICATION_TABLE = "realtime_notifications_notification"
DELIVERY_TABLE = "realtime_notifications_delivery"


# ---- a private PostgreSQL cluster ---------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl live: on PATH (Debian links them there), or Debian's own dir."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster this module may stop hard and start again.

    PostgreSQL refuses to run as root: as root, every command runs as the ``postgres`` OS
    user (``runuser``), which owns the cluster's directory.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = processes.free_port()
        self.root = Path(tempfile.mkdtemp(prefix="notifyproject-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.running = False
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, timeout: float = 60) -> str:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                f"{self.server_log()}"
            )
        return done.stdout

    def server_log(self) -> str:
        with contextlib.suppress(OSError):
            return "--- postgres log ---\n" + "\n".join(self.log.read_text().splitlines()[-30:])
        return ""

    def init(self) -> None:
        self.sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            # fsync off is safe here: a killed server's writes are in the OS's cache, and
            # the machine does not crash. synchronous_commit must stay on: off, a commit is
            # acknowledged before its WAL reaches the OS, and the kill would lose it.
            f"-h 127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", options, "start",
        )  # fmt: skip
        self.running = True

    def kill(self) -> None:
        """Stop at once, as a crash would: no checkpoint, every connection cut."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.running = False

    def remove(self) -> None:
        if self.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self, dbname: str = DATABASE):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, autocommit=True,
            connect_timeout=5,
        )  # fmt: skip

    def query(self, sql: str) -> list[tuple]:
        with contextlib.closing(self.connect()) as connection:
            return connection.execute(sql).fetchall()


@pytest.fixture(scope="module")
def private_postgres(live_env: dict[str, str]) -> Iterator[PrivatePostgres]:
    """A migrated private cluster for the module, removed afterwards whatever happens."""
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("initdb/pg_ctl not installed (Debian: apt-get install postgresql)")
    cluster = PrivatePostgres(bindir)
    try:
        cluster.init()
        cluster.start()
        with contextlib.closing(cluster.connect("postgres")) as connection:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
        migrate = processes.spawn(
            "migrate",
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            {**live_env, "DATABASE_URL": cluster.url},
        )
        assert migrate.popen.wait(180) == 0, migrate.output
        migrate.stop()
        yield cluster
    finally:
        cluster.remove()


# ---- the children that use it -------------------------------------------------------------

SETUP_SCRIPT = """
import json, sys
import django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
User = get_user_model()
rows = []
for i in range(int(sys.argv[1])):
    user = User.objects.create(**{User.USERNAME_FIELD: f"dbdown{i:03d}@example.com"})
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    rows.append([str(user.pk), f"{settings.SESSION_COOKIE_NAME}={cookie}"])
print("USERS " + json.dumps(rows), flush=True)
print("POOL " + ("on" if settings.DATABASES["default"]["OPTIONS"].get("pool") else "off"))
"""

# Saves notifications through the real save hook (on_commit -> PUBLISH) at a steady rate
# until the stop file appears; while the database is away each attempt fails fast (no pool)
# and is retried. Every success prints its id and the wall-clock time of its commit.
CREATOR_SCRIPT = """
import json, os, sys, time
import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import Error, connections
from notifications.services import notify
pks, rate, stop_path = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
users = list(get_user_model().objects.filter(pk__in=pks).order_by("pk"))
print("creator ready", flush=True)
index, next_at = 0, time.monotonic()
while not os.path.exists(stop_path):
    delay = next_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    try:
        made = notify(users[index % len(users)], f"dbdown {index}")
    except Error as exc:
        print(f"failed {index} {type(exc).__name__}", flush=True)
        connections.close_all()
        time.sleep(0.1)
        next_at = time.monotonic()
        continue
    print(f"created {index} {made.pk} {time.time():.3f}", flush=True)
    index += 1
    next_at = max(next_at + 1 / rate, time.monotonic() - 1)  # no burst to catch up
print("creator done", flush=True)
"""


def created_lines(creator: processes.Process) -> dict[int, float]:
    """Ids the creator committed, with the wall-clock time of each commit."""
    made = {}
    for line in list(creator.lines):
        if line.startswith("created "):
            _, _, pk, at = line.split()
            made[int(pk)] = float(at)
    return made


@pytest.mark.timeout(180)
def test_database_outage_under_load(stack: Stack, private_postgres: PrivatePostgres) -> None:
    pg = private_postgres
    stack.env["DATABASE_URL"] = pg.url
    setup = processes.spawn(
        "setup", [sys.executable, "-c", SETUP_SCRIPT, str(USERS)], stack.child_env()
    )
    assert setup.popen.wait(60) == 0, setup.output
    setup.stop()
    users = json.loads(next(line for line in setup.lines if line.startswith("USERS "))[6:])
    pooled = next(line for line in setup.lines if line.startswith("POOL ")).split()[1]

    daphnes = [stack.start_daphne(), stack.start_daphne()]
    survivor = stack.start_listener()
    doomed = stack.start_listener()  # gets SIGTERM mid-outage
    stack.loop = ClientLoop()
    clients: dict[str, BellClient] = {}
    for index, (pk, cookie) in enumerate(users):
        daphne = daphnes[index % len(daphnes)]
        client = BellClient(
            daphne.ws_url, cookie, daphne.origin, name=f"user{index}@{daphne.proc.name}"
        )
        stack.loop.start(client)
        assert client.hello_seen.wait(15), client.snapshot()
        clients[pk] = client
    apps = [survivor, *(d.proc for d in daphnes)]

    def all_alive() -> None:
        for proc in apps:
            assert proc.alive(), proc.failure(f"exited ({proc.returncode})")

    stop_file = Path(tempfile.mkdtemp(prefix="dbdown-")) / "stop"
    creator = processes.spawn(
        "creator",
        [sys.executable, "-c", CREATOR_SCRIPT, json.dumps([pk for pk, _ in users]), str(RATE),
         str(stop_file)],
        stack.child_env(DATABASE_URL=f"{pg.url}?pool=0"),
    )  # fmt: skip
    try:
        creator.wait_for_line("creator ready", timeout=30)
        wait_until(lambda: len(created_lines(creator)) >= 2 * RATE, 30, "load before the outage")
        before = set(created_lines(creator))
        wait_until(
            lambda: before <= set().union(*(c.ids() for c in clients.values())),
            20,
            "the clients receiving the load before the outage",
        )

        # ---- the outage ----------------------------------------------------------------
        mark = len(survivor.lines)
        pg.kill()
        down_at = time.monotonic()
        sigterm_exit: float | None = None
        while time.monotonic() - down_at < OUTAGE_SECONDS:
            all_alive()
            if sigterm_exit is None and time.monotonic() - down_at > OUTAGE_SECONDS / 2:
                doomed.signal(15)
                sent = time.monotonic()
                try:
                    code = doomed.popen.wait(10)
                except subprocess.TimeoutExpired:
                    raise AssertionError(doomed.failure("hung on SIGTERM mid-outage")) from None
                sigterm_exit = time.monotonic() - sent
                assert code == 0, doomed.failure(f"exited {code} on SIGTERM mid-outage")
            time.sleep(0.2)
        pg.start()
        back = time.monotonic()
        back_wall = time.time()
        outage = back - down_at

        # ---- pushes after the return: poll every client for new ids ---------------------
        first_seen: dict[int, float] = {}
        while time.monotonic() - back < AFTER_SECONDS:
            now_wall = time.time()
            for client in clients.values():
                for nid in client.snapshot().pushes:
                    first_seen.setdefault(nid, now_wall)
            time.sleep(0.02)
        stop_file.touch()
        assert creator.popen.wait(30) == 0, creator.output
        all_alive()
    finally:
        stop_file.touch()
        creator.stop()
        shutil.rmtree(stop_file.parent, ignore_errors=True)

    made = created_lines(creator)
    after = {nid: at for nid, at in made.items() if at >= back_wall}
    assert after, f"nothing was created after the return:\n{creator.output[-2000:]}"
    pushed_after = sorted(first_seen[nid] for nid in after if nid in first_seen)
    assert pushed_after, "no notification created after the return was pushed live"
    resumed = pushed_after[0] - back_wall
    first_commit = min(after.values()) - back_wall
    latencies = [first_seen[nid] - at for nid, at in after.items() if nid in first_seen]

    # ---- recovery: the database, then every client -----------------------------------
    def undispatched() -> int:
        return pg.query(
            f"SELECT count(*) FROM {NOTIFICATION_TABLE} "  # noqa: S608 - constant names
            "WHERE dispatched_at IS NULL OR recorded_at IS NULL"
        )[0][0]

    wait_until(lambda: undispatched() == 0, 30, lambda: f"{undispatched()} undispatched")
    by_user: dict[str, set[int]] = {}

    def caught_up() -> bool:
        by_user.clear()
        for user_id, nid in pg.query(f"SELECT user_id, notification_id FROM {DELIVERY_TABLE}"):  # noqa: S608
            by_user.setdefault(str(user_id), set()).add(nid)
        return all(c.ids() == by_user.get(pk, set()) for pk, c in clients.items())

    def lagging() -> str:
        return "; ".join(
            f"{c.name}: missing {sorted(by_user.get(pk, set()) - c.ids())[:10]} "
            f"extra {sorted(c.ids() - by_user.get(pk, set()))[:10]}"
            for pk, c in clients.items()
            if c.ids() != by_user.get(pk, set())
        )

    caught_up_in = wait_until(caught_up, 60, lagging, interval=0.2)
    all_alive()
    snapshots = {pk: c.snapshot() for pk, c in clients.items()}
    stack.loop.stop_clients()

    # ---- the database ------------------------------------------------------------------
    notifications = {row[0] for row in pg.query(f"SELECT id FROM {NOTIFICATION_TABLE}")}  # noqa: S608
    lost = pg.query(
        f"SELECT count(*) FROM {NOTIFICATION_TABLE} n WHERE NOT EXISTS "  # noqa: S608
        f"(SELECT 1 FROM {DELIVERY_TABLE} d WHERE d.notification_id = n.id)"
    )[0][0]
    duplicates = pg.query(
        f"SELECT count(*) FROM (SELECT 1 FROM {DELIVERY_TABLE} "  # noqa: S608
        "GROUP BY notification_id, user_id HAVING count(*) > 1) AS twice"
    )[0][0]
    dispatches = stack.dispatch_counts()
    dispatched_twice = sorted(nid for nid, n in dispatches.items() if n > 1)
    failed_attempts = sum(1 for line in creator.lines if line.startswith("failed "))
    outage_lines = survivor.lines[mark:]
    unavailable = [line for line in outage_lines if "Database unavailable" in line]
    recovered = [line for line in outage_lines if "Database back after" in line]
    attempts = None
    if recovered:
        attempts = int(recovered[0].split("(")[1].split()[0])

    figures = [
        f"database down on PostgreSQL (pool {pooled} in daphne and the listeners)",
        f"  outage                      {outage:.1f} s (pg_ctl stop -m immediate .. start -w)",
        f"  created                     {len(made)} notifications at ~{RATE:.0f}/s "
        f"({failed_attempts} attempts failed while it was down)",
        f"  committed rows              {len(notifications)}",
        f"  lost (no Delivery row)      {lost}",
        f"  duplicate Delivery rows     {duplicates}",
        f"  dispatched twice (logs)     {len(dispatched_twice)}",
        f"  first commit after return   {first_commit:.2f} s",
        f"  pushes resumed              {resumed:.2f} s after the return "
        f"(first live push of a notification created after it)",
        f"  create->push after return   median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} notifications",
        f"  listener retries            {attempts} in {outage:.1f} s "
        f"({(attempts or 0) / outage:.2f}/s); outage logged in {len(unavailable)} line(s)",
        f"  SIGTERM mid-outage          exit 0 in {sigterm_exit:.2f} s",
        f"  clients caught up           {caught_up_in:.2f} s after the load stopped",
        "  client                       ids  pushes  synced  sync-only  dup  reconnects",
    ]
    figures += [
        f"  {s.name:<26} {len(s.ids):>5} {len(s.pushes):>7} {len(set(s.synced)):>7}"
        f" {len(s.sync_only):>10} {s.duplicate_pushes:>4} {s.connects - 1:>11}"
        for s in snapshots.values()
    ]
    report = "\n".join(figures)
    print(f"\n{report}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "database-down-postgresql.txt").write_text(report + "\n")

    # ---- the pass conditions -------------------------------------------------------------
    assert set(made) <= notifications, sorted(set(made) - notifications)[:20]
    assert lost == 0
    assert duplicates == 0
    assert not dispatched_twice, dispatched_twice[:20]
    assert resumed <= PUSH_RESUME_LIMIT, f"pushes resumed {resumed:.2f} s after the return"
    for pk, snap in snapshots.items():
        assert snap.ids == by_user.get(pk, set()), snap.name
        assert snap.duplicate_pushes == 0, snap.name
    assert not stack.loop.failures()
    assert len(unavailable) == 1, unavailable
    assert recovered, "the listener never logged the database's return"
    assert attempts is not None and attempts / outage <= 4, "the listener retried in a tight loop"
    assert "Traceback" not in survivor.output, "the outage logged tracebacks"
    assert sigterm_exit is not None and sigterm_exit < 5
