"""The management commands seed_demo, run_stack, send_notification, listen_notifications --once."""

from __future__ import annotations

import io
import logging
import re
import signal
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.utils import timezone

from notifications import conf
from notifications.models import Delivery, Notification
from notifyproject.demo import supervisor
from tests import processes
from tests.factories import UserFactory

DEMO_LOGINS = {"admin": "admin-demo-pw", "alice": "alice-demo-pw", "bob": "bob-demo-pw"}


def seed() -> str:
    """Run seed_demo and return what it printed."""
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def send(*args: str, stdin: io.StringIO | None = None) -> tuple[str, str]:
    """Run send_notification without publishing; return (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    extra = {} if stdin is None else {"stdin": stdin}
    call_command("send_notification", *args, stdout=out, stderr=err, **extra)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def demo(db: None) -> None:
    seed()


@pytest.fixture
def no_publish(django_capture_on_commit_callbacks):
    """Keep the on_commit publish from running, so no Redis is needed.

    The list of captured callbacks is filled only when the block exits, after the test.
    """
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        yield callbacks


@pytest.fixture
def nothing_created(demo):
    """Assert that the test creates no notification (seeding may create welcome ones)."""
    before = Notification.objects.count()
    yield
    assert Notification.objects.count() == before


def created(out: str) -> Notification:
    """Return the notification whose id the command printed ("Sent #42 …" or, -v 0, "42")."""
    found = re.match(r"(?:Sent|Scheduled) #(\d+) ", out) or re.fullmatch(r"(\d+)\n", out)
    assert found, out
    return Notification.objects.get(pk=int(found.group(1)))


class TtyStdin(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- seed_demo ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_seed_demo_creates_users_group_and_prints_logins():
    output = seed()

    user_model = get_user_model()
    admin = user_model.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.is_active
    for name in ("alice", "bob"):
        user = user_model.objects.get(username=name)
        assert not user.is_staff and not user.is_superuser and user.is_active
    team = Group.objects.get(name="demo-team")
    assert set(team.user_set.values_list("username", flat=True)) == {"alice", "bob"}
    for username, password in DEMO_LOGINS.items():
        assert authenticate(username=username, password=password) is not None
        assert username in output and password in output


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_reset_restores_passwords():
    seed()
    alice = get_user_model().objects.get(username="alice")
    alice.set_password("something-else")
    alice.save()

    seed()
    assert authenticate(username="alice", password="something-else") is not None
    call_command("seed_demo", "--reset", stdout=io.StringIO())

    user_model = get_user_model()
    assert user_model.objects.filter(username__in=DEMO_LOGINS).count() == 3
    assert user_model.objects.count() == 3
    assert Group.objects.filter(name="demo-team").count() == 1
    assert Group.objects.get(name="demo-team").user_set.count() == 2
    for username, password in DEMO_LOGINS.items():
        assert authenticate(username=username, password=password) is not None


# --- run_stack (make run) -------------------------------------------------------------------


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_stack_prints_the_url_and_logins_and_stops_everything_on_sigint(live_env):
    port = processes.free_port()
    env = {**live_env, "PORT": str(port)}
    # In a session of its own, as a terminal would run it: its SIGINT reaches it alone.
    stack = processes.spawn(
        "run_stack", [sys.executable, "manage.py", "run_stack"], env, own_group=True
    )
    try:
        stack.wait_for_line(f"is running at http://127.0.0.1:{port}/", timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
        for username, password in DEMO_LOGINS.items():
            assert any(username in line and password in line for line in stack.lines)

        stack.signal(signal.SIGINT)
        assert stack.popen.wait(20) == 0, stack.output
    finally:
        stack.stop()
    assert "[run_stack] Got SIGINT." in stack.output
    assert "[run_stack] Stopped." in stack.output
    assert "killed it" not in stack.output  # daphne and the listener stopped on SIGTERM
    assert not supervisor.port_answers(port)


# --- send_notification: argument handling ---------------------------------------------------


@pytest.mark.django_db
def test_send_requires_an_audience(nothing_created):
    with pytest.raises(CommandError, match="one of the arguments"):
        send("--title", "Hi")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "audiences",
    [("--user", "alice", "--staff"), ("--all", "--staff"), ("--group", "demo-team", "--all")],
)
def test_send_refuses_two_audiences(nothing_created, audiences):
    with pytest.raises(CommandError, match="not allowed with"):
        send(*audiences, "--title", "Hi")


@pytest.mark.django_db
def test_send_unknown_user(nothing_created):
    with pytest.raises(CommandError, match="No user with username 'nobody'"):
        send("--user", "nobody", "--title", "Hi")


@pytest.mark.django_db
def test_send_unknown_group(nothing_created):
    with pytest.raises(CommandError, match="No group named 'nobody'"):
        send("--group", "nobody", "--title", "Hi")


@pytest.mark.django_db
def test_send_bad_level(nothing_created):
    with pytest.raises(CommandError, match="invalid choice"):
        send("--user", "alice", "--title", "Hi", "--level", "critical")


@pytest.mark.django_db
def test_send_bad_level_given_as_keyword(nothing_created):
    # call_command skips argparse's choices for keyword options; the command checks again.
    with pytest.raises(CommandError, match="--level must be one of"):
        call_command("send_notification", user="alice", title="Hi", level="critical")


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["tomorrow", "2030-13-01T09:00", "2030-01-31T25:00", "12"])
def test_send_bad_publish_at(nothing_created, value):
    with pytest.raises(CommandError, match=r"--publish-at: .* is not an ISO 8601 datetime"):
        send("--user", "alice", "--title", "Hi", "--publish-at", value)


@pytest.mark.django_db
def test_send_bad_expires_at(nothing_created):
    with pytest.raises(CommandError, match="--expires-at"):
        send("--all", "--title", "Hi", "--expires-at", "soon")


@pytest.mark.django_db
def test_send_validation_error_becomes_command_error(nothing_created, no_publish):
    with pytest.raises(CommandError, match="title"):
        send("--user", "alice", "--title", "x" * 201)
    with pytest.raises(CommandError, match="url: "):
        send("--user", "alice", "--title", "Hi", "--url", "javascript:alert(1)")
    with pytest.raises(CommandError, match="--expires-at"):
        send(
            "--all",
            "--title",
            "Hi",
            "--publish-at",
            "2099-01-02T00:00Z",
            "--expires-at",
            "2099-01-01T00:00Z",
        )


# --- send_notification: what it creates -----------------------------------------------------


@pytest.mark.django_db
def test_send_to_user_says_what_it_did(demo, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        out, err = send(
            "--user", "alice", "--title", "Hi", "--body", "Hello", "--level", "success",
            "--url", "/x/",
        )  # fmt: skip

    notification = created(out)
    assert out == (
        f'Sent #{notification.pk} "Hi" to alice (1 recipient); dispatch follows within a moment.\n'
    )
    assert err == ""
    assert notification.audience == "user"
    assert notification.recipient.get_username() == "alice"
    assert notification.group is None
    assert (notification.title, notification.body) == ("Hi", "Hello")
    assert (notification.level, notification.url) == ("success", "/x/")
    assert notification.publish_at is None and notification.expires_at is None
    assert callbacks, "publishing is left to transaction.on_commit"


@pytest.mark.django_db
def test_send_quiet_prints_only_the_id_for_scripts(demo, no_publish):
    out, err = send("--user", "alice", "--title", "Hi", "-v", "0", stdin=TtyStdin())

    assert re.fullmatch(r"\d+\n", out)
    assert err == ""
    assert created(out).title == "Hi"


@pytest.mark.django_db
def test_send_defaults(demo, no_publish):
    out, _ = send("--user", "bob", "--title", "Hi", stdin=TtyStdin("not read"))

    notification = created(out)
    assert (notification.level, notification.url, notification.body) == ("info", "", "")


@pytest.mark.django_db
def test_send_reads_body_from_stdin(demo, no_publish):
    out, _ = send("--user", "alice", "--title", "Hi", stdin=io.StringIO("line one\nline two\n"))

    assert created(out).body == "line one\nline two"


@pytest.mark.django_db
def test_send_reads_body_from_sys_stdin(demo, no_publish, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("piped body\n"))
    out, _ = send("--all", "--title", "Hi")

    assert created(out).body == "piped body"


@pytest.mark.django_db
def test_send_body_option_wins_over_stdin(demo, no_publish):
    out, _ = send("--user", "alice", "--title", "Hi", "--body", "given", stdin=io.StringIO("x"))

    assert created(out).body == "given"


@pytest.mark.django_db
def test_send_to_group(demo, no_publish):
    out, _ = send("--group", "demo-team", "--title", "Team", stdin=TtyStdin())

    notification = created(out)
    assert notification.audience == "group"
    assert notification.group.name == "demo-team"
    assert notification.recipient is None


@pytest.mark.django_db
@pytest.mark.parametrize("audience", ["staff", "all"])
def test_send_broadcast(demo, no_publish, audience):
    out, _ = send(f"--{audience}", "--title", "Everyone", stdin=TtyStdin())

    notification = created(out)
    assert notification.audience == audience
    assert notification.group is None and notification.recipient is None


@pytest.mark.django_db
def test_send_schedule_naive_is_current_time_zone(demo, no_publish):
    with timezone.override("Europe/Paris"):
        out, _ = send(
            "--user",
            "alice",
            "--title",
            "Later",
            "--publish-at",
            "2099-01-31T09:00",
            "--expires-at",
            "2099-02-01T09:00:00+00:00",
            stdin=TtyStdin(),
        )

    notification = created(out)
    # Paris is UTC+1 in winter.
    assert notification.publish_at == datetime(2099, 1, 31, 8, 0, tzinfo=UTC)
    assert notification.expires_at == datetime(2099, 2, 1, 9, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_send_to_a_group_and_to_everyone_counts_recipients(demo, no_publish):
    out, _ = send("--group", "demo-team", "--title", "Team", stdin=TtyStdin())
    assert out.endswith(
        '"Team" to group demo-team (2 recipients); dispatch follows within a moment.\n'
    )

    out, _ = send("--all", "--title", "All", stdin=TtyStdin())
    everyone = get_user_model().objects.filter(is_active=True).count()
    assert f'"All" to everyone ({everyone} recipients)' in out


@pytest.mark.django_db
def test_send_scheduled_says_when_in_the_current_time_zone(demo, no_publish):
    with timezone.override("Europe/Berlin"):
        out, _ = send(
            "--staff", "--title", "Review", "--publish-at", "2099-12-01T18:00",
            "--expires-at", "2099-12-02T17:00:00+00:00", stdin=TtyStdin(),
        )  # fmt: skip

    notification = created(out)
    assert notification.publish_at == datetime(2099, 12, 1, 17, 0, tzinfo=UTC)
    assert out == (
        f'Scheduled #{notification.pk} "Review" for 2099-12-01 18:00 CET, to staff '
        "(1 recipient today). It expires at 2099-12-02 18:00 CET.\n"
    )


@pytest.mark.django_db
def test_send_refuses_an_expiry_that_has_passed(nothing_created, no_publish):
    with pytest.raises(CommandError, match=r"^--expires-at: .* has already passed"):
        send("--user", "alice", "--title", "Hi", "--expires-at", "2020-01-01T00:00Z")


@pytest.mark.django_db
def test_send_refuses_a_publish_time_that_has_passed(nothing_created, no_publish):
    with pytest.raises(CommandError, match=r"^--publish-at: .* has already passed"):
        send("--user", "alice", "--title", "Hi", "--publish-at", "2020-01-01T00:00Z")
    # A minute ago is "now" (the admin allows the same slack).
    just_now = (timezone.now() - timedelta(minutes=1)).isoformat()
    out, _ = send("--user", "alice", "--title", "Now", "--publish-at", just_now)
    assert out.startswith("Sent #")
    Notification.objects.filter(title="Now").delete()


@pytest.mark.django_db
def test_send_errors_name_the_option(nothing_created, no_publish):
    with pytest.raises(CommandError, match=r"Not sent: --url: "):
        send("--user", "alice", "--title", "Hi", "--url", "javascript:alert(1)")
    with pytest.raises(CommandError, match=r"--title: "):
        send("--user", "alice", "--title", "   ")
    with pytest.raises(CommandError, match=r"--expires-at: .*after the publish"):
        send(
            "--all", "--title", "Hi", "--publish-at", "2099-01-02T00:00Z",
            "--expires-at", "2099-01-01T00:00Z",
        )  # fmt: skip


@pytest.mark.django_db
def test_send_refuses_a_deactivated_user(nothing_created, no_publish):
    get_user_model().objects.filter(username="bob").update(is_active=False)
    with pytest.raises(CommandError, match="--user: 'bob' is deactivated"):
        send("--user", "bob", "--title", "Hi")


@pytest.mark.live
def test_listener_once_dispatches_the_backlog_and_exits(live_env, transactional_db):
    """Only ``--once`` can dispatch here: no other listener runs (checked), and its own log
    names every row it dispatched."""
    user = UserFactory()
    rows = [Notification(title=f"backlog {i}", recipient=user, audience="user") for i in range(3)]
    ids = {row.pk for row in Notification.objects.bulk_create(rows)}  # no save(): no publish
    # A listener left running would sweep them within one interval: let two pass untouched.
    time.sleep(2 * conf.get().SWEEP_INTERVAL + 0.5)
    untouched = Notification.objects.filter(pk__in=ids, dispatched_at__isnull=True).count()
    assert untouched == 3, "another listener is dispatching from the test database"
    proc = processes.spawn(
        "listener --once",
        [sys.executable, "manage.py", "listen_notifications", "--once", "-v", "2"],
        live_env,
    )
    assert proc.popen.wait(30) == 0, proc.output
    proc.stop()
    logged = {int(found) for found in re.findall(r"Dispatched notification (\d+) ", proc.output)}
    assert logged == ids, proc.output
    assert "Dispatched 3 notification(s)." in proc.output
    assert Delivery.objects.filter(user=user).count() == 3
    assert not Notification.objects.filter(dispatched_at__isnull=True).exists()


class Lines(logging.Handler):
    """Collect the app's log lines (its logger does not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture
