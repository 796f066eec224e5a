"""Production settings: `check --deploy` is clean, and a missing secret is refused."""

import os
import runpy
import secrets
import subprocess
import sys

import pytest

from tests.processes import ROOT


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    environment.update(DJANGO_SETTINGS_MODULE="notifyproject.settings", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_deploy_is_clean_with_debug_off_and_a_real_secret():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        # A rotation in progress is a deploy like any other: no warning for the old key.
        DJANGO_SECRET_KEY_FALLBACKS=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="notify.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_debug_off_without_a_secret_key_is_refused_with_a_clear_message():
    result = run_manage("check", DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "Set DJANGO_SECRET_KEY" in result.stderr


def test_an_ambiguous_boolean_is_refused():
    result = run_manage("check", DJANGO_DEBUG="maybe")
    assert result.returncode != 0
    assert "DJANGO_DEBUG='maybe' is not a boolean" in result.stderr


def demo_settings(monkeypatch, **env: str) -> dict:
    """Import the demo's settings module afresh under ``env`` and return its names."""
    for name in list(os.environ):
        if name.startswith("DJANGO_") and name != "DJANGO_SETTINGS_MODULE":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # run_path, not run_module: the module is imported already (tests.settings star-imports it).
    return runpy.run_path(str(ROOT / "notifyproject" / "settings.py"))


@pytest.mark.parametrize("raw", ["0", "false", "off", "no"])
def test_the_proxy_ssl_header_off_means_off(monkeypatch, raw):
    assert "SECURE_PROXY_SSL_HEADER" not in demo_settings(
        monkeypatch, DJANGO_SECURE_PROXY_SSL_HEADER=raw
    )


def test_the_proxy_ssl_header_is_off_unless_asked_and_on_when_asked(monkeypatch):
    assert "SECURE_PROXY_SSL_HEADER" not in demo_settings(monkeypatch)
    on = demo_settings(monkeypatch, DJANGO_SECURE_PROXY_SSL_HEADER="1")
    assert on["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    with pytest.raises(ValueError, match="DJANGO_SECURE_PROXY_SSL_HEADER='sure'"):
        demo_settings(monkeypatch, DJANGO_SECURE_PROXY_SSL_HEADER="sure")


def test_old_secret_keys_are_read_from_the_environment(monkeypatch):
    assert demo_settings(monkeypatch)["SECRET_KEY_FALLBACKS"] == []
    rotated = demo_settings(
        monkeypatch,
        DJANGO_SECRET_KEY="the-new-key",
        DJANGO_SECRET_KEY_FALLBACKS=" the-old-key , an-older-key ,",
    )
    assert rotated["SECRET_KEY"] == "the-new-key"
    assert rotated["SECRET_KEY_FALLBACKS"] == ["the-old-key", "an-older-key"]


def test_allowed_hosts_star_warns_in_the_demo_settings():
    """DJANGO_ALLOWED_HOSTS=* is how an operator turns the Origin check off: say so."""
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_SECRET_KEY_FALLBACKS=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="*",
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "notifications.W005" in output
    # The only complaint: a rotated-out key in the fallbacks is no warning of its own.
    assert "1 issue" in output, output
