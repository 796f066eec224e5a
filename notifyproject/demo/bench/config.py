"""What a benchmark run does: options, the sizes of each scenario, and the issue's targets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

# Names as the command line and the JSON file spell them, in the order they are reported.
SCENARIOS = ("p1", "p2", "p3", "p4", "p5", "m2", "r1", "g1", "t1", "t2", "peers", "scale")
# The order they run in: the throwaway population only grows along it (fewer deletions),
# and the stack changes shape as rarely as possible.
RUN_ORDER = ("p1", "g1", "p3", "t1", "t2", "p2", "m2", "r1", "peers", "scale", "p4", "p5")

TITLES = {
    "p1": "P1 latency",
    "p2": "P2 broadcast",
    "p3": "P3 throughput",
    "p4": "P4 connections",
    "p5": "P5 isolation",
    "m2": "M2 P2 with preferences",
    "r1": "R1 recall",
    "g1": "G1 grouping burst",
    "t1": "T1 triage across tabs",
    "t2": "T2 snooze return",
    "peers": "Against the peers",
    "scale": "Scale: two daphnes, two listeners",
}

CLIENT_MODES = ("bell", "passive")
AUDIENCE_MODES = ("auto", "all", "group")

# 15-second polling finds a new notification after 7.5 s on average.
POLLING_MEAN_MS = 7500.0


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``FULL`` follows the issue, ``QUICK`` is a smoke run."""

    p1_online: int
    p1_rate: float
    p1_duration: float
    p2_users: int
    p2_online: int
    p3_recipients: int
    p3_duration: float
    p3_creators: int
    p3_backlog: int
    p4_sockets: int
    p5_audience: int
    p5_online: int
    p5_rate: float
    p5_duration: float
    p5_broadcast_at: float
    t1_users: int  # each with two or three tabs (sockets), alternately
    t1_rate: float  # triage frames sent per second, all users together
    t2_users: int  # one socket each
    t2_send_rate: float  # snooze frames sent per second
    t2_lead: float  # seconds from the last snooze sent to the shared moment
    t2_spread: float  # the other half come due evenly over this many seconds after it
    m2_users: int
    m2_online: int
    m2_muted_every: int  # every n-th user (of all, so of the online ones too) mutes
    m2_settle: float  # seconds after the last expected frame to catch frames to muted ones
    r1_users: int
    r1_online: int
    g1_online: int  # other users' sockets, P1's load meanwhile
    g1_count: int  # notifications of one group_key to one user
    g1_duration: float  # seconds the burst (and P1's load) takes
    g1_rate: float  # P1's load, notifications/s to the other users
    g1_actors: int  # distinct actors taking turns in the burst
    peers_recipients: int
    scale_users: int
    scale_online: int
    scale_rate: float
    scale_duration: float
    # Longest wait for frames still missing after the creators are done.
    collect_timeout: float


FULL = Sizes(
    p1_online=1000,
    p1_rate=100.0,
    p1_duration=30.0,
    p2_users=10_000,
    p2_online=5000,
    p3_recipients=1000,
    p3_duration=10.0,
    p3_creators=2,
    p3_backlog=3000,
    p4_sockets=10_000,
    p5_audience=100_000,
    p5_online=1000,
    p5_rate=100.0,
    p5_duration=15.0,
    p5_broadcast_at=3.0,
    t1_users=1000,
    t1_rate=100.0,
    t2_users=1000,
    t2_send_rate=100.0,
    t2_lead=2.0,
    t2_spread=5.0,
    m2_users=10_000,
    m2_online=5000,
    m2_muted_every=10,
    m2_settle=2.0,
    r1_users=10_000,
    r1_online=5000,
    g1_online=1000,
    g1_count=1000,
    g1_duration=10.0,
    g1_rate=100.0,
    g1_actors=13,
    peers_recipients=10_000,
    scale_users=10_000,
    scale_online=5000,
    scale_rate=100.0,
    scale_duration=5.0,
    collect_timeout=20.0,
)

