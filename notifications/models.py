"""Notification and Delivery: the database is the record; Redis only carries the news."""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from notifications import categories
from notifications.validators import MAX_URL_LENGTH, validate_notification_url


def _someone(verbose_name: Any) -> models.ForeignKey:
    """A user who did something to a notification (caused, recalled, edited it): kept when
    set, emptied when that user is deleted."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        verbose_name=verbose_name,
    )


def default_category() -> str:
    """The category a notification saved without one gets (NOTIFICATIONS["DEFAULT_CATEGORY"])."""
    return categories.default_slug()


class Level(models.TextChoices):
    INFO = "info", _("Info")
    SUCCESS = "success", _("Success")
    WARNING = "warning", _("Warning")
    ERROR = "error", _("Error")


class Audience(models.TextChoices):
    USER = "user", _("One user")
    GROUP = "group", _("A group")
    STAFF = "staff", _("All staff")
    ALL = "all", _("Everyone")


class NotificationQuerySet(models.QuerySet["Notification"]):
    def undispatched(self) -> NotificationQuerySet:
        """Committed rows the listener has not dispatched yet (scheduled ones included)."""
        return self.filter(dispatched_at__isnull=True)

    def unrecorded(self) -> NotificationQuerySet:
        """Dispatched rows whose Delivery rows are not all written yet (a broadcast in flight,
        or one whose listener died between push and record)."""
        return self.filter(dispatched_at__isnull=False, recorded_at__isnull=True)

    def due(self, now: Any = None) -> NotificationQuerySet:
        """Undispatched rows whose time has come: unscheduled, or ``publish_at`` passed
        (a scheduled one recalled before its time never goes out)."""
        now = now or timezone.now()
        return (
            self.undispatched()
            .filter(recalled_at__isnull=True)
            .filter(Q(publish_at__isnull=True) | Q(publish_at__lte=now))
        )

    def live(self, now: Any = None) -> NotificationQuerySet:
        """Rows that have not expired."""
        now = now or timezone.now()
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class Notification(models.Model):
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("body"), blank=True, max_length=10_000)
    level = models.CharField(_("level"), max_length=10, choices=Level.choices, default=Level.INFO)
    url = models.CharField(
        _("link"),
        max_length=MAX_URL_LENGTH,
        blank=True,
        validators=[validate_notification_url],
        help_text=_("Optional: a relative path (/posts/1/) or http(s) URL."),
    )
    audience = models.CharField(
        _("audience"), max_length=10, choices=Audience.choices, default=Audience.USER
    )
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("recipient"),
    )
    group = models.ForeignKey(
        Group,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("group"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    publish_at = models.DateTimeField(
        _("publish at"), null=True, blank=True, help_text=_("Leave empty to send now.")
    )
    expires_at = models.DateTimeField(
        _("expires at"), null=True, blank=True, help_text=_("After this it leaves the bell.")
    )
    # A slug of NOTIFICATIONS["CATEGORIES"] (checked by clean(), not by the database: a site
    # may retire a category and keep its rows).
    category = models.CharField(_("category"), max_length=50, default=default_category)
    critical = models.BooleanField(
        _("critical"),
        default=False,
        help_text=_("Ignores mutes and quiet hours: a security alert, an outage."),
    )
    dispatched_at = models.DateTimeField(_("dispatched at"), null=True, blank=True, editable=False)
    recipient_count = models.PositiveIntegerField(_("recipients"), default=0, editable=False)
    # Users of the audience left out at dispatch because they muted the category.
    muted_count = models.PositiveIntegerField(_("muted"), default=0, editable=False)
    # Grouping: notifications with one key (e.g. "post:42:comments") that are unread belong
    # together ("Ana and 12 others commented on …"). The actor's name is kept as it was
    # when sent, so lists need no join to the user table.
    group_key = models.CharField(_("group key"), max_length=200, blank=True, default="")
    actor = _someone(_("actor"))
    actor_name = models.CharField(_("actor's name"), max_length=150, blank=True, editable=False)
    # Recall and edit (notifications.recall / notifications.edit): who and when, kept for
    # audit. A recalled notification leaves every bell, inbox and count; its rows stay.
    recalled_at = models.DateTimeField(_("recalled at"), null=True, blank=True, editable=False)
    recalled_by = _someone(_("recalled by"))
    edited_at = models.DateTimeField(_("edited at"), null=True, blank=True, editable=False)
    edited_by = _someone(_("edited by"))
    # Set when every Delivery row is written. A broadcast is pushed first and recorded right
    # after; until then this is empty and the sweep finishes what a dead listener left.
    recorded_at = models.DateTimeField(_("recorded at"), null=True, blank=True, editable=False)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-id"]
        indexes = [
            # The sweep's query: undispatched rows by due time. Partial, so it stays tiny.
            models.Index(
                fields=["publish_at", "id"],
                name="notif_undispatched_idx",
                condition=Q(dispatched_at__isnull=True),
            ),
            # A sync's question "what did this user's page hold that was recalled or
            # edited lately?": both partial, so they hold only the few such rows.
            models.Index(
                fields=["recalled_at"],
                name="notif_recalled_idx",
                condition=Q(recalled_at__isnull=False),
            ),
            models.Index(
                fields=["edited_at"],
                name="notif_edited_idx",
                condition=Q(edited_at__isnull=False),
            ),
            # The sweep's other query: broadcasts pushed but not yet recorded. Partial too.
            models.Index(
                fields=["id"],
                name="notif_unrecorded_idx",
                condition=Q(dispatched_at__isnull=False, recorded_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save, and publish the news once the transaction commits (new rows only)."""
        is_new = self._state.adding
        super().save(*args, **kwargs)
        if is_new:
            from notifications.publisher import publish_on_commit

            publish_on_commit(self.pk, using=kwargs.get("using") or self._state.db)

    def clean(self) -> None:
        """Validate the audience fields together: each audience needs exactly its target."""
        errors: dict[str, Any] = {}
        if self.audience == Audience.USER:
            if self.recipient_id is None:
                errors["recipient"] = _("Choose the user who should receive this.")
            if self.group_id is not None:
                errors["group"] = _("Leave the group empty when sending to one user.")
        elif self.audience == Audience.GROUP:
            if self.group_id is None:
                errors["group"] = _("Choose the group whose members should receive this.")
            if self.recipient_id is not None:
                errors["recipient"] = _("Leave the recipient empty when sending to a group.")
        else:
            if self.recipient_id is not None:
                errors["recipient"] = _("Leave the recipient empty for this audience.")
            if self.group_id is not None:
                errors["group"] = _("Leave the group empty for this audience.")
        if self.publish_at and self.expires_at and self.expires_at <= self.publish_at:
            errors["expires_at"] = _("The expiry must come after the publish time.")
        try:
            self.category = categories.validate(self.category)
        except ValueError as exc:
            errors["category"] = str(exc)
        if self.title is not None and not self.title.strip():
            errors["title"] = _("The title cannot be blank.")
        if errors:
            raise ValidationError(errors)

    @property
    def is_scheduled(self) -> bool:
        return (
            self.dispatched_at is None
            and self.publish_at is not None
            and (self.publish_at > timezone.now())
        )

    @property
    def is_expired(self) -> bool:
        return self.expired_by(timezone.now())

    def expired_by(self, moment: Any) -> bool:
        """Whether the notification has expired at ``moment`` (dispatch judges at its own)."""
        return self.expires_at is not None and self.expires_at <= moment


