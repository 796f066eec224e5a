"""Benchmark the real stack: daphne, the listener, Redis and real WebSockets (issues 5, 11, 12).

The work is done by ``notifyproject.demo.bench``; this command only reads the options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifyproject.demo.bench.config import (
    AUDIENCE_MODES,
    CLIENT_MODES,
    SCENARIOS,
    Options,
    parse_scenarios,
)


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Benchmark notifications end to end: start daphne and listener processes, log in "
        "throwaway users on real WebSockets from separate processes, measure commit-to-socket "
        "latency, broadcast fan-out, listener throughput, connections, isolation, "
        "broadcasts to users who muted their category, recalls, triage across tabs, "
        "snoozes coming back and the peers; print a table and write JSON. "
        "Removes everything it created."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--scenario",
            default="all",
            help=f"comma-separated: {', '.join(SCENARIOS)}, or all (default)",
        )
        parser.add_argument(
            "--quick", action="store_true", help="a one-minute smoke run with small sizes"
        )
        parser.add_argument(
            "--repeat", type=positive_int, help="repetitions per figure (default 3; quick: 1)"
        )
        parser.add_argument(
            "--users",
            type=positive_int,
            help="broadcast audience (P2, M2, R1, peers, scale; P5 x10)",
        )
        parser.add_argument(
            "--online",
            type=positive_int,
            help="sockets (P1, P2, P4, P5, M2, R1, G1, scale; P3 recipients; T1 and T2 users)",
        )
        parser.add_argument(
            "--rate",
            type=positive_float,
            help="single-user notifications/s (P1, P5, G1, scale); T1's triage frames/s",
        )
        parser.add_argument(
            "--duration", type=positive_float, help="seconds of load (P1, P3 flood, P5)"
        )
        parser.add_argument("--daphnes", type=positive_int, default=1, help="daphne processes")
        parser.add_argument("--listeners", type=positive_int, default=1, help="listeners")
        parser.add_argument(
            "--clients", type=positive_int, help="socket client processes (default: 1 per 2500)"
        )
        parser.add_argument(
            "--connect-concurrency",
            type=positive_int,
            default=100,
            help="handshakes in flight at once (default 100)",
        )
        parser.add_argument(
            "--client-mode",
            choices=CLIENT_MODES,
            default="bell",
            help="bell: one socket per browser, as bell.js's leader tab: ack, seen, ping, "
            "sync (default); passive: only listen",
        )
        parser.add_argument(
            "--audience",
            choices=AUDIENCE_MODES,
            default="auto",
            help="broadcast to 'all' (only if the database has no other users) or to the "
            "run's group; auto picks all when it can",
        )
        parser.add_argument(
            "--output", type=Path, help="JSON file (default var/bench/bench-<timestamp>.json)"
        )
        parser.add_argument(
            "--purge",
            action="store_true",
            help="first remove leftovers of interrupted runs (not while another run is going)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            scenarios = parse_scenarios(options["scenario"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        quick = options["quick"]
        bench_options = Options(
            scenarios=scenarios,
            quick=quick,
            repeat=options["repeat"] or (1 if quick else 3),
            users=options["users"],
            online=options["online"],
            rate=options["rate"],
            duration=options["duration"],
            daphnes=options["daphnes"],
            listeners=options["listeners"],
            clients=options["clients"],
            connect_concurrency=options["connect_concurrency"],
            client_mode=options["client_mode"],
            audience=options["audience"],
            output=options["output"],
            purge=options["purge"],
        )
        from notifyproject.demo.bench.runner import run

        status = run(bench_options, self.stdout, self.stderr)
        if status:
            raise CommandError("the benchmark did not run through cleanly (see above)")