QUICK = Sizes(
    p1_online=100,
    p1_rate=50.0,
    p1_duration=3.0,
    p2_users=1000,
    p2_online=200,
    p3_recipients=200,
    p3_duration=2.0,
    p3_creators=2,
    p3_backlog=200,
    p4_sockets=200,
    p5_audience=4000,
    p5_online=100,
    p5_rate=50.0,
    p5_duration=4.0,
    p5_broadcast_at=1.0,
    t1_users=40,
    t1_rate=40.0,
    t2_users=100,
    t2_send_rate=100.0,
    t2_lead=2.0,
    t2_spread=2.0,
    m2_users=1000,
    m2_online=200,
    m2_muted_every=10,
    m2_settle=1.0,
    r1_users=1000,
    r1_online=200,
    g1_online=100,
    g1_count=150,
    g1_duration=3.0,
    g1_rate=50.0,
    g1_actors=4,
    peers_recipients=1000,
    scale_users=1000,
    scale_online=200,
    scale_rate=50.0,
    scale_duration=1.5,
    collect_timeout=8.0,
)


@dataclass(frozen=True)
class Options:
    """The command line, validated."""

    scenarios: tuple[str, ...] = SCENARIOS
    quick: bool = False
    repeat: int = 3
    users: int | None = None
    online: int | None = None
    rate: float | None = None
    duration: float | None = None
    daphnes: int = 1
    listeners: int = 1
    clients: int | None = None
    connect_concurrency: int = 100
    client_mode: str = "bell"
    audience: str = "auto"
    output: Path | None = None
    purge: bool = False

    def sizes(self) -> Sizes:
        """Return the scenario sizes: full or quick, with the command line's overrides."""
        base = QUICK if self.quick else FULL
        changes: dict[str, float | int] = {}
        if self.users is not None:
            changes.update(
                p2_users=self.users,
                m2_users=self.users,
                r1_users=self.users,
                peers_recipients=self.users,
                scale_users=self.users,
                p5_audience=self.users * 10,
            )
        if self.online is not None:
            changes.update(
                p1_online=self.online,
                p2_online=self.online,
                m2_online=self.online,
                r1_online=self.online,
                g1_online=self.online,
                p4_sockets=self.online,
                p5_online=self.online,
                scale_online=self.online,
                p3_recipients=self.online,
                t1_users=self.online,
                t2_users=self.online,
            )
        if self.rate is not None:
            changes.update(
                p1_rate=self.rate,
                p5_rate=self.rate,
                scale_rate=self.rate,
                t1_rate=self.rate,
                g1_rate=self.rate,
            )
        if self.duration is not None:
            changes.update(
                p1_duration=self.duration,
                p3_duration=self.duration,
                p5_duration=self.duration,
                p5_broadcast_at=self.duration / 5,
            )
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def parse_scenarios(value: str) -> tuple[str, ...]:
    """Turn ``"p1,p3"`` or ``"all"`` into scenario names; raise ValueError on unknown ones."""
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    if not names or "all" in names:
        return SCENARIOS
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise ValueError(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)} or all"
        )
    return tuple(name for name in SCENARIOS if name in names)


@dataclass(frozen=True)
class Figure:
    """One reported figure: its key in the JSON, label, unit and the issue's target if any."""

    key: str
    label: str
    unit: str = ""
    op: str | None = None  # "<=" or ">="
    target: float | None = None

    def met(self, value: float | None) -> bool | None:
        if self.op is None or self.target is None or value is None:
            return None
        return value <= self.target if self.op == "<=" else value >= self.target