class DeliveryState(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    READ = "read", _("Read")


UNREAD_STATES = (DeliveryState.PENDING, DeliveryState.DELIVERED)


class DeliveryQuerySet(models.QuerySet["Delivery"]):
    def for_user(self, user: Any) -> DeliveryQuerySet:
        """A user's deliveries that are still showable (not expired, not recalled)."""
        now = timezone.now()
        return self.filter(user=user, notification__recalled_at__isnull=True).filter(
            Q(notification__expires_at__isnull=True) | Q(notification__expires_at__gt=now)
        )

    def in_bell(self, now: Any = None) -> DeliveryQuerySet:
        """Rows the bell and the default list show: neither archived ("Done") nor snoozed.

        A snooze that has come due counts as back even before the listener has pushed it
        (and cleared it): counts never depend on a process being up at that moment.
        """
        now = now or timezone.now()
        return self.filter(archived_at__isnull=True).filter(
            Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now)
        )

    def archived(self) -> DeliveryQuerySet:
        return self.filter(archived_at__isnull=False)

    def snoozed(self, now: Any = None) -> DeliveryQuerySet:
        """Rows snoozed until a moment still to come (archived ones are in Archived)."""
        now = now or timezone.now()
        return self.filter(archived_at__isnull=True, snoozed_until__gt=now)

    def unread(self, now: Any = None) -> DeliveryQuerySet:
        """Unread rows that count in the badge: not read, not archived, not snoozed."""
        return self.in_bell(now).filter(state__in=UNREAD_STATES)


