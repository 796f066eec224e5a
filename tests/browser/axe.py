"""Run axe-core (the engine behind Lighthouse's accessibility audit) on a page.

The script comes from the ``axe-playwright-python`` wheel, which bundles it; only the file
is used, injected into the page, so the rules are axe's own and nothing is fetched.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from playwright.sync_api import Page

# WCAG 2.0/2.1/2.2 A and AA: what the issue asks the bell, the inbox and the admin to meet.
WCAG_AA_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
FAILING_IMPACTS = ("serious", "critical")


def axe_source() -> str:
    return files("axe_playwright_python").joinpath("axe.min.js").read_text(encoding="utf-8")


def axe_violations(page: Page, context: str | None = None) -> list[dict[str, Any]]:
    """Return axe's WCAG 2.2 AA violations on ``page`` (within ``context``, a CSS selector)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe_source())
    return page.evaluate(
        """async ([context, tags]) => {
            const result = await axe.run(context ? document.querySelector(context) : document,
                {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target, summary: n.failureSummary})),
            }));
        }""",
        [context, WCAG_AA_TAGS],
    )


def assert_accessible(page: Page, context: str | None = None) -> None:
    """Fail on any serious or critical WCAG 2.2 AA violation, naming each rule and element."""
    bad = [v for v in axe_violations(page, context) if v["impact"] in FAILING_IMPACTS]
    if bad:
        lines = [
            f"{v['impact']}: {v['id']} ({v['help']}) at "
            + "; ".join(" ".join(map(str, n["target"])) for n in v["nodes"][:5])
            for v in bad
        ]
        raise AssertionError("axe found accessibility violations:\n" + "\n".join(lines))
