"""Model signals → notifications: the examples a site copies for its own models."""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import connections, transaction
from django.db.models.signals import m2m_changed, post_save, pre_delete
from django.utils.translation import gettext as _

from notifications import conf
from notifications.dispatch import push_logout, push_memberships_changed
from notifications.events import UserId
from notifications.models import Level, Notification
from notifications.services import lock_for_user_deletion, notify

logger = logging.getLogger(__name__)

# Saving only these fields of a user cannot change which groups their sockets belong in.
_MEMBERSHIP_FIELDS = {"is_staff", "is_active"}


def welcome_new_user(
    sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    """Greet every new user; also tell open sockets when staff or active flags change."""
    if raw:  # loaddata: fixtures are not events
        return
    if created:
        if conf.get().WELCOME_NEW_USERS:
            notify(
                instance,
                _("Welcome, %(name)s!") % {"name": instance.get_username()},
                body=_("This bell lights up the moment something happens for you."),
                level=Level.SUCCESS,
            )
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is None or _MEMBERSHIP_FIELDS & set(update_fields):
        _membership_changed_on_commit([instance.pk])


def group_membership_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[Any] | None, **kwargs: Any
) -> None:
    """Tell users they joined a group, and move their open sockets to the new groups."""
    if action not in {"post_add", "post_remove", "post_clear"}:
        return
    if reverse:  # group.user_set.add(users): instance is the Group, pk_set the users
        pairs = [(user_id, instance) for user_id in (pk_set or ())]
        user_ids = list(pk_set or ()) if action != "post_clear" else None
    else:  # user.groups.add(groups): instance is the user, pk_set the groups
        groups = Group.objects.filter(pk__in=pk_set or ())
        pairs = [(instance.pk, group) for group in groups]
        user_ids = [instance.pk]
    if action == "post_add" and conf.get().NOTIFY_GROUP_JOINS:
        users = get_user_model().objects.in_bulk([user_id for user_id, _group in pairs])
        for user_id, group in pairs:
            if user_id in users:
                notify(
                    users[user_id],
                    _("You were added to %(group)s") % {"group": group.name},
                    level=Level.INFO,
                )
    if user_ids is None:  # group.user_set.clear(): the members are gone from pk_set
        logger.debug("Group %s cleared; sockets update on reconnect", instance.pk)
        return
    _membership_changed_on_commit(user_ids)


# User ids whose sockets must move groups, per thread (a request's thread), waiting for the
# commit. One save can fire several receivers (the admin's user form: the save, then the
# groups): the first on_commit callback pushes for all of them at once, so a request pays one
# push deadline, not one per receiver, when Redis is silent. An id left behind by a rolled
# back transaction rides along with the next commit: one needless "rejoin" is harmless.
_pending_membership = threading.local()


def _membership_changed_on_commit(user_ids: list[UserId]) -> None:
    pending: set[UserId] = getattr(_pending_membership, "ids", None) or set()
    pending.update(user_ids)
    _pending_membership.ids = pending

    def push() -> None:
        waiting: set[UserId] = getattr(_pending_membership, "ids", None) or set()
        _pending_membership.ids = set()
        if not waiting:
            return  # an earlier callback of this commit pushed them
        try:
            push_memberships_changed(sorted(waiting, key=str))
        except Exception as exc:
            # Never fail the save: the sockets read their groups again at their next ping.
            logger.warning(
                "Could not tell %d user(s)' sockets about a membership change (%r)",
                len(waiting),
                exc,
            )

    transaction.on_commit(push)


def close_sockets_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Close the sockets of the session that logs out; no frame reaches it afterwards."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if not session_key:
        return
    try:
        push_logout(session_key)  # under deadlines.PUSH_SECONDS: logout never waits on Redis
    except Exception as exc:
        # The session is gone either way: its sockets close at their next ping (the consumer
        # checks the session is still there) and fail authentication on reconnect.
        logger.warning("Could not close the sockets of a logged-out session (%r)", exc)


def lock_notification_before_delete(sender: Any, instance: Notification, **kwargs: Any) -> None:
    """Wait for a dispatch of this notification in flight before its rows are deleted.

    Delivery has no database foreign key (see the model), so nothing else would stop a
    dispatch from committing rows just after the cascade deleted the ones it could see.
    Django sends pre_delete inside the deletion's transaction, before the cascade.
    """
    list(Notification.objects.select_for_update().filter(pk=instance.pk).values_list("pk"))


def lock_user_before_delete(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    """Wait for Delivery inserts in flight before the user's rows are deleted.

    Delivery has no database foreign key (see the model): an insert that read the user (a
    broadcast's chunk, a sync's or an ack's in-flight row) and commits after the cascade
    deleted the user's rows would leave one naming nobody. On PostgreSQL every insert holds
    a shared lock (services.DELIVERY_INSERT_LOCK) and this takes it exclusively: the cascade
    that follows sees the rows of the inserts it waited for, and inserts that start later
    wait for the deletion to commit and then no longer see the user. On SQLite every writer
    holds the database's write lock, so no insert runs beside the deletion. Django sends
    pre_delete inside the deletion's transaction, before the cascade.
    """
    lock_for_user_deletion(connections[using])


def connect() -> None:
    """Connect the receivers (called from AppConfig.ready)."""
    user_model = get_user_model()
    post_save.connect(
        welcome_new_user, sender=user_model, dispatch_uid="notifications.welcome_new_user"
    )
    pre_delete.connect(
        lock_notification_before_delete,
        sender=Notification,
        dispatch_uid="notifications.lock_notification_before_delete",
    )
    pre_delete.connect(
        lock_user_before_delete,
        sender=user_model,
        dispatch_uid="notifications.lock_user_before_delete",
    )
    user_logged_out.connect(
        close_sockets_on_logout, dispatch_uid="notifications.close_sockets_on_logout"
    )
    m2m_changed.connect(
        group_membership_changed,
        sender=user_model.groups.through,
        dispatch_uid="notifications.group_membership_changed",
    )