# Each scenario's figures, in the order the table shows them. Targets are the issue's.
FIGURES: dict[str, tuple[Figure, ...]] = {
    "p1": (
        Figure("p50_ms", "commit -> socket p50", "ms", "<=", 5),
        Figure("p90_ms", "commit -> socket p90", "ms"),
        Figure("p99_ms", "commit -> socket p99", "ms", "<=", 20),
        Figure("max_ms", "commit -> socket max", "ms"),
        Figure("expected", "frames expected"),
        Figure("received", "frames received"),
        Figure("missing", "frames missing", "", "<=", 0),
        Figure("duplicates", "duplicate frames", "", "<=", 0),
        Figure("rate", "creation rate achieved", "/s"),
        Figure("call_p50_ms", "notify() call p50 (INSERT, COMMIT, PUBLISH)", "ms"),
        Figure("call_p99_ms", "notify() call p99", "ms"),
        Figure("acked", "acks persisted (delivered rows)"),
        Figure("setup_rate", "socket set-up rate", "/s"),
    ),
    "p2": (
        Figure("min_ms", "commit -> first socket", "ms"),
        Figure("p50_ms", "commit -> socket p50", "ms"),
        Figure("p99_ms", "commit -> socket p99", "ms", "<=", 300),
        Figure("max_ms", "commit -> last socket", "ms"),
        Figure("expected", "sockets expected"),
        Figure("received", "sockets reached"),
        Figure("missing", "sockets missed", "", "<=", 0),
        Figure("persisted_ms", "all Delivery rows visible after commit", "ms", "<=", 500),
        Figure("deliveries", "Delivery rows written"),
        Figure("daphne_cpu_us_per_socket", "daphne CPU per online socket", "us"),
        Figure("listener_cpu_ms", "listener CPU for the broadcast", "ms"),
        Figure("acked", "acks persisted (delivered rows)"),
    ),
    "p3": (
        Figure("offered_rate", "commits/s by the creator processes", "/s"),
        Figure("dispatch_rate", "Delivery rows/s, first commit to backlog gone", "/s"),
        Figure("backlog_max", "largest backlog seen"),
        Figure("backlog_slope", "backlog growth during the flood", "/s"),
        Figure("drain_s", "backlog gone after the last commit", "s"),
        Figure("keeps_up", "keeps up (1 = backlog does not grow)", "", ">=", 1),
        Figure("capacity", "listener capacity: paused backlog drained/s", "/s", ">=", 1500),
        Figure("listener_cpu_us", "listener CPU per notification", "us"),
    ),
    "p4": (
        Figure("sockets", "idle authenticated sockets in one daphne", "", ">=", 10_000),
        Figure("failed", "connections that failed", "", "<=", 0),
        Figure("rss_per_socket_kib", "daphne RSS per socket", "KiB", "<=", 40),
        Figure("rss_mib", "daphne RSS with all sockets", "MiB"),
        Figure("setup_rate", "connection set-up rate", "/s", ">=", 500),
        Figure("setup_p50_ms", "handshake -> hello p50", "ms"),
        Figure("setup_p99_ms", "handshake -> hello p99", "ms"),
        Figure("daphne_cpu_ms_per_conn", "daphne CPU per connection", "ms"),
    ),
    "p5": (
        Figure(
            "call_to_socket_p50_during_ms", "P1 notify() -> socket p50, broadcast persisting", "ms"
        ),
        Figure(
            "call_to_socket_p99_during_ms",
            "P1 notify() -> socket p99, broadcast persisting",
            "ms",
            "<=",
            100,
        ),
        Figure("p99_during_ms", "P1 commit -> socket p99, broadcast persisting", "ms"),
        Figure("call_p99_during_ms", "P1 notify() call p99, broadcast persisting", "ms"),
        Figure("n_during", "P1 notifications in that window"),
        Figure("p50_ms", "P1 commit -> socket p50, whole run", "ms"),
        Figure("p99_ms", "P1 commit -> socket p99, whole run", "ms"),
        Figure("persisted_ms", "broadcast: all Delivery rows visible", "ms"),
        Figure("broadcast_p99_ms", "broadcast: commit -> socket p99", "ms"),
        Figure("expected", "frames expected"),
        Figure("received", "frames received"),
        Figure("missing", "frames missing", "", "<=", 0),
    ),
    "m2": (
        Figure("min_ms", "commit -> first socket", "ms"),
        Figure("p50_ms", "commit -> socket p50 (sockets that did not mute)", "ms"),
        Figure("p99_ms", "commit -> socket p99 (sockets that did not mute)", "ms", "<=", 300),
        Figure("max_ms", "commit -> last socket", "ms"),
        Figure("expected", "sockets expected (did not mute)"),
        Figure("received", "sockets reached"),
        Figure("missing", "sockets missed", "", "<=", 0),
        Figure("duplicates", "duplicate frames", "", "<=", 0),
        Figure("muted_sockets", "sockets that muted the category"),
        Figure("muted_frames", "frames received by sockets that muted it", "", "<=", 0),
        Figure("persisted_ms", "commit -> recorded (all Delivery rows written)", "ms", "<=", 500),
        Figure("deliveries", "Delivery rows written"),
        Figure("deliveries_expected", "Delivery rows expected (audience - muted)"),
        Figure("row_errors", "Delivery rows - expected (check)", "", "<=", 0),
        Figure("muted_rows", "Delivery rows of users who muted", "", "<=", 0),
        Figure("muted_count", "the notification's muted_count"),
        Figure("daphne_cpu_us_per_socket", "daphne CPU per online socket", "us"),
        Figure("listener_cpu_ms", "listener CPU for the broadcast", "ms"),
        Figure("acked", "acks persisted (delivered rows)"),
    ),
    "r1": (
        Figure("min_ms", "recall commit -> first recalled frame", "ms"),
        Figure("p50_ms", "recall commit -> recalled frame p50", "ms"),
        Figure("p90_ms", "recall commit -> recalled frame p90", "ms"),
        Figure("p99_ms", "recall commit -> recalled frame p99", "ms", "<=", 300),
        Figure("max_ms", "recall commit -> last recalled frame", "ms"),
        Figure("expected", "sockets expected"),
        Figure("received", "sockets that got the recalled frame"),
        Figure("missing", "sockets without it within the timeout", "", "<=", 0),
        Figure("duplicates", "duplicate recalled frames", "", "<=", 0),
        Figure("call_ms", "recall() call (UPDATE, COMMIT, push)", "ms"),
        Figure("daphne_cpu_us_per_socket", "daphne CPU per socket for the recall", "us"),
        Figure("broadcast_p99_ms", "the broadcast first: commit -> socket p99", "ms"),
        Figure("broadcast_missing", "the broadcast first: sockets missed"),
    ),
    "g1": (
        Figure("p50_ms", "P1 (other users) commit -> socket p50 during the burst", "ms", "<=", 5),
        Figure("p99_ms", "P1 (other users) commit -> socket p99 during the burst", "ms", "<=", 20),
        Figure("expected", "P1 frames expected"),
        Figure("received", "P1 frames received"),
        Figure("missing", "P1 frames missing", "", "<=", 0),
        Figure("burst_created", "burst: notifications of one group_key committed"),
        Figure("burst_rate", "burst: committed/s", "/s"),
        Figure("burst_p99_ms", "burst: commit -> the user's socket p99", "ms"),
        Figure("burst_missing", "burst: frames missing at the user's socket", "", "<=", 0),
        Figure("badge_delta", "server badge (hello/pong count) after - before", "", "<=", 1),
        Figure("api_items", "API first page: items of the group", "", "<=", 1),
        Figure("api_group_count", "API: the item's group_count"),
        Figure("bell_cpu_ms", "bell: Chromium CPU during the burst (same cores)", "ms"),
        Figure("bell_rows", "bell (Chromium): dropdown rows of the group", "", "<=", 1),
        Figure("bell_group_count", "bell: the row's data-notification-group-count"),
        Figure("bell_badge_delta", "bell: badge after - before", "", "<=", 1),
        Figure("bell_toasts", "bell: toasts shown for the burst"),
        Figure("bell_toasts_per_window", "bell: most toasts in any 5 s", "", "<=", 1),
    ),
    "t1": (
        Figure("p50_ms", "sent on one tab -> frame on another p50", "ms"),
        Figure("p90_ms", "sent on one tab -> frame on another p90", "ms"),
        Figure("p99_ms", "sent on one tab -> frame on another p99", "ms", "<=", 50),
        Figure("max_ms", "sent on one tab -> frame on another max", "ms"),
        Figure("archive_p99_ms", "archive -> archived p99", "ms"),
        Figure("snooze_p99_ms", "snooze -> snoozed p99", "ms"),
        Figure("unread_p99_ms", "unread -> unread p99", "ms"),
        Figure("echo_p50_ms", "sent -> the sending tab's own frame p50", "ms"),
        Figure("sent", "triage frames sent"),
        Figure("expected", "frames expected on the other tabs"),
        Figure("received", "frames received on the other tabs"),
        Figure("missing", "frames missing", "", "<=", 0),
        Figure("duplicates", "duplicate frames", "", "<=", 0),
        Figure("push_deadline_missed", "verbs whose push missed its deadline (daphne log)"),
        Figure("rate", "triage frames sent/s", "/s"),
    ),
    "t2": (
        Figure("p50_ms", "snooze end -> notification frame p50", "ms"),
        Figure("p99_ms", "snooze end -> notification frame p99", "ms"),
        Figure("max_ms", "snooze end -> notification frame max", "ms", "<=", 1000),
        Figure("same_max_ms", "max, the half due at one moment", "ms"),
        Figure("spread_max_ms", "max, the half due over the spread", "ms"),
        Figure("early", "frames before their snooze ended", "", "<=", 0),
        Figure("snoozed_p99_ms", "snooze -> snoozed p99", "ms"),
        Figure("recorded_late", "snoozes answered only after their until"),
        Figure("after_recorded_max_ms", "max from the later of until and snoozed", "ms"),
        Figure("expected", "frames expected"),
        Figure("received", "frames received"),
        Figure("missing", "frames missing", "", "<=", 0),
        Figure("duplicates", "duplicate frames", "", "<=", 0),
    ),
    "peers": (
        Figure("hq_s", "django-notifications-hq: one save() per recipient", "s"),
        Figure("fork_s", "its community fork: one bulk_create of wide rows", "s"),
        Figure("ours_s", "ours: dispatch_notification", "s"),
        Figure("hq_ratio", "ours faster than one save() per recipient", "x", ">=", 30),
        Figure("fork_ratio", "ours faster than the bulk_create fork", "x", ">=", 5),
        Figure("bell_p50_ms", "bell freshness: P1 p50", "ms"),
        Figure("freshness_ratio", "fresher than 15 s polling (mean 7.5 s)", "x"),
    ),
    "scale": (
        Figure("p50_1d_ms", "broadcast p50, one daphne", "ms"),
        Figure("p99_1d_ms", "broadcast p99, one daphne", "ms"),
        Figure("max_1d_ms", "broadcast max, one daphne", "ms"),
        Figure("p50_2d_ms", "broadcast p50, two daphnes", "ms"),
        Figure("p99_2d_ms", "broadcast p99, two daphnes", "ms", "<=", 300),
        Figure("max_2d_ms", "broadcast max, two daphnes", "ms"),
        Figure("persisted_2d_ms", "all Delivery rows visible, two listeners", "ms", "<=", 500),
        Figure("daphnes_reached", "daphne processes whose sockets were reached", "", ">=", 2),
        Figure("expected", "frames expected"),
        Figure("received", "frames received"),
        Figure("missing", "frames missing", "", "<=", 0),
        Figure("duplicates", "duplicate frames (two listeners)", "", "<=", 0),
        Figure("row_errors", "notifications with wrong Delivery rows", "", "<=", 0),
    ),
}
