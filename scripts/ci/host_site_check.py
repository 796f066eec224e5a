#!/usr/bin/env python3
"""Install the wheel into a brand-new `startproject` site by the README's steps, and use it.

What a new user does, done by a script so CI can tell when it stops working:

1. build the wheel from this checkout and install it, alone, into a fresh virtualenv;
2. `django-admin startproject mysite`, give it a user model of its own (UUID primary key,
   email login, no admin registered for it: the cases that broke before);
3. apply the README's "Add it to your site" steps *as written there*: the code blocks
   marked `<!-- host-site: append FILE -->`, `<!-- host-site: replace FILE -->` and
   `<!-- host-site: bell -->` are read from README.md, so the README and this check cannot
   drift apart;
4. `manage.py check`, `migrate`, then run daphne and `listen_notifications` as the README
   says, and check a live push to a logged-in user's socket, a foreign `Origin` refused, the
   inbox page and API, and that the wheel brought no demo code.

Run it with the repository's virtualenv (it uses `websockets` from there for the client):
`.venv/bin/python scripts/ci/host_site_check.py`. Exit status 0 means every step held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the demo's one process supervisor, run from the checkout

from notifyproject.demo.supervisor import (  # noqa: E402
    Process,
    SupervisorError,
    free_port,
    spawn,
    stop_all,
)

README = ROOT / "README.md"
SECTION = "## Add it to your site"
MARKER = re.compile(
    r"<!-- host-site: (append|replace|bell)(?: (\S+))? -->\s*```[a-z]*\n(.*?)```", re.S
)
# The README reads REDIS_URL from the environment; the check gives it a db of its own and
# removes exactly the keys it made (the layer's "asgi" prefix, the "notifications" channel).
REDIS_URL = "redis://127.0.0.1:6379/12"
STEP_TIMEOUT = 30.0

USER_MODEL = '''
import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A user model of the kind host sites have: UUID primary key, email to log in."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = ["username"]
'''


class CheckFailed(Exception):
    """A step of the check did not hold; the message says which and what was seen."""


def say(message: str) -> None:
    print(f"host-site: {message}", flush=True)


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    """Run a command; return its output, or raise CheckFailed with it."""
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def readme_steps() -> list[tuple[str, str | None, str]]:
    """Return the marked code blocks of the README's "Add it to your site" section."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    steps = [(m[1], m[2], m[3]) for m in MARKER.finditer(text[start : end if end > 0 else None])]
    if not steps:
        raise CheckFailed(f"no <!-- host-site: ... --> blocks under {SECTION!r} in README.md")
    return steps


def wait_for_subscriber(url: str, listener: Process) -> None:
    """Wait until the listener's SUBSCRIBE has reached Redis (a push before it would be swept)."""
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            if dict(client.pubsub_numsub("notifications")).get(b"notifications"):
                return
            listener.check_alive("before subscribing")
            time.sleep(0.1)
    finally:
        client.close()
    raise CheckFailed(listener.failure("never subscribed"))


def build_site(work: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """Make the virtualenv and the site; return (the venv's bin dir, the site dir)."""
    say("building the wheel")
    dist = work / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        work,
        env,
    )
    wheels = list(dist.glob("*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one wheel, got {wheels}")
    names = run([sys.executable, "-m", "zipfile", "-l", str(wheels[0])], work, env)
    stray = sorted(
        {line.split()[0].split("/")[0] for line in names.splitlines()[1:] if line.strip()}
        - {"notifications"}
        - {n.split()[0].split("/")[0] for n in names.splitlines()[1:] if ".dist-info/" in n}
    )
    if stray:
        raise CheckFailed(f"the wheel holds more than the app: {stray}")
    say(f"installing {wheels[0].name} into a fresh virtualenv")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], work, env)
    bin_dir = venv / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheels[0])], work, env, 900)

    say("django-admin startproject mysite")
    site = work / "mysite"
    site.mkdir()
    run([str(bin_dir / "django-admin"), "startproject", "mysite", str(site)], work, env)
    # The host's own app and user model, before any migration (as Django asks).
    accounts = site / "accounts"
    (accounts / "migrations").mkdir(parents=True)
    (accounts / "__init__.py").write_text("")
    (accounts / "migrations" / "__init__.py").write_text("")
    (accounts / "models.py").write_text(USER_MODEL)
    (site / "templates").mkdir()
    settings = site / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text()
        + '\nINSTALLED_APPS += ["accounts"]\nAUTH_USER_MODEL = "accounts.User"\n'
        + 'TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]\n'
    )

    say("applying the README's steps")
    for action, target, code in readme_steps():
        if action == "bell":
            (site / "templates" / "base.html").write_text(
                "<!doctype html><html><head><title>{% block title %}mysite{% endblock %}</title>"
                "</head><body><header>" + code.strip() + "</header>"
                "<main>{% block content %}{% endblock %}</main></body></html>\n"
            )
            continue
        path = site / (target or "")
        if action == "replace":
            path.write_text(code)
        else:
            path.write_text(path.read_text() + "\n" + code)
    return bin_dir, site


def manage(bin_dir: Path, site: Path, env: dict[str, str], *args: str) -> str:
    return run([str(bin_dir / "python"), "manage.py", *args], site, env)


