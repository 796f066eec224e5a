"""One benchmark run: set-up, the scenarios, teardown (also on Ctrl-C, SIGTERM and failures).

Isolation from a site sharing the database and Redis: the children get a channel-layer prefix
and a pub/sub channel of the run's own (``notifybench-<run>``), checked before anything
starts; this process switches its own settings to them too, so nothing it saves can reach
the site's listener; every row it writes is tagged with the run id and removed at the end,
and so are the Redis keys under the run's prefix.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import redis
from django.conf import settings
from django.db import connection
from django.http.request import validate_host
from django.test.utils import override_settings

from notifications import conf, publisher
from notifyproject.demo.bench import grouping, peers, preferences, scenarios, triage
from notifyproject.demo.bench.config import FIGURES, RUN_ORDER, TITLES, Options
from notifyproject.demo.bench.pool import ClientPool, Creators
from notifyproject.demo.bench.population import Population, purge_leftovers
from notifyproject.demo.bench.report import (
    Progress,
    machine,
    render_table,
    scenario_document,
    write_json,
)
from notifyproject.demo.bench.scenarios import Context, ScenarioRun
from notifyproject.demo.bench.stack import Stack
from notifyproject.demo.bench.workers import BenchError, raise_fd_limit
from notifyproject.demo.supervisor import SupervisorError

RUNNERS = {
    **scenarios.RUNNERS,
    **triage.RUNNERS,
    **preferences.RUNNERS,
    **grouping.RUNNERS,
}
assert set(RUNNERS) == set(FIGURES)  # noqa: S101 - a programming error, caught at import


def project_root() -> Path:
    return Path(getattr(settings, "BASE_DIR", Path.cwd()))


def default_output(started: datetime) -> Path:
    return project_root() / "var" / "bench" / f"bench-{started:%Y%m%d-%H%M%S}.json"


def websocket_origin() -> str:
    """An Origin the site's ALLOWED_HOSTS accept (the handshake is refused otherwise)."""
    allowed = list(settings.ALLOWED_HOSTS) or ["localhost", "127.0.0.1", "[::1]"]
    for host in ("127.0.0.1", "localhost"):
        if validate_host(host, allowed):
            return f"http://{host}"
    for host in allowed:
        if host not in ("*", "") and validate_host(host.lstrip("."), allowed):
            return f"http://{host.lstrip('.')}"
    raise BenchError("no ALLOWED_HOSTS entry can serve as the sockets' Origin")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Bench:
    """Set up, run the chosen scenarios in order, tear everything down, report."""

    def __init__(self, options: Options, stdout: IO[str], stderr: IO[str]) -> None:
        self.options = options
        self.sizes = options.sizes()
        self.stdout = stdout
        self.progress = Progress(stderr)
        self.run_id = secrets.token_hex(4)
        self.prefix = f"notifybench-{self.run_id}"
        self.channel = f"notifybench-{self.run_id}:notifications"
        self.started = datetime.now(UTC)
        # Read before the settings are overridden (the override's holder has no module).
        self.settings_module = settings.SETTINGS_MODULE or os.environ["DJANGO_SETTINGS_MODULE"]
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"notifybench-{self.run_id}-"))
        self.results: dict[str, ScenarioRun] = {}
        self.errors: list[str] = []
        self.interrupted = False
        self.machine: dict[str, Any] = {}
        self.redis: redis.Redis | None = None
        self.population: Population | None = None
        self.stack: Stack | None = None
        self.creators: Creators | None = None
        self.clients: ClientPool | None = None
        self.ctx: Context | None = None
        self.remaining_users: int | None = None

    # ---- the run -------------------------------------------------------------------------

    def run(self) -> int:
        previous_term = signal.getsignal(signal.SIGTERM)
        with contextlib.suppress(ValueError):  # not the main thread: Ctrl-C still works
            signal.signal(signal.SIGTERM, _interrupt)
        overrides = override_settings(**self.isolated_settings())
        overrides.enable()
        publisher.reset()
        try:
            try:
                self.setup()
                for name in RUN_ORDER:
                    if name in self.options.scenarios:
                        self.run_scenario(name)
            except KeyboardInterrupt:
                self.interrupted = True
                self.progress.phase("interrupted: stopping the children and cleaning up")
            except SupervisorError as exc:  # BenchError, or a child that would not start
                self.errors.append(str(exc))
                self.progress.phase(f"stopped: {exc}")
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self.progress.phase(f"stopped by an unexpected error:\n{traceback.format_exc()}")
        finally:
            previous_int = signal.getsignal(signal.SIGINT)
            with contextlib.suppress(ValueError):  # the teardown must finish
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                self.teardown()
            finally:
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(signal.SIGINT, previous_int)
                    signal.signal(signal.SIGTERM, previous_term)
                overrides.disable()
                publisher.reset()
        return self.report()

    def isolated_settings(self) -> dict[str, Any]:
        """This process's settings, pointed at the run's channel and prefix."""
        layers = copy.deepcopy(settings.CHANNEL_LAYERS)
        for layer in layers.values():
            layer.setdefault("CONFIG", {})["prefix"] = self.prefix
        return {
            "NOTIFICATIONS": {**getattr(settings, "NOTIFICATIONS", {}), "CHANNEL": self.channel},
            "CHANNEL_LAYERS": layers,
        }

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE=self.settings_module,
            CHANNELS_PREFIX=self.prefix,
            NOTIFICATIONS_CHANNEL=self.channel,
            PYTHONUNBUFFERED="1",
            # G1 opens a real bell page: daphne serves its script and styles.
            DJANGO_SERVE_STATIC="1",
        )
        return env

    def setup(self) -> None:
        chosen = [TITLES[name] for name in RUN_ORDER if name in self.options.scenarios]
        self.progress.phase(f"run {self.run_id}: {', '.join(chosen)}")
        if importlib.util.find_spec("websockets") is None:
            raise BenchError(
                "the socket clients need the websockets package (pip install -e '.[dev]')"
            )
        limit = raise_fd_limit()
        sockets = max(
            self.sizes.p1_online,
            self.sizes.p2_online,
            self.sizes.p5_online,
            self.sizes.m2_online if "m2" in self.options.scenarios else 0,
            self.sizes.r1_online if "r1" in self.options.scenarios else 0,
            self.sizes.g1_online + 1 if "g1" in self.options.scenarios else 0,
            self.sizes.t1_users * 3 if "t1" in self.options.scenarios else 0,
            self.sizes.t2_users if "t2" in self.options.scenarios else 0,
        )
        if "p4" in self.options.scenarios:
            sockets = max(sockets, self.sizes.p4_sockets)  # all into one daphne
        if limit < sockets + 500:
            self.progress.phase(
                f"warning: {limit} file descriptors per process; daphne may need {sockets + 500}"
            )
        self.redis = redis.Redis.from_url(
            conf.get().REDIS_URL, **conf.redis_kwargs(socket_timeout=10, socket_connect_timeout=5)
        )
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise BenchError(f"Redis at {conf.get().REDIS_URL} does not answer: {exc}") from exc
        if self.options.purge:
            removed = purge_leftovers()
            self.progress.phase(f"purged leftovers of earlier runs: {removed}")
        env = self.child_env()
        root = project_root()
        self.creators = Creators(
            env=env, cwd=root, log_dir=self.log_dir, count=max(2, self.sizes.p3_creators)
        )
        self.machine = machine(self.redis)
        self.population = Population(self.run_id, self.options.audience)
        audience = self.population.choose_audience()
        self.progress.phase(f"broadcasts go to audience {audience}")
        self.creators.verify(
            channel=self.channel,
            prefix=self.prefix,
            database=str(connection.settings_dict.get("NAME")),
        )
        self.stack = Stack(
            env=env,
            cwd=root,
            log_dir=self.log_dir,
            asgi_application=":".join(settings.ASGI_APPLICATION.rsplit(".", 1)),
            channel=self.channel,
            redis_client=self.redis,
        )
        self.clients = ClientPool(
            env=env,
            cwd=root,
            log_dir=self.log_dir,
            mode=self.options.client_mode,
            processes=self.options.clients,
        )
        self.ctx = Context(
            options=self.options,
            sizes=self.sizes,
            population=self.population,
            stack=self.stack,
            clients=self.clients,
            creators=self.creators,
            progress=self.progress,
            origin=websocket_origin(),
            results=self.results,
        )

    def run_scenario(self, name: str) -> None:
        if self.ctx is None:
            return
        run = ScenarioRun(name)
        self.results[name] = run
        self.progress.phase(f"{TITLES[name]}")
        started = time.monotonic()
        try:
            # What the last scenario wrote (a broadcast's 10,000 rows) is in the plans too.
            self.ctx.population.refresh_planner_stats()
            RUNNERS[name](self.ctx, run)
        except KeyboardInterrupt:
            run.error = "interrupted"
            raise
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            self.errors.append(f"{name}: {run.error}")
            (self.log_dir / f"{name}-traceback.txt").write_text(traceback.format_exc())
            self.progress.phase(f"{name} failed: {run.error.splitlines()[0]}")
            with contextlib.suppress(Exception):
                self.ctx.clients.close()
        finally:
            run.seconds = time.monotonic() - started

    # ---- teardown ------------------------------------------------------------------------

    def teardown(self) -> None:
        steps = [
            ("socket clients", self.clients.stop if self.clients else None),
            ("daphne and listeners", self.stack.stop if self.stack else None),
            ("creators", self.creators.stop if self.creators else None),
            ("database rows", self.population.cleanup if self.population else None),
            ("peer table", self._drop_peer_table),
            ("Redis keys", self._clean_redis),
        ]
        for label, step in steps:
            if step is None:
                continue
            self.progress.status(f"teardown: {label}")
            try:
                step()
            except Exception as exc:
                self.errors.append(f"teardown ({label}): {type(exc).__name__}: {exc}")
        if self.population is not None:
            try:
                self.remaining_users = self.population.remaining()
            except Exception as exc:
                self.errors.append(f"teardown check: {exc}")
            if self.remaining_users:
                self.errors.append(f"{self.remaining_users} benchmark user(s) remain")

    def _drop_peer_table(self) -> None:
        peers.drop_leftover_tables(rf"^bench_{self.run_id}_")

    def _clean_redis(self) -> None:
        if self.redis is None:
            return
        keys = list(self.redis.scan_iter(match=f"{self.prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            self.redis.delete(*keys[start : start + 1000])
        self.redis.close()

    # ---- report --------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        finished = datetime.now(UTC)
        options = {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(self.options).items()
        }
        keep_logs = bool(self.errors or any(r.child_errors for r in self.results.values()))
        return {
            "run_id": self.run_id,
            "started_at": self.started.isoformat(timespec="seconds"),
            "finished_at": finished.isoformat(timespec="seconds"),
            "seconds": round((finished - self.started).total_seconds(), 1),
            "command": sys.argv,
            "options": options,
            "sizes": dataclasses.asdict(self.sizes),
            "repeat": self.options.repeat,
            "audience": self.population.audience if self.population else None,
            "machine": self.machine or {"cores": os.cpu_count()},
            "stack": self.stack.describe() if self.stack else None,
            "isolation": {
                "channels_prefix": self.prefix,
                "notifications_channel": self.channel,
                "usernames": f"bench-{self.run_id}-*",
            },
            "scenarios": {name: scenario_document(run) for name, run in self.results.items()},
            "interrupted": self.interrupted,
            "errors": self.errors,
            "remaining_users": self.remaining_users,
            "load_average_end": os.getloadavg(),
            "logs": str(self.log_dir) if keep_logs else None,
        }

    def report(self) -> int:
        document = self.document()
        if document["logs"] is None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        output = self.options.output or default_output(self.started)
        path = write_json(document, output)
        if document["machine"].get("load_average") is not None:
            self.stdout.write(render_table(document, self.stdout))
        for error in self.errors:
            self.stdout.write(f"error: {error}\n")
        if document["logs"]:
            self.stdout.write(f"child logs kept in {document['logs']}\n")
        self.stdout.write(f"JSON written to {path}\n")
        return 1 if self.errors or self.interrupted else 0


def run(options: Options, stdout: IO[str], stderr: IO[str]) -> int:
    """Run the benchmark; return the exit status (0 when it ran through without errors)."""
    return Bench(options, stdout, stderr).run()
