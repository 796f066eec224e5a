"""The user model: ``AbstractUser`` with a UUID primary key and email as the login.

Deliberately no admin.py: a site that never registered its user model in the admin must
still pass ``manage.py check`` and compose notifications (a plain id field instead of the
autocomplete).
"""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = ["username"]
