"""seed_demo creates the demo once and leaves it alone; run_stack checks before it changes.

A restart of ``make run`` must log nobody out: a password reset changes the session auth
hash, and every open bell would go to "Log in again".
"""

from __future__ import annotations

import io
import os
import signal
import socket

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client

from notifyproject.demo.management.commands import run_stack

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def logged_in_client(username: str, password: str) -> Client:
    client = Client()
    assert client.login(username=username, password=password)
    return client


def still_logged_in(client: Client) -> bool:
    return client.get("/notifications/").status_code == 200


def password_hashes() -> dict[str, str]:
    return dict(get_user_model().objects.values_list("username", "password"))


def test_a_second_run_changes_no_password_and_ends_no_session():
    first = seed()
    assert "created admin, alice, bob" in first
    alice = logged_in_client("alice", "alice-demo-pw")
    admin = logged_in_client("admin", "admin-demo-pw")
    hashes = password_hashes()

    second = seed()

    assert password_hashes() == hashes
    assert still_logged_in(alice) and still_logged_in(admin)
    assert "left admin, alice, bob as they were" in second
    assert "seed_demo --reset" in second
    assert "alice / alice-demo-pw" in second  # the logins are still printed


def test_a_second_run_leaves_changed_users_and_the_group_alone():
    seed()
    user_model = get_user_model()
    bob = user_model.objects.get(username="bob")
    bob.set_password("bobs-own")
    bob.is_staff = True
    bob.save()
    Group.objects.get(name="demo-team").user_set.remove(bob)

    seed()

    bob.refresh_from_db()
    assert bob.check_password("bobs-own") and bob.is_staff
    assert list(
        Group.objects.get(name="demo-team").user_set.values_list("username", flat=True)
    ) == ["alice"]
    assert user_model.objects.count() == 3 and Group.objects.count() == 1


def test_reset_restores_the_demo_and_ends_those_sessions():
    seed()
    bob = get_user_model().objects.get(username="bob")
    bob.set_password("bobs-own")
    bob.is_staff = True
    bob.save()
    Group.objects.get(name="demo-team").user_set.remove(bob)
    client = logged_in_client("bob", "bobs-own")
    hashes = password_hashes()

    out = seed("--reset")

    assert "reset admin, alice, bob" in out
    changed = password_hashes()
    assert all(changed[name] != hashes[name] for name in ("admin", "alice", "bob"))
    bob.refresh_from_db()
    assert bob.check_password("bob-demo-pw") and not bob.is_staff
    assert Group.objects.get(name="demo-team").user_set.filter(pk=bob.pk).exists()
    assert not still_logged_in(client)


def test_a_new_demo_user_joins_the_existing_group():
    seed()
    get_user_model().objects.filter(username="alice").delete()

    assert "created alice" in seed()

    team = Group.objects.get(name="demo-team")
    assert set(team.user_set.values_list("username", flat=True)) == {"alice", "bob"}


@pytest.fixture
def busy_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def kept_signal_handlers():
    """run_stack installs its own SIGINT/SIGTERM/SIGHUP handlers; give pytest its own back."""
    saved = {signum: signal.getsignal(signum) for signum in run_stack.supervisor.STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_run_stack_refuses_a_busy_port_before_touching_the_database(
    busy_port, kept_signal_handlers, monkeypatch, django_assert_num_queries
):
    monkeypatch.setitem(os.environ, "PORT", str(busy_port))
    monkeypatch.setitem(os.environ, "HOST", "127.0.0.1")
    migrated = []
    monkeypatch.setattr(run_stack, "prepare_database", lambda: migrated.append(True))

    with django_assert_num_queries(0), pytest.raises(CommandError, match="Cannot listen"):
        call_command("run_stack")

    assert migrated == []
    assert not get_user_model().objects.exists()  # no demo users either
