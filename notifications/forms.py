"""The admin's compose form: audience, content, schedule — with errors that say what to fix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from notifications import categories
from notifications.models import Audience, Notification
from notifications.recalls import EDITABLE_FIELDS

# What was sent stays as it was sent: once dispatched, only the expiry may change.
CONTENT_FIELDS = (
    "title",
    "body",
    "level",
    "category",
    "critical",
    "url",
    "audience",
    "recipient",
    "group",
    "publish_at",
)

# A publish time this far in the past is taken as "now" (the time it took to fill the form,
# or the admin's "Now" shortcut); further back it is more likely a typo in the date.
PUBLISH_AT_GRACE = timedelta(minutes=5)


class NotificationAdminForm(forms.ModelForm):
    """Compose or amend a notification; Notification.clean() checks the audience fields."""

    class Meta:
        model = Notification
        fields = (*CONTENT_FIELDS, "expires_at")
        help_texts = {
            "title": _("Shown in bold in the bell and the inbox; up to 200 characters."),
            "body": _("Plain text: the bell shows its first line, the inbox all of it."),
            # The admin adds how to pick one: by search or by id (see NotificationAdmin).
            "recipient": _("Used when the audience is “One user”."),
            "group": _("Used when the audience is “A group”: its members when it is sent."),
            "publish_at": _("Leave empty to send now, or pick a time to schedule it."),
            "expires_at": _("Optional: after this it leaves the bell and the inbox."),
            "critical": _(
                "Reaches everyone in the audience, with a toast, whatever their mutes and "
                "quiet hours: for security alerts and outages only."
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "category" in self.fields:
            # The site's declared categories (settings, not the database), as a choice.
            field = self.fields["category"]
            self.fields["category"] = forms.ChoiceField(
                label=field.label,
                choices=categories.choices(),
                required=False,  # left out: the default category
                initial=self.instance.category or categories.default_slug(),
                help_text=_("Users may mute a category, or its toasts, in their settings."),
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "category" in self.fields and not cleaned.get("category"):
            cleaned["category"] = categories.default_slug()
            self.instance.category = cleaned["category"]
        audience = cleaned.get("audience")
        # The audience choice decides: a user or group picked for another audience and then
        # left behind (hidden by the form's script) is dropped rather than reported.
        if audience and audience != Audience.USER and "recipient" in self.fields:
            cleaned["recipient"] = None
        if audience and audience != Audience.GROUP and "group" in self.fields:
            cleaned["group"] = None
        recipient = cleaned.get("recipient")
        if audience == Audience.USER and recipient is not None and not recipient.is_active:
            self.add_error(
                "recipient",
                _("This account is deactivated, so nobody would receive the notification."),
            )
            # add_error() drops the field; without it the model's clean() would add a
            # misleading "choose the user" to the same field.
            cleaned["recipient"] = recipient
        self._check_times(cleaned)
        self._check_not_sent_meanwhile()
        return cleaned

    def _check_times(self, cleaned: dict[str, Any]) -> None:
        now = timezone.now()
        publish_at = cleaned.get("publish_at")
        if (
            "publish_at" in self.changed_data
            and publish_at is not None
            and publish_at < now - PUBLISH_AT_GRACE
        ):
            self.add_error(
                "publish_at",
                _("This time has already passed. Leave it empty to send now."),
            )
        expires_at = cleaned.get("expires_at")
        if self.instance.pk is None and expires_at is not None and expires_at <= now:
            self.add_error(
                "expires_at",
                _("This time has already passed, so nobody would ever see the notification."),
            )

    def _posted_other_publish_at(self) -> bool:
        """Whether the posted publish time (a read-only field by now) differs from the one
        it went out with: the form was opened before it was sent."""
        if "publish_at" in self.fields or "publish_at_0" not in self.data:
            return False
        try:
            posted = forms.SplitDateTimeField(required=False).clean(
                [self.data.get("publish_at_0", ""), self.data.get("publish_at_1", "")]
            )
        except ValidationError:
            return True
        sent = self.instance.publish_at
        if posted is None or sent is None:
            return (posted is None) != (sent is None)
        return abs((posted - sent).total_seconds()) >= 1

    def _check_not_sent_meanwhile(self) -> None:
        """Refuse content changes to a notification the listener sent while it was edited.

        Sent before this request: the content fields are read-only and absent from the
        form, so posted edits would be dropped without a word. Sent during it: the form
        still has them. Either way the admin is told instead.
        """
        instance = self.instance
        if instance.pk is None:
            return
        if instance.dispatched_at is not None:
            edited = (
                any(
                    _normalise(self.data[name]) != _normalise(str(getattr(instance, name)))
                    for name in _TEXT_CONTENT_FIELDS
                    if name not in self.fields and name in self.data
                )
                or self._posted_other_publish_at()
            )
        else:
            # Its text may still change (an edit, pushed to open bells); the rest may not.
            edited = any(
                name in CONTENT_FIELDS and name not in EDITABLE_FIELDS for name in self.changed_data
            ) and (
                Notification.objects.filter(pk=instance.pk, dispatched_at__isnull=False).exists()
            )
        if edited:
            raise ValidationError(
                _(
                    "This notification was sent while you were editing it, so its audience, "
                    "schedule and category can no longer change and your edits were not "
                    "saved. Its text, link, level and expiry are still editable."
                ),
                code="already_sent",
            )


_TEXT_CONTENT_FIELDS = ("title", "body", "level", "url", "audience", "category")


def _normalise(text: str) -> str:
    # Browsers post textarea line breaks as CRLF; form fields strip surrounding spaces.
    return text.replace("\r\n", "\n").strip()