class Delivery(models.Model):
    # Both foreign keys are kept by Django (on_delete=CASCADE), not by database constraints:
    # PostgreSQL's per-row checks (each a locking lookup, at commit) doubled the cost of
    # writing a broadcast's rows. Their own indexes are left out too: the unique constraint
    # and the user_* indexes below start with the same columns. A notification's deletion
    # waits for a dispatch in flight (receivers.lock_notification_before_delete), so no
    # Delivery outlives its notification.
    notification = models.ForeignKey(
        Notification,
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,
        related_name="deliveries",
        verbose_name=_("notification"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,
        related_name="notification_deliveries",
        verbose_name=_("user"),
    )
    state = models.CharField(
        _("state"), max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)
    # Triage, the user's own: "Done" (out of the bell and the count, kept in Archived),
    # snoozed (out until then, back live as if new), seen (shown in an open list or toast).
    archived_at = models.DateTimeField(_("archived at"), null=True, blank=True)
    snoozed_until = models.DateTimeField(_("snoozed until"), null=True, blank=True)
    seen_at = models.DateTimeField(_("seen at"), null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["-notification_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["notification", "user"], name="delivery_unique_notification_user"
            ),
        ]
        indexes = [
            # Every list is in dispatch (arrival) order per user: the inbox, the API, the
            # cursor of sync and the last_id of hello and pong. With the user's state in
            # front: the unread count and the Unread lists.
            models.Index(fields=["user", "-id"], name="delivery_user_dispatch_idx"),
            models.Index(fields=["user", "state", "-id"], name="delivery_user_state_id_idx"),
            # The listener's next snooze to bring back: only snoozed rows are in it.
            models.Index(
                fields=["snoozed_until"],
                condition=Q(snoozed_until__isnull=False),
                name="delivery_snoozed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.notification_id} → {self.user_id} ({self.state})"


class ImportedNotification(models.Model):
    """One row taken from another app's notification table: what makes an import idempotent.

    ``manage.py import_django_notifications`` writes one per imported row, in the same
    transaction as the Notification it created, and skips every source row already listed.
    The record outlives its notification (SET_NULL): deleting an imported notification must
    not bring it back on the next run.
    """

    source_table = models.CharField(_("source table"), max_length=100)
    # Text, like django-notifications' own object ids: a swapped-in model may use any key type.
    source_id = models.CharField(_("source id"), max_length=64)
    notification = models.OneToOneField(
        Notification,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("notification"),
    )
    imported_at = models.DateTimeField(_("imported at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("imported notification")
        verbose_name_plural = _("imported notifications")
        constraints = [
            models.UniqueConstraint(
                fields=["source_table", "source_id"], name="imported_notification_unique_source"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_table} #{self.source_id} → {self.notification_id}"


def _default_quiet_days() -> str:
    return "0123456"


class Preference(models.Model):
    """A user's quiet hours: no toast, sound or desktop pop-up then (still stored, counted).

    A quiet period starts at ``quiet_start`` on each day in ``quiet_days`` (digits, Monday =
    0) and ends at the next ``quiet_end``, in ``time_zone`` (the user's zone when saved).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("user")
    )
    quiet_hours_enabled = models.BooleanField(_("quiet hours"), default=False)
    quiet_start = models.TimeField(_("quiet from"), default=datetime.time(22, 0))
    quiet_end = models.TimeField(_("quiet until"), default=datetime.time(7, 0))
    quiet_days = models.CharField(_("quiet days"), max_length=7, default=_default_quiet_days)
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("notification preference")
        verbose_name_plural = _("notification preferences")

    def __str__(self) -> str:
        return f"Preferences of {self.user_id}"


class CategoryPreference(models.Model):
    """One user's choice for one category: shown in the bell (or muted), toasts on or off.

    Only choices that differ from the category's default need a row; dispatch leaves out
    the users with ``bell=False`` in one anti-join (index ``category, bell, user``).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("user")
    )
    category = models.CharField(_("category"), max_length=50)
    bell = models.BooleanField(_("show in the bell"), default=True)
    toasts = models.BooleanField(_("toasts and pop-ups"), default=True)

    class Meta:
        verbose_name = _("category preference")
        verbose_name_plural = _("category preferences")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "category"], name="category_preference_unique_user"
            ),
        ]
        indexes = [
            models.Index(fields=["category", "bell", "user"], name="category_pref_mute_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.category}"
