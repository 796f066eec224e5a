"""Redis Sentinel failover under load: SIGKILL the master; the stack follows the new one.

A real group on loopback: a master, one replica (``replicaof``) and three sentinels
(``redis-server <conf> --sentinel``, quorum 2, down after 1 s), each with its own config file
in a temporary directory (sentinels rewrite theirs). daphne, the listener and a creator
process find the master only through the sentinels (``REDIS_SENTINELS`` and
``REDIS_SENTINEL_MASTER``, read by the demo settings that tests.settings wraps). Under a
steady stream of notifications the master is SIGKILLed: the sentinels promote the replica,
and the listener (its subscription), the save hook's PUBLISH and the channel layer reconnect
to it. Nothing may be lost or doubled, and new pushes must be live again within seconds of
the promotion.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.db.models import Count, Max

from notifications.models import Delivery, Notification
from notifyproject.demo.supervisor import stop_all
from tests import processes
from tests.faults.conftest import (
    FAULT_TEST,
    Creator,
    Spec,
    Stack,
    delivered_ids,
    make_users,
    undispatched,
    wait_until,
)

pytestmark = FAULT_TEST

MASTER_NAME = "notifyproject-test"
# Sentinel's own knobs: the master is "down" after 1 s of silence, a failover may take 5 s.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
USERS = 12
CLIENTS = 6
NOTIFICATIONS = 240
RATE = 20.0  # notifications per second: ~12 s of load
KILL_AT = 80  # notifications created before the master dies
# From promotion to the first push of a notification created after it: the listener's
# reconnect back-off (RECONNECT_MAX_DELAY, 1 s in tests), its sweep, daphne's layer reconnect.
FIRST_PUSH_BUDGET = 8.0
SEED = 4242


def redis_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SentinelGroup:
    """A master, a replica and three sentinels on free loopback ports, in a temp directory.

    It stands in for the fault stack's ``PrivateRedis`` (``resume``, ``running``, ``proc``,
    ``client``): nothing here is restarted behind the test's back.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="notifyproject-sentinel-"))
        self.data_ports = [processes.free_port(), processes.free_port()]
        self.sentinel_ports = [processes.free_port() for _ in range(3)]
        self.servers: dict[int, processes.Process] = {}
        self.sentinels: list[processes.Process] = []
        self.proc: processes.Process | None = None  # Stack.all_output: see output()
        self.server = shutil.which("redis-server") or "/usr/bin/redis-server"

    # ---- what the Stack expects of its Redis --------------------------------------------

    running = True

    def resume(self) -> None:
        """Nothing is paused here."""

    def client(self) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1", self.master_address()[1], socket_timeout=5, socket_connect_timeout=5
        )

    # ---- the group ----------------------------------------------------------------------

    @property
    def sentinels_env(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def _spawn(self, name: str, conf: str, port: int, *extra: str) -> processes.Process:
        path = self.dir / f"{name}.conf"
        path.write_text(conf)
        proc = processes.spawn(name, [self.server, str(path), *extra], dict(os.environ))
        proc.wait_for_port(port, timeout=15)
        return proc

    def start(self) -> None:
        master = self.data_ports[0]
        for index, port in enumerate(self.data_ports):
            workdir = self.dir / f"data-{port}"
            workdir.mkdir()
            # A config file of their own, so the CONFIG REWRITE of a promotion succeeds; no
            # persistence; diskless sync at once (Redis 7 waits 5 s by default).
            conf = (
                f'port {port}\nbind 127.0.0.1\ndir {workdir}\nsave ""\nappendonly no\n'
                "repl-diskless-sync-delay 0\n"
            )
            if index == 1:
                conf += f"replicaof 127.0.0.1 {master}\n"
            name = "redis-master" if index == 0 else "redis-replica"
            self.servers[port] = self._spawn(name, conf, port)
        wait_until(self._replica_in_sync, 20, "the replica's link to the master")
        for index, port in enumerate(self.sentinel_ports):
            conf = (
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self.sentinels.append(self._spawn(f"sentinel-{index + 1}", conf, port, "--sentinel"))
        # Sentinels find each other and the replica through the master's hello channel
        # (every 2 s): a failover needs them all known first.
        wait_until(self._sentinels_ready, 30, "three sentinels that know each other")

    def _replica_in_sync(self) -> bool:
        with contextlib.closing(redis.Redis("127.0.0.1", self.data_ports[1])) as replica:
            return replica.info("replication").get("master_link_status") == "up"

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            with contextlib.closing(redis.Redis("127.0.0.1", port, socket_timeout=2)) as sentinel:
                state = sentinel.sentinel_master(MASTER_NAME)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
        return True

    def master_address(self) -> tuple[str, int]:
        """Where the sentinels say the master is (any sentinel that answers)."""
        for port in self.sentinel_ports:
            with (
                contextlib.suppress(redis.RedisError),
                contextlib.closing(redis.Redis("127.0.0.1", port, socket_timeout=2)) as sentinel,
            ):
                host, master_port = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
                return redis_text(host), int(master_port)
        raise AssertionError("no sentinel answers")

    def kill_master(self) -> int:
        """SIGKILL the current master; return its port."""
        port = self.master_address()[1]
        proc = self.servers[port]
        proc.signal(signal.SIGKILL)
        proc.popen.wait(10)
        return port

    def output(self) -> str:
        return "\n\n".join(
            f"--- {proc.name} ---\n{proc.output}"
            for proc in [*self.servers.values(), *self.sentinels]
        )

    def stop(self) -> None:
        """Stop every server and sentinel (the supervisor's way) and remove the directory."""
        try:
            stop_all([*self.sentinels, *self.servers.values()], grace=5)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def sentinel_group() -> Iterator[SentinelGroup]:
    group = SentinelGroup()
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.mark.timeout(120)
def test_sigkill_of_the_master_under_load(
    sentinel_group: SentinelGroup, live_env: dict[str, str], transactional_db: None
) -> None:
    group = sentinel_group
    env = {
        **live_env,
        "REDIS_SENTINELS": group.sentinels_env,
        # The test settings' REDIS_URL (the shared test Redis) then names no server: only its
        # database number applies, to the private master.
        "REDIS_SENTINEL_MASTER": MASTER_NAME,
    }
    users = make_users(USERS, "sentinel")
    clients_users = users[:CLIENTS]
    user_ids = [user.pk for user in users]
    rng = random.Random(SEED)
    plan: list[Spec] = []
    audiences: list[set[int]] = []
    for index in range(NOTIFICATIONS):
        if index % 40 == 17:
            plan.append(Spec("all", None, f"failover {index} to everyone"))
            audiences.append(set(user_ids))
        else:
            user = rng.choice(clients_users if rng.random() < 0.7 else users)
            plan.append(Spec("user", user.pk, f"failover {index} to {user.username}"))
            audiences.append({user.pk})

    stack = Stack(group, env)  # type: ignore[arg-type]  # a SentinelGroup stands in for Redis
    creator: Creator | None = None
    try:
        daphne = stack.start_daphne()
        listener = stack.start_listener()
        assert "Sentinel master" in listener.output, listener.output
        clients = [stack.bell(user, daphne, ping_interval=0.5) for user in clients_users]
        creator = Creator(stack, plan, RATE)

        creator.wait_for(KILL_AT, 30)
        old_master = group.master_address()
        mark = len(listener.lines)
        group.kill_master()
        killed = time.monotonic()
        promotion = wait_until(
            lambda: group.master_address() != old_master,
            FAILOVER_TIMEOUT_MS / 1000 + 10,
            "a sentinel promoting the replica",
            interval=0.02,
        )
        promoted = time.monotonic()
        ceiling = Notification.objects.aggregate(last=Max("id"))["last"] or 0
        listener.wait_for_line("Subscribed to", timeout=15, start=mark)
        resubscribed = time.monotonic() - promoted

        def pushed_after_promotion() -> bool:
            return any(any(nid > ceiling for nid in c.snapshot().pushes) for c in clients)

        first_push = wait_until(
            pushed_after_promotion, FIRST_PUSH_BUDGET, "a push of a notification made after it"
        )

        created = creator.finish(timeout=60)
        dispatched_in = wait_until(
            lambda: undispatched() == 0, 30, lambda: f"{undispatched()} still undispatched"
        )

        def caught_up() -> bool:
            return all(
                c.ids() == delivered_ids(u) for c, u in zip(clients, clients_users, strict=True)
            )

        wait_until(caught_up, 30, "every client holding its user's notifications", interval=0.2)
        snapshots = [c.snapshot() for c in clients]
        stack.loop.stop_clients()

        expected = {
            (nid, uid) for nid, audience in zip(created, audiences, strict=True) for uid in audience
        }
        actual = set(Delivery.objects.values_list("notification_id", "user_id"))
        duplicate_rows = (
            Delivery.objects.values("notification_id", "user_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )
        dispatches = stack.dispatch_counts()
        by_push = sum(len(set(s.pushes)) for s in snapshots)
        by_sync = sum(len(s.sync_only) for s in snapshots)
        print(
            f"\nSentinel failover: master SIGKILLed at #{KILL_AT}; promoted "
            f"{promotion:.2f} s after the kill (down-after {DOWN_AFTER_MS} ms); listener "
            f"resubscribed {resubscribed:.2f} s after the promotion; first push of a new "
            f"notification {first_push:.2f} s after it; {len(created)} created at "
            f"{creator.achieved_rate:.0f}/s, backlog dispatched {dispatched_in:.2f} s after "
            f"the last; {len(actual & expected)} of {len(expected)} rows, "
            f"{len(expected - actual)} lost, {duplicate_rows} duplicate rows, "
            f"{sum(s.duplicate_pushes for s in snapshots)} duplicate pushes; clients got "
            f"{by_push} by push, {by_sync} only by sync"
        )
        lost_lines = [line for line in listener.lines[mark:] if "connection lost" in line]
        print("\n".join(lost_lines[:5]))

        assert actual == expected, f"lost {sorted(expected - actual)[:10]}"
        assert duplicate_rows == 0
        assert all(s.duplicate_pushes == 0 for s in snapshots)
        assert sorted(nid for nid, n in dispatches.items() if n > 1) == []
        for snap, user in zip(snapshots, clients_users, strict=True):
            assert snap.ids == delivered_ids(user), snap.name
        assert listener.alive() and daphne.proc.alive(), "the same processes followed"
        assert killed < promoted
    except BaseException:
        print(stack.all_output())
        print(group.output())
        raise
    finally:
        if creator is not None:
            creator.halt()
        stack.close()


def test_the_health_command_follows_the_new_master(
    sentinel_group: SentinelGroup, live_env: dict[str, str], transactional_db: None
) -> None:
    """After the failover above (or without it), health finds the master through Sentinel."""
    env = {
        **live_env,
        "REDIS_SENTINELS": sentinel_group.sentinels_env,
        "REDIS_SENTINEL_MASTER": MASTER_NAME,
    }
    stack = Stack(sentinel_group, env)  # type: ignore[arg-type]
    try:
        stack.start_listener()
        health = processes.spawn(
            "health", [sys.executable, "manage.py", "notifications_health"], stack.child_env()
        )
        try:
            health.popen.wait(60)
        finally:
            health.stop()
        output = health.output
        host, port = sentinel_group.master_address()
        assert health.returncode == 0, output
        assert f"Sentinel master '{MASTER_NAME}'" in output, output
        with contextlib.closing(redis.Redis(host, port)) as master:
            assert master.info("replication")["role"] == "master"
    finally:
        stack.close()