def shell(bin_dir: Path, site: Path, env: dict[str, str], code: str) -> str:
    return manage(bin_dir, site, env, "shell", "-c", textwrap.dedent(code))


async def socket_checks(port: int, cookie: str, send: callable) -> dict[str, object]:
    """Open a logged-in socket, wait for hello, have a notification sent, receive it."""
    url = f"ws://127.0.0.1:{port}/ws/notifications/"
    seen: dict[str, object] = {}
    try:
        async with connect(
            url, origin="http://evil.example", additional_headers={"Cookie": cookie}
        ):
            seen["foreign_origin"] = "accepted"
    except InvalidStatus as exc:
        seen["foreign_origin"] = exc.response.status_code
    async with connect(
        url, origin=f"http://127.0.0.1:{port}", additional_headers={"Cookie": cookie}
    ) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT))
        seen["hello"] = hello
        started = time.monotonic()
        await asyncio.to_thread(send)
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT))
            if frame.get("type") == "notification":
                seen["push"] = frame["notification"]
                # From the end of the sending process (its start-up included) to the frame.
                seen["push_seconds"] = time.monotonic() - started
                break
    return seen


def check(work: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "VIRTUAL_ENV"))
    }
    env.pop("PYTHONPATH", None)
    redis_url = REDIS_URL
    env["REDIS_URL"] = redis_url
    bin_dir, site = build_site(work, env)
    env = {**env, "DJANGO_SETTINGS_MODULE": "mysite.settings"}

    say("manage.py check (warnings fail)")
    manage(bin_dir, site, env, "check", "--fail-level", "WARNING")
    for name in ("seed_demo", "bench_notifications"):
        if name in manage(bin_dir, site, env, "help", "--commands"):
            raise CheckFailed(f"the wheel brought the demo's {name} command")
    run(
        [
            str(bin_dir / "python"),
            "-c",
            "import importlib.util as u, sys; sys.exit(u.find_spec('notifyproject') is not None)",
        ],
        work,
        env,
    )

    say("makemigrations accounts, migrate")
    manage(bin_dir, site, env, "makemigrations", "accounts", "-v", "0")
    manage(bin_dir, site, env, "migrate", "-v", "0")
    cookie = (
        shell(
            bin_dir,
            site,
            env,
            """
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.test import Client
        user = get_user_model().objects.create_user(
            email="ana@example.com", username="ana", password="pw-ana-12345"
        )
        client = Client()
        client.force_login(user)
        print(f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}")
        """,
        )
        .strip()
        .splitlines()[-1]
    )

    port = free_port()
    daphne = spawn(
        "daphne",
        [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port), "mysite.asgi:application"],
        env,
        cwd=site,
    )
    listener = spawn(
        "listener", [str(bin_dir / "python"), "manage.py", "listen_notifications"], env, cwd=site
    )
    try:
        say(f"daphne on {port}, listener started")
        daphne.wait_for_port(port, timeout=STEP_TIMEOUT)
        listener.wait_for_line("Listening on channel", timeout=STEP_TIMEOUT)
        wait_for_subscriber(redis_url, listener)

        def send() -> None:
            shell(
                bin_dir,
                site,
                env,
                """
                from django.contrib.auth import get_user_model
                from notifications import notify
                ana = get_user_model().objects.get(email="ana@example.com")
                notify(ana, "Hello from mysite", url="/notifications/")
                """,
            )

        seen = asyncio.run(socket_checks(port, cookie, send))
        say(f"foreign Origin: HTTP {seen['foreign_origin']}; hello: {seen['hello']}")
        if seen["foreign_origin"] != 403:
            raise CheckFailed(
                f"a handshake from http://evil.example was not refused: {seen['foreign_origin']}"
            )
        hello = seen["hello"]
        # The app's welcome receiver has already greeted the new user: one unread.
        if hello.get("type") != "hello" or hello.get("unread") != 1:
            raise CheckFailed(f"unexpected hello {hello}")
        push = seen.get("push") or {}
        if push.get("title") != "Hello from mysite":
            raise CheckFailed(f"no live push: {seen}")
        say(f"live push received {seen['push_seconds']:.2f} s after the sending command started")

        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/notifications/api/", headers={"Cookie": cookie}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own daphne
            api = json.loads(response.read())
        titles = [row["title"] for row in api.get("results", [])]
        if api.get("unread") != 2 or titles[:1] != ["Hello from mysite"] or len(titles) != 2:
            raise CheckFailed(f"inbox API: {api}")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/notifications/", headers={"Cookie": cookie}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            page = response.read().decode()
        if "Hello from mysite" not in page or "data-notification-bell" not in page:
            raise CheckFailed("the inbox page lacks the notification or the site's bell")
        say("inbox page and API answer in the site's layout")
        for process in (daphne, listener):
            if "Traceback" in process.output:
                raise CheckFailed(process.failure("logged a traceback"))
    except SupervisorError as exc:
        raise CheckFailed(str(exc)) from None
    finally:
        stop_all([listener, daphne])

    client = redis.Redis.from_url(redis_url)
    keys = [*client.scan_iter(match="asgi*"), *client.scan_iter(match="notifications*")]
    if keys:
        client.delete(*keys)
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="host-site-"))
    started = time.monotonic()
    try:
        check(work)
    except CheckFailed as exc:
        print(f"host-site: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if options.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say(f"passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
