"""The benchmark's throwaway users, their sessions and group, and their removal.

Everything a run creates carries its run id: users ``bench-<run>-0000001`` (one precomputed
password hash, bulk-inserted, no signals so no welcome notifications; the category mutes of
some of them, ``CategoryPreference`` rows, bulk-inserted and removed with them), session keys
``bench<run><random>`` (bulk-inserted rows of the database session engine, so the sockets
log in with real cookies through ``AuthMiddlewareStack``), a group ``bench-<run>``, and
notifications whose titles start ``[bench-<run>]``. ``cleanup()`` removes all of it, and
``purge_leftovers()`` what interrupted runs (kill -9) left behind.

Broadcasts go to audience ``all`` only when the database holds no other active user, so a
run never writes into real users' bells; otherwise to the run's group (``--audience``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import CharField, EmailField, Model, QuerySet
from django.utils import timezone

from notifications.models import Audience, CategoryPreference, Delivery, Notification
from notifyproject.demo.bench.workers import BenchError

CHUNK = 900  # ids per IN (...) list: under SQLite's old 999-variable limit
# A user's primary key: whatever the user model uses (int, UUID, str...). Nothing here does
# arithmetic on it or assumes that new users sort after old ones.
UserId = Any
LEFTOVER_USERS = r"^bench-[0-9a-f]{8}-"
LEFTOVER_TITLES = r"^\[bench-[0-9a-f]{8}\]"
LEFTOVER_SESSIONS = r"^bench[0-9a-f]{8}"
LEFTOVER_GROUPS = r"^bench-[0-9a-f]{8}$"
LEFTOVER_TABLES = r"^bench_[0-9a-f]{8}_"


def wire_ids(user_ids: Iterable[UserId]) -> list[str]:
    """Return user ids as they travel to the creators: JSON has no UUID, so as strings."""
    return [str(pk) for pk in user_ids]


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def delete_in_chunks(queryset: QuerySet[Any]) -> int:
    """Delete the rows of ``queryset`` a chunk of primary keys at a time (cascades included)."""
    model: type[Model] = queryset.model
    ids = list(queryset.order_by().values_list("pk", flat=True))
    for part in chunks(ids):
        model._default_manager.filter(pk__in=part).delete()
    return len(ids)


class Population:
    """The users of one run, their sessions, and the audience broadcasts use."""

    def __init__(self, run_id: str, audience_mode: str = "auto") -> None:
        self.run_id = run_id
        self.username_prefix = f"bench-{run_id}-"
        self.session_prefix = f"bench{run_id}"
        self.tag = f"[bench-{run_id}]"
        self.audience_mode = audience_mode
        self.audience = Audience.ALL
        self.group_id: int | None = None
        self.user_ids: list[UserId] = []
        self.sessions: dict[UserId, str] = {}
        self.password_hash = make_password(secrets.token_urlsafe(24))
        self.user_model = get_user_model()

    # ---- audience ------------------------------------------------------------------------

    def other_active_users(self) -> int:
        return (
            self.user_model._default_manager.filter(is_active=True)
            .exclude(**{f"{self.user_model.USERNAME_FIELD}__startswith": self.username_prefix})
            .count()
        )

    def choose_audience(self) -> str:
        """Pick ``all`` or the run's group for broadcasts; create the group if needed."""
        others = self.other_active_users()
        if self.audience_mode == "all" and others:
            raise BenchError(
                f"--audience all would notify {others} real user(s) of this database; "
                "use a database of its own, or --audience group"
            )
        use_group = self.audience_mode == "group" or (self.audience_mode == "auto" and others)
        if use_group:
            self.group_id = Group.objects.create(name=f"bench-{self.run_id}").pk
            self.audience = Audience.GROUP
        return self.audience

    def audience_size(self) -> int:
        """How many Delivery rows a broadcast of this run should write."""
        users = self.user_model._default_manager.filter(is_active=True)
        if self.audience == Audience.GROUP:
            users = users.filter(groups=self.group_id)
        return users.count()

    def audience_queryset(self) -> QuerySet[Any]:
        users = self.user_model._default_manager.filter(is_active=True)
        if self.audience == Audience.GROUP:
            users = users.filter(groups=self.group_id)
        return users

    # ---- users and sessions --------------------------------------------------------------

    def user_id(self, value: Any) -> UserId:
        """Return the user id ``value`` as the user model's own type (JSON carries strings)."""
        return self.user_model._meta.pk.to_python(value)

    def ensure_users(self, count: int, *, exact: bool = False) -> list[UserId]:
        """Make the run have at least (``exact``: exactly) ``count`` users; return their ids."""
        missing = count - len(self.user_ids)
        if missing > 0:
            field = self.user_model.USERNAME_FIELD
            start = len(self.user_ids)
            self.user_model._default_manager.bulk_create(
                [
                    self.user_model(
                        **self._identity(index), password=self.password_hash, is_active=True
                    )
                    for index in range(start, count)
                ],
                batch_size=1000,
            )
            # In creation order by the zero-padded username, not by pk: a UUID (or any
            # non-sequential) pk of a new user may sort before the old ones.
            ids = list(
                self.user_model._default_manager.filter(
                    **{f"{field}__startswith": self.username_prefix}
                )
                .order_by(field)
                .values_list("pk", flat=True)
            )
            new = ids[start:]
            self.user_ids = ids
            if self.group_id is not None:
                through = self.user_model.groups.through
                through.objects.bulk_create(
                    [through(user_id=pk, group_id=self.group_id) for pk in new], batch_size=1000
                )
            self.refresh_planner_stats()
        elif exact and missing < 0:
            extra = self.user_ids[count:]
            self._delete_users(extra)
            self.user_ids = self.user_ids[:count]
        return self.user_ids[:count]

    def _identity(self, index: int) -> dict[str, str]:
        """Return the text fields of user ``index``: its run-prefixed name in the login field
        and in every other unique one (a custom model may have a unique ``username`` beside
        an ``email`` login; left empty, the second user would collide with the first).
        """
        name = f"{self.username_prefix}{index:07d}"
        values = {}
        for model_field in self.user_model._meta.concrete_fields:
            if model_field.primary_key or not isinstance(model_field, CharField):
                continue
            if model_field.name == self.user_model.USERNAME_FIELD or model_field.unique:
                is_email = isinstance(model_field, EmailField)
                values[model_field.name] = f"{name}@bench.invalid" if is_email else name
        return values

    def cookies(self, user_ids: Sequence[UserId]) -> dict[UserId, str]:
        """Return a session cookie header value per user, creating sessions as needed."""
        missing = [pk for pk in user_ids if pk not in self.sessions]
        if missing:
            self._create_sessions(missing)
        name = settings.SESSION_COOKIE_NAME
        return {pk: f"{name}={self.sessions[pk]}" for pk in user_ids}

    def _session_data(self, user_id: UserId) -> dict[str, str]:
        user = self.user_model(pk=user_id, password=self.password_hash)
        return {
            # As django.contrib.auth.login() stores it, for any primary key type.
            SESSION_KEY: self.user_model._meta.pk.value_to_string(user),
            BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
            HASH_SESSION_KEY: user.get_session_auth_hash(),
        }

    def _create_sessions(self, user_ids: Sequence[UserId]) -> None:
        store_class = import_module(settings.SESSION_ENGINE).SessionStore
        expires = timezone.now() + timedelta(days=1)
        if hasattr(store_class, "get_model_class"):
            model = store_class.get_model_class()
            encoder = store_class()
            rows = []
            for pk in user_ids:
                key = self.session_prefix + secrets.token_hex(12)
                rows.append(
                    model(
                        session_key=key,
                        session_data=encoder.encode(self._session_data(pk)),
                        expire_date=expires,
                    )
                )
                self.sessions[pk] = key
            model.objects.bulk_create(rows, batch_size=1000)
            self.refresh_planner_stats()
            return
        for pk in user_ids:  # cache or signed-cookie sessions: one at a time
            store = store_class()
            store.update(self._session_data(pk))
            store.set_expiry(86400)
            store.save(must_create=True)
            self.sessions[pk] = str(store.session_key)

    def refresh_planner_stats(self) -> None:
        """PostgreSQL: VACUUM ANALYZE the tables a run fills, as autovacuum soon would.

        A table last analysed nearly empty (a new database) keeps the planner guessing a few
        rows where there are thousands: its plans for the handshake's and the verbs' queries
        cost P1 its tail and T1 a second (README, "Benchmarks"). ANALYZE alone is worse on a
        database an earlier run emptied: it records 0 rows on pages of dead ones, a density
        of zero that the planner scales to any size (P3's listener fell from 2,331 to 152
        notifications/s). VACUUM first drops the dead rows and the emptied pages, so the
        planner goes by the table's real size. SQLite: nothing (Django never runs its
        ANALYZE, so neither does a site).
        """
        if connection.vendor != "postgresql":
            return
        models: list[type[Model]] = [self.user_model, Notification, Delivery, CategoryPreference]
        if hasattr(self.user_model, "groups"):  # a user model without PermissionsMixin: none
            models.append(self.user_model.groups.through)
        store_class = import_module(settings.SESSION_ENGINE).SessionStore
        if hasattr(store_class, "get_model_class"):
            models.append(store_class.get_model_class())
        with connection.cursor() as cursor:
            for model in models:
                table = connection.ops.quote_name(model._meta.db_table)
                cursor.execute(f"VACUUM ANALYZE {table}")

    # ---- preferences ---------------------------------------------------------------------

    def mute(self, user_ids: Sequence[UserId], category: str) -> int:
        """Have these users mute ``category`` (no bell); return the rows written."""
        rows = [CategoryPreference(user_id=pk, category=category, bell=False) for pk in user_ids]
        CategoryPreference.objects.bulk_create(rows, batch_size=1000)
        return len(rows)

    def unmute(self, user_ids: Sequence[UserId] | None = None) -> int:
        """Remove the category preferences of these users (default: all of the run's)."""
        removed = 0
        for part in chunks(list(self.user_ids if user_ids is None else user_ids)):
            removed += CategoryPreference.objects.filter(user_id__in=part).delete()[0]
        return removed

    # ---- removal -------------------------------------------------------------------------

    def delete_notifications(self, title_prefix: str | None = None) -> int:
        """Delete this run's notifications (those whose title starts with the prefix)."""
        prefix = title_prefix or self.tag
        return delete_in_chunks(Notification.objects.filter(title__startswith=prefix))

    def _delete_users(self, user_ids: Sequence[UserId]) -> None:
        for pk in user_ids:
            self.sessions.pop(pk, None)
        for part in chunks(list(user_ids)):
            Delivery.objects.filter(user_id__in=part).delete()
            CategoryPreference.objects.filter(user_id__in=part).delete()
            self.user_model._default_manager.filter(pk__in=part).delete()

    def _delete_sessions(self) -> None:
        store_class = import_module(settings.SESSION_ENGINE).SessionStore
        if hasattr(store_class, "get_model_class"):
            model = store_class.get_model_class()
            model.objects.filter(session_key__startswith=self.session_prefix).delete()
        else:
            for key in self.sessions.values():
                store_class(session_key=key).delete()
        self.sessions.clear()

    def cleanup(self) -> None:
        """Remove everything this run wrote to the database."""
        connection.close()  # a fresh connection, whatever state an interruption left
        self.delete_notifications()
        self._delete_sessions()
        field = self.user_model.USERNAME_FIELD
        ids = list(
            self.user_model._default_manager.filter(
                **{f"{field}__startswith": self.username_prefix}
            ).values_list("pk", flat=True)
        )
        self._delete_users(ids)
        self.user_ids = []
        Group.objects.filter(name=f"bench-{self.run_id}").delete()

    def remaining(self) -> int:
        field = self.user_model.USERNAME_FIELD
        return self.user_model._default_manager.filter(
            **{f"{field}__startswith": self.username_prefix}
        ).count()


def purge_leftovers() -> dict[str, int]:
    """Remove what interrupted runs left: users, sessions, groups, notifications, tables."""
    user_model = get_user_model()
    removed = {
        "notifications": delete_in_chunks(
            Notification.objects.filter(title__regex=LEFTOVER_TITLES)
        ),
    }
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if hasattr(store_class, "get_model_class"):
        sessions = store_class.get_model_class().objects.filter(
            session_key__regex=LEFTOVER_SESSIONS
        )
        removed["sessions"] = sessions.delete()[0]
    users = user_model._default_manager.filter(
        **{f"{user_model.USERNAME_FIELD}__regex": LEFTOVER_USERS}
    )
    ids = list(users.values_list("pk", flat=True))
    for part in chunks(ids):
        Delivery.objects.filter(user_id__in=part).delete()
        CategoryPreference.objects.filter(user_id__in=part).delete()
        user_model._default_manager.filter(pk__in=part).delete()
    removed["users"] = len(ids)
    removed["groups"] = Group.objects.filter(name__regex=LEFTOVER_GROUPS).delete()[0]
    from notifyproject.demo.bench.peers import drop_leftover_tables

    removed["tables"] = drop_leftover_tables(LEFTOVER_TABLES)
    return removed
