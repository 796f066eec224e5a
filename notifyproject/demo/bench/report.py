"""What a run reports: progress on stderr, the machine, a table with targets, a JSON file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import django
from django.conf import settings
from django.db import connection

from notifyproject.demo.bench.config import FIGURES, SCENARIOS, TITLES, Figure
from notifyproject.demo.bench.stats import summarize

PACKAGES = ("channels", "channels-redis", "daphne", "redis", "websockets", "psycopg", "Twisted")


class Progress:
    """A running commentary on stderr: lines for phases, a rewritten line for status on a TTY."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self._status_len = 0
        self._last_status = 0.0

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def phase(self, text: str) -> None:
        self._clear()
        self.stream.write(f"{self._stamp()} {text}\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        """A transient line (TTY only, at most a few times a second)."""
        if not self.tty or time.monotonic() - self._last_status < 0.2:
            return
        self._last_status = time.monotonic()
        line = f"{self._stamp()} {text}"[:120]
        self.stream.write("\r" + line.ljust(self._status_len))
        self.stream.flush()
        self._status_len = len(line)

    def _clear(self) -> None:
        if self.tty and self._status_len:
            self.stream.write("\r" + " " * self._status_len + "\r")
            self._status_len = 0


# ---- the machine ------------------------------------------------------------------------


def _first_line(path: str, prefix: str) -> str | None:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607 - git from PATH, when there is one
            cwd=settings.BASE_DIR if hasattr(settings, "BASE_DIR") else None,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def database_version() -> str:
    if connection.vendor == "sqlite":
        import sqlite3

        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            mode = cursor.fetchone()[0]
        return f"SQLite {sqlite3.sqlite_version} (journal {mode})"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0]}"
        cursor.execute("SELECT VERSION()")
        return f"{connection.vendor} {cursor.fetchone()[0]}"


def machine(redis_client: Any) -> dict[str, Any]:
    """Describe what the figures were measured on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        redis_version = redis_client.info("server").get("redis_version")
    except Exception:
        redis_version = None
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    layer = settings.CHANNEL_LAYERS.get("default", {})
    memory = _first_line("/proc/meminfo", "MemTotal")
    return {
        "cores": os.cpu_count(),
        "cpu": _first_line("/proc/cpuinfo", "model name") or platform.processor(),
        "memory": memory,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "django": django.get_version(),
        "packages": versions,
        "database": database_version(),
        "database_vendor": connection.vendor,
        "redis": redis_version,
        "commit": commit,
        "dirty": bool(dirty) if commit else None,
        "debug": settings.DEBUG,
        "channel_layer": {
            "backend": layer.get("BACKEND"),
            "capacity": layer.get("CONFIG", {}).get("capacity"),
        },
        "load_average": os.getloadavg(),
    }


# ---- the document -------------------------------------------------------------------------


def scenario_document(run: Any) -> dict[str, Any]:
    """Summarise one ScenarioRun: every figure's median/min/max and whether it meets its target."""
    figures: dict[str, Any] = {}
    for figure in FIGURES[run.name]:
        values = [rep.get(figure.key) for rep in run.repetitions]
        summary = summarize(values)
        entry = {"label": figure.label, "unit": figure.unit, **summary, "values": values}
        if figure.op is not None:
            entry["target"] = {"op": figure.op, "value": figure.target}
            entry["met"] = figure.met(summary["median"])
        figures[figure.key] = entry
    return {
        "title": TITLES[run.name],
        "params": run.params,
        "figures": figures,
        "repetitions": run.repetitions,
        "notes": run.notes,
        "child_errors": run.child_errors,
        "error": run.error,
        "seconds": round(run.seconds, 1),
    }


def write_json(document: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


# ---- the table ----------------------------------------------------------------------------


def _marks(stream: IO[str]) -> tuple[str, str]:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "ok", "NO"
    return "✓", "✗"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ms", "us"):
        text = f"{value:.1f}" if abs(value) < 100 else f"{value:,.0f}"
    elif unit == "s":
        text = f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"
    elif unit in ("KiB", "MiB", "x"):
        text = f"{value:,.1f}"
    elif unit == "/s":
        text = f"{value:,.0f}"
    else:
        text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    if unit == "x":
        return f"{text}x"
    return f"{text} {unit}".rstrip()


def _target_text(figure: Figure) -> str:
    if figure.op is None or figure.target is None:
        return ""
    symbol = "<=" if figure.op == "<=" else ">="
    return f"{symbol} {format_value(figure.target, figure.unit)}"


def _loads(values: Any) -> str:
    return "/".join(f"{value:.1f}" for value in values) if values else "?"


def render_table(document: dict[str, Any], stream: IO[str]) -> str:
    """Return the human-readable table of a run."""
    yes, no = _marks(stream)
    info = document["machine"]
    commit = (info.get("commit") or "no git")[:10] + (" (dirty)" if info.get("dirty") else "")
    lines = [
        f"notifyproject benchmark, run {document['run_id']}, {document['started_at']}",
        f"{info['cores']} cores ({info['cpu']}), {info['python']}, Django {info['django']}, "
        f"{info['database']}, Redis {info['redis']}, commit {commit}",
        f"load average {_loads(info.get('load_average'))} at start, "
        f"{_loads(document.get('load_average_end'))} at the end; "
        f"{document['repeat']} repetition(s) per figure (median, min, max); clients: "
        f"{document['options']['client_mode']}; broadcast audience: {document['audience']}",
    ]
    if document["options"]["client_mode"] == "bell":
        lines.append(
            "bell clients: one socket = one browser (bell.js's leader tab; its other tabs "
            "follow over BroadcastChannel): acks (batched 250-1,000 ms), seen per toast "
            "(batched 2-4 s), ping every 30 s ± 15%, sync after hello and on a gap (2 s after "
            "a pong)"
        )
    if document["options"]["quick"]:
        lines.append("quick mode: sizes far below the issue's, so the marks are indicative only")
    if info.get("debug"):
        lines.append("DEBUG is on in these settings (Django records every query): not production")
    width = 50
    header = f"  {'figure':<{width}} {'median':>12} {'min':>12} {'max':>12}  target"
    for name in SCENARIOS:
        scenario = document["scenarios"].get(name)
        if scenario is None:
            continue
        params = ", ".join(f"{k} {v}" for k, v in scenario["params"].items())
        lines += ["", f"{scenario['title']} ({params}) - {scenario['seconds']} s"]
        if scenario.get("error"):
            lines.append(f"  FAILED: {scenario['error']}")
        if not scenario["repetitions"]:
            continue
        lines.append(header)
        for figure in FIGURES[name]:
            entry = scenario["figures"][figure.key]
            if entry["n"] == 0 and figure.op is None:
                continue
            mark = ""
            if entry.get("met") is not None:
                mark = yes if entry["met"] else no
            lines.append(
                f"  {figure.label:<{width}} {format_value(entry['median'], figure.unit):>12} "
                f"{format_value(entry['min'], figure.unit):>12} "
                f"{format_value(entry['max'], figure.unit):>12}  "
                f"{_target_text(figure):<12} {mark}".rstrip()
            )
        lines.extend(f"  note: {note}" for note in scenario["notes"])
    if document.get("interrupted"):
        lines += ["", "INTERRUPTED: the figures above are partial."]
    return "\n".join(lines) + "\n"
