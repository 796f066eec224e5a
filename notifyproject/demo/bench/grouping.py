"""Issue 12's grouping burst, G1: one group_key floods one user while P1 runs for the rest.

One creator commits ``g1_count`` notifications with one ``group_key`` (actors taking turns)
to one user over ``g1_duration`` seconds; another creator runs P1's load to the other users
meanwhile. Figures:

- P1's latencies for the other users during the burst (the grouping must cost them nothing);
- the burst at the user's own socket (every push arrives: grouping is the bell's view, the
  pipeline still delivers each one);
- the server's side: the badge (the hello/pong count) goes up by one, and the API's first
  page lists the group once, with ``group_count`` = the burst;
- the person's side, from the user's page in headless Chromium (``bellpage``): rows of the
  group in the dropdown, its ``data-notification-group-count``, the badge, and the toasts —
  how many, and the most in any 5 s (the bell's storm window for one key).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from notifications.selectors import badge_state, notification_page
from notifyproject.demo.bench import bellpage
from notifyproject.demo.bench.scenarios import (
    Context,
    ScenarioRun,
    achieved_rate,
    collect,
    finish,
    open_sockets,
    repetitions,
    send_single,
    single_reply,
    sockets_by_user,
)
from notifyproject.demo.bench.stats import latency_summary, percentile

# bell.js lets one toast of a group_key through per this many milliseconds (GROUP_WINDOW).
TOAST_WINDOW_MS = 5000.0


def run_g1(ctx: Context, run: ScenarioRun) -> None:
    """A burst of one group_key to one user, P1 for the others, a real bell watching."""
    s = ctx.sizes
    users = ctx.population.ensure_users(s.g1_online + 1)
    target, others = users[0], users[1 : s.g1_online + 1]
    actors = others[: s.g1_actors]
    run.params.update(
        {
            "online": len(others),
            "burst": s.g1_count,
            "duration_s": s.g1_duration,
            "rate": s.g1_rate,
            "actors": len(actors),
        }
    )
    tag = f"{ctx.population.tag} g1 "
    ctx.stack.ensure(ctx.options.daphnes, ctx.options.listeners)
    opened = open_sockets(ctx, [target, *others], run)
    page = None
    why_not = bellpage.unavailable()
    try:
        if why_not is None:
            ctx.progress.status("opening the user's bell in Chromium")
            port = ctx.stack.daphnes[0].port
            page = bellpage.BellPage(
                f"http://127.0.0.1:{port}", ctx.population.cookies([target])[target]
            )
            page.wait_open()
        else:
            run.note(f"no bell figures: {why_not}")
        run.note(
            "P1 = the other users' notifications while the burst runs; 'badge' = the count "
            "hello and pong carry; bell figures read the user's page in headless Chromium "
            "(on the same cores) once its rows and badge stopped changing for 2 s"
        )
        by_user = sockets_by_user(opened)
        for rep in repetitions(ctx, run):
            run.repetitions.append(
                measure_g1(ctx, run, f"{tag}r{rep}", target, others, actors, by_user, page)
            )
    finally:
        if page is not None:
            page.close()
        finish(ctx, run, tag)


def measure_g1(
    ctx: Context,
    run: ScenarioRun,
    title: str,
    target: Any,
    others: list[Any],
    actors: list[Any],
    by_user: dict[Any, set[int]],
    page: bellpage.BellPage | None,
) -> dict[str, Any]:
    s = ctx.sizes
    key = f"bench:{title}"
    badge_before = badge_state(target)[0]
    browser_cpu = bellpage.chromium_cpu() if page is not None else 0.0
    bell_before = page.state() if page is not None else None
    start_at = time.time() + 0.5
    load, load_started = send_single(
        ctx,
        0,
        recipients=[user for user in others if user in by_user],
        title=f"{title}p",
        rate=s.g1_rate,
        duration=s.g1_duration,
        start_at=start_at,
    )
    burst, burst_started = send_single(
        ctx,
        1,
        recipients=[target],
        title=f"{title}g",
        rate=s.g1_count / s.g1_duration,
        count=s.g1_count,
        start_at=start_at,
        group_key=key,
        actors=actors,
    )
    p1 = single_reply(ctx, load, load_started, s.g1_duration, None, run)
    grouped = single_reply(ctx, burst, burst_started, None, s.g1_count, run)
    expected = {row.id: by_user[row.recipient] for row in p1}
    expected.update({row.id: by_user.get(target, set()) for row in grouped})
    commits = {row.id: row.committed for row in [*p1, *grouped]}
    found = collect(ctx, expected, commits)
    p1_ids = {row.id for row in p1}
    burst_ids = {row.id for row in grouped}
    burst_latencies = found.latencies(burst_ids)
    p1_expected = sum(len(by_user[row.recipient]) for row in p1)
    listed = [n for n in notification_page(target).results if n.get("group_key") == key]
    figures: dict[str, Any] = {
        **latency_summary(found.latencies(p1_ids)),
        "expected": p1_expected,
        "received": len(found.latencies(p1_ids)),
        "missing": p1_expected - len(found.latencies(p1_ids)),
        "burst_created": len(grouped),
        "burst_rate": achieved_rate([row.committed for row in grouped]),
        "burst_p99_ms": percentile(burst_latencies, 99),
        "burst_missing": len(grouped) * len(by_user.get(target, ())) - len(burst_latencies),
        "badge_delta": badge_state(target)[0] - badge_before,
        "api_items": len(listed),
        "api_group_count": listed[0].get("group_count") if listed else None,
        "frames": dict(sorted(found.frames.items())),
    }
    if page is not None and bell_before is not None:
        figures["bell_cpu_ms"] = (bellpage.chromium_cpu() - browser_cpu) * 1000
        figures.update(bell_figures(page, bell_before, burst_ids))
    return figures


def bell_figures(
    page: bellpage.BellPage, before: dict[str, Any], burst_ids: set[int]
) -> dict[str, Any]:
    """What the user's page shows of the burst: rows, their group count, badge, toasts."""
    after = page.wait_settled()
    rows = [row for row in after["rows"] if row["id"] in burst_ids]
    seen_before = len(before["toasts"])
    toasts = after["toasts"][seen_before:]
    return {
        "bell_rows": len(rows),
        "bell_group_count": int(rows[0]["group"]) if rows and rows[0]["group"] else 1,
        "bell_badge_delta": (after["unread"] or 0) - (before["unread"] or 0),
        "bell_toasts": len(toasts),
        "bell_toasts_per_window": bellpage.max_in_window(
            [float(t["at"]) for t in toasts], TOAST_WINDOW_MS
        ),
    }


RUNNERS: dict[str, Callable[[Context, ScenarioRun], None]] = {"g1": run_g1}