def app_log_lines():
    handler = Lines()
    app_logger = logging.getLogger("notifications")
    app_logger.addHandler(handler)
    yield handler.lines
    app_logger.removeHandler(handler)


@pytest.mark.live
def test_listener_prints_one_line_per_dispatch_at_the_default_verbosity(
    transactional_db, app_log_lines
):
    user = UserFactory(username="dora")
    rows = [Notification(title=f"line {i}", recipient=user, audience="user") for i in range(2)]
    ids = [row.pk for row in Notification.objects.bulk_create(rows)]  # no save(): no publish
    out = io.StringIO()

    call_command("listen_notifications", "--once", stdout=out)

    dispatched = [line for line in app_log_lines if "Dispatched notification" in line]
    assert len(dispatched) == 2, app_log_lines
    for notification_id, line in zip(ids, sorted(dispatched), strict=True):
        assert f"Dispatched notification {notification_id} (user) 'line " in line
        assert "to 1 recipient(s)" in line and line.endswith(" ms")
    # Sweeps and batches are -v 2 material.
    assert not [line for line in app_log_lines if "Sweep found" in line], app_log_lines
    assert "Dispatched 2 notification(s)." in out.getvalue()
    # The command leaves the loggers as it found them.
    assert not logging.getLogger("notifications.listener").filters


@pytest.mark.django_db
def test_send_with_a_category_and_critical(demo, no_publish):
    out, _ = send(
        "--user", "alice", "--title", "New sign-in", "--category", "security", "--critical"
    )
    notification = created(out)
    assert (notification.category, notification.critical) == ("security", True)


@pytest.mark.django_db
def test_send_refuses_an_unknown_category(nothing_created):
    with pytest.raises(CommandError, match="Unknown category 'nope'"):
        send("--user", "alice", "--title", "Hi", "--category", "nope")
