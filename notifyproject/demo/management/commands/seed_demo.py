"""``manage.py seed_demo``: create the demo users and group that ``make run`` prints.

Idempotent: an existing demo user gets its demo password and flags back; nothing is duplicated.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

# (username, password, is_superuser): demo credentials, printed on purpose.
DEMO_USERS = (
    ("admin", "admin-demo-pw", True),
    ("alice", "alice-demo-pw", False),
    ("bob", "bob-demo-pw", False),
)
DEMO_GROUP = "demo-team"
DEMO_GROUP_MEMBERS = ("alice", "bob")


class Command(BaseCommand):
    help = (
        "Create (or reset) the demo users admin, alice and bob and the group demo-team "
        "(alice and bob). For local demos only: the passwords are public."
    )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        """Create or update the users, then the group, then print the logins."""
        self.verbosity = int(options["verbosity"])
        users = {
            username: self.upsert_user(username, password, superuser)
            for username, password, superuser in DEMO_USERS
        }
        group, _ = Group.objects.get_or_create(name=DEMO_GROUP)
        group.user_set.add(*(users[name] for name in DEMO_GROUP_MEMBERS))
        self.print_logins()

    def upsert_user(self, username: str, password: str, superuser: bool) -> AbstractBaseUser:
        """Create the user, or reset an existing one's password and flags."""
        user_model = get_user_model()
        user, created = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: username}
        )
        user.set_password(password)
        user.is_active = True
        user.is_staff = superuser
        user.is_superuser = superuser
        user.save()
        if self.verbosity >= 2:
            self.stderr.write(f"{'Created' if created else 'Updated'} user {username}.")
        return user

    def print_logins(self) -> None:
        """Print the demo credentials and the group."""
        self.stdout.write(self.style.SUCCESS("Demo users ready (username / password):"))
        for username, password, superuser in DEMO_USERS:
            note = "  (superuser)" if superuser else ""
            self.stdout.write(f"  {username} / {password}{note}")
        members = ", ".join(DEMO_GROUP_MEMBERS)
        self.stdout.write(f"Group {DEMO_GROUP}: {members}")
