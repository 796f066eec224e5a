"""The wheel in a brand-new `startproject` site, set up by the README's own steps, live.

The work is done by scripts/ci/host_site_check.py (also runnable by hand); this runs it
in the suite so `make test` and CI fail when a host site would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.package]


@pytest.mark.timeout(900)
def test_a_new_startproject_site_gets_live_pushes_by_the_readme_steps():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/ci/host_site_check.py")],
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "live push received" in done.stdout
    assert "foreign Origin: HTTP 403" in done.stdout
