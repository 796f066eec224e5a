"""``manage.py seed_demo``: create the demo users and group that ``make run`` prints.

Creates what is missing and leaves what exists alone: a second run changes no password, so
no session's auth hash changes and nobody who is logged in is logged out (``make run`` runs
it on every start). ``--reset`` gives the demo users their demo passwords and flags back,
and the group its members (which logs those users out everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

# (username, password, is_superuser): demo credentials, printed on purpose.
DEMO_USERS = (
    ("admin", "admin-demo-pw", True),
    ("alice", "alice-demo-pw", False),
    ("bob", "bob-demo-pw", False),
)
DEMO_GROUP = "demo-team"
DEMO_GROUP_MEMBERS = ("alice", "bob")


@dataclass
class Seeded:
    """What a seeding run did: the users it created, and those it reset."""

    created: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)


@transaction.atomic
def seed(*, reset: bool = False) -> Seeded:
    """Create the missing demo users and group; with ``reset``, restore the existing ones."""
    done = Seeded()
    users: dict[str, AbstractBaseUser] = {}
    user_model = get_user_model()
    for username, password, superuser in DEMO_USERS:
        user, created = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: username},
            defaults={"is_active": True, "is_staff": superuser, "is_superuser": superuser},
        )
        if created or reset:
            user.set_password(password)
            user.is_active = True
            user.is_staff = superuser
            user.is_superuser = superuser
            user.save()
            (done.created if created else done.reset).append(username)
        else:
            done.left_alone.append(username)
        users[username] = user
    group, group_created = Group.objects.get_or_create(name=DEMO_GROUP)
    # Members only when the group is new, a member is new, or on reset: someone who took
    # bob out of the group keeps it that way.
    joining = [
        name for name in DEMO_GROUP_MEMBERS if group_created or reset or name in done.created
    ]
    if joining:
        group.user_set.add(*(users[name] for name in joining))
    return done


class Command(BaseCommand):
    help = (
        "Create the demo users admin, alice and bob and the group demo-team (alice and bob) "
        "if they are missing; existing ones are left alone. --reset restores their demo "
        "passwords and flags. For local demos only: the passwords are public."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Give existing demo users their demo passwords and flags back (this logs "
            "them out of every open session).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Seed, say what changed, then print the logins."""
        done = seed(reset=bool(options["reset"]))
        if int(options["verbosity"]) >= 1:
            self.stdout.write(describe(done))
            self.print_logins()

    def print_logins(self) -> None:
        """Print the demo credentials and the group."""
        self.stdout.write(self.style.SUCCESS("Demo users (username / password):"))
        for username, password, superuser in DEMO_USERS:
            note = "  (superuser)" if superuser else ""
            self.stdout.write(f"  {username} / {password}{note}")
        members = ", ".join(DEMO_GROUP_MEMBERS)
        self.stdout.write(f"Group {DEMO_GROUP}: {members}")


def describe(done: Seeded) -> str:
    """Say in one line what a seeding run did."""
    parts = []
    if done.created:
        parts.append("created " + ", ".join(done.created))
    if done.reset:
        parts.append("reset " + ", ".join(done.reset) + " (their sessions end)")
    if done.left_alone:
        parts.append(
            "left " + ", ".join(done.left_alone) + " as they were (seed_demo --reset restores "
            "the demo passwords)"
        )
    return "Demo users: " + "; ".join(parts) + "."
