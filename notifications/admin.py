"""Admin: compose notifications, follow their delivery, resend to the undelivered, expire.

The compose page previews the notification with the bell's own markup (bell.js's
``NotificationBell.renderItem``), shows how many people its audience reaches as it changes
(the ``audience-size/`` JSON view), and asks once more before a Save that sends to everyone
or to more than ``NOTIFICATIONS["CONFIRM_AUDIENCE_OVER"]`` people. Times are shown and typed
in the user's zone (``notifications.middleware.TimezoneMiddleware``), and say which zone.

Django's permissions decide who sees what: the notifications need ``view_notification`` (or
``change_notification``), composing needs ``add_notification``, and read receipts — the delivery
list and every delivery count or link on a notification — need ``view_delivery`` (or
``change_delivery``). Being staff alone shows nothing. Once a notification is dispatched its
content is what people received, so only its expiry changes. Deliveries are a record, never
edited here.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Field, ForeignKey, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator, capfirst
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from notifications import categories, conf
from notifications.audience import AudienceSize, audience_size
from notifications.deadlines import PUSH_BATCH_SECONDS
from notifications.forms import CONTENT_FIELDS, NotificationAdminForm
from notifications.models import Audience, Delivery, DeliveryState, Level, Notification
from notifications.recalls import EDITABLE_FIELDS, edit, recall
from notifications.selectors import (
    NOTIFICATION_STATES,
    STATE_DISPATCHED,
    STATE_EXPIRED,
    STATE_SCHEDULED,
    DeliveryStats,
    notification_delivery_stats,
    notification_state,
    notifications_in_state,
    notifications_with_delivery_counts,
)
from notifications.services import notification_expire, notification_resend_undelivered
from notifications.stats import notification_stats, notification_timeline

logger = logging.getLogger(__name__)

STATE_LABELS = {
    "scheduled": _("Scheduled"),
    "pending": _("Pending"),
    "dispatched": _("Dispatched"),
    "expired": _("Expired"),
    "recalled": _("Recalled"),
}
STATE_HINTS = {
    "scheduled": _("Waits for its publish time."),
    "pending": _("Due: the listener sends it within seconds (if it is running)."),
    "dispatched": _("Sent to its recipients."),
    "expired": _("Past its expiry: shown nowhere any more."),
    "recalled": _("Recalled by an admin: shown nowhere any more (kept for the record)."),
}


def _users_searchable(site: admin.AdminSite, request: HttpRequest) -> bool:
    """Whether ``site`` has an admin for the user model that the autocomplete can search."""
    user_admin = site._registry.get(get_user_model())
    return user_admin is not None and bool(user_admin.get_search_fields(request))


def _can_view_deliveries(site: admin.AdminSite, request: HttpRequest) -> bool:
    """Whether the user may see read receipts: the site's delivery admin decides.

    Who received and who read a notification is personal data of its recipients: a member
    of staff allowed to manage notifications is not thereby allowed to see it. A site that
    unregisters the delivery admin shows no receipts at all.
    """
    delivery_admin = site._registry.get(Delivery)
    return delivery_admin is not None and delivery_admin.has_view_or_change_permission(request)


def _percent(part: int, whole: int) -> int:
    return round(100 * part / whole) if whole else 0


def _progress(part: int, whole: int, kind: str, label: str) -> SafeString:
    percent = _percent(part, whole)
    return format_html(
        '<span class="nadmin-progress" title="{title}">'
        '<span class="nadmin-progress-track" aria-hidden="true">'
        '<span class="nadmin-progress-fill nadmin-progress-{kind}" style="width: {percent}%">'
        "</span></span>"
        '<span class="nadmin-progress-text"><span class="nadmin-sr">{title}: </span>'
        '<span class="nadmin-progress-percent" aria-hidden="true">{percent}%</span> '
        '<span class="nadmin-progress-count">{part} / {whole}</span></span></span>',
        title=label % {"percent": percent},
        kind=kind,
        percent=percent,
        part=part,
        whole=whole,
    )


# Titles longer than this are cut in the changelist (the full title is its tooltip): a
# 200-character title would otherwise widen its column past a 1280 px screen.
CHANGELIST_TITLE_CHARS = 60
# Without the setting (until conf.py declares it): ask before sending to more people than this.
DEFAULT_CONFIRM_AUDIENCE_OVER = 1000
AUDIENCE_FIELDS = frozenset({"audience", "recipient", "group"})


def _short_datetime(value: Any) -> SafeString:
    """Render ``1 Dec 2026, 17:09`` in the active zone: no order of day and month to guess.

    The month is a word, the year has four digits; the tooltip adds the zone and offset.
    Date and time each unbroken, so a narrow column wraps between them, not inside.
    """
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}"><span class="nadmin-nowrap">{}</span> '
        '<span class="nadmin-nowrap">{}</span></time>',
        local.isoformat(timespec="minutes"),
        local.strftime("%Y-%m-%d %H:%M %Z (UTC%z)"),
        date_format(local, "j M Y,"),
        date_format(local, "H:i"),
    )


def zone_description() -> str:
    """Name the active time zone the way the admin's times are shown and typed in."""
    now = timezone.localtime()
    name = timezone.get_current_timezone_name()
    offset = now.strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    abbreviation = now.strftime("%Z")
    if abbreviation in {name, "UTC"} or not abbreviation or abbreviation[0] in "+-":
        return f"{name} ({offset})"
    return f"{name} ({abbreviation}, {offset})"


def confirm_audience_over() -> int:
    """Return the audience size above which Save asks for a confirmation."""
    return int(getattr(conf.get(), "CONFIRM_AUDIENCE_OVER", DEFAULT_CONFIRM_AUDIENCE_OVER))


def needs_confirmation(audience: str, size: AudienceSize) -> bool:
    """Whether sending to this audience asks first: everyone, many, or a count that failed."""
    return audience == Audience.ALL or size.count is None or size.count > confirm_audience_over()


def reach_text(size: AudienceSize) -> str:
    """Say how many people an audience reaches, the way the compose page shows it."""
    if size.count is None:
        return gettext("Could not count the audience in time.")
    number = number_format(size.count, force_grouping=True)
    if size.capped:
        return gettext("Reaches more than %(count)s people") % {"count": number}
    return ngettext("Reaches %(count)s person", "Reaches %(count)s people", size.count) % {
        "count": number
    }


def deliveries_url(notification_id: int, **extra: str) -> str:
    """Return the delivery changelist filtered to one notification."""
    query = {"notification__id__exact": str(notification_id), **extra}
    return f"{reverse('admin:realtime_notifications_delivery_changelist')}?{urlencode(query)}"


class StateListFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(state, STATE_LABELS[state]) for state in NOTIFICATION_STATES]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in STATE_LABELS:
            return notifications_in_state(queryset, self.value())
        return queryset


class CategoryListFilter(admin.SimpleListFilter):
    """The site's declared categories by label (settings, not a model field's choices)."""

    title = _("category")
    parameter_name = "category"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return categories.choices()

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(category=self.value())
        return queryset


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    form = NotificationAdminForm
    list_display = (
        "title_display",
        "audience_display",
        "state_display",
        "recipients_display",
        "delivery_display",
        "created_display",
    )
    list_display_links = ("title_display",)
    list_filter = ("level", CategoryListFilter, "critical", "audience", StateListFilter)
    list_select_related = ("created_by", "recipient", "group")
    list_per_page = 50
    search_fields = ("title",)
    search_help_text = _("Search by title.")
    # The recipient is picked with the user admin's autocomplete when the site has one that
    # can search (get_autocomplete_fields, decided per request), else typed in by id.
    raw_id_fields = ("recipient",)
    radio_fields = {"audience": admin.HORIZONTAL, "level": admin.HORIZONTAL}
    actions = ("resend_undelivered", "expire_now", "recall_selected")
    readonly_fields = (
        "audience_reach",
        "preview",
        "created_by",
        "created_at",
        "dispatched_at",
        "delivery_stats",
        "edited_at",
        "edited_by",
        "recalled_at",
        "recalled_by",
    )
    add_fieldsets = (
        (None, {"fields": ("audience", "recipient", "group", "audience_reach")}),
        (_("Message"), {"fields": ("level", "category", "critical", "title", "body", "url")}),
        (_("Preview"), {"fields": ("preview",)}),
        (_("Schedule"), {"fields": ("publish_at", "expires_at")}),
    )
    change_fieldsets = (
        *add_fieldsets,
        (
            _("Delivery"),
            {"fields": ("delivery_stats", "created_by", "created_at", "dispatched_at")},
        ),
        (
            _("Changes after sending"),
            {"fields": ("edited_at", "edited_by", "recalled_at", "recalled_by")},
        ),
    )

    class Media:
        # The bell's own script and styles: the preview is its renderItem(), not a copy.
        # bell.js does nothing else on a page without a bell.
        css = {"all": ("notifications/bell.css", "notifications/admin.css")}
        js = ("notifications/bell.js", "notifications/admin.js")

    # Permissions are Django's own (has_view_permission etc. are not overridden): see the
    # module docstring. What shows read receipts asks _can_view_deliveries per request.

    # ---- urls --------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "audience-size/",
                self.admin_site.admin_view(self.audience_size_view),
                name="{}_{}_audience_size".format(*info),
            ),
            *super().get_urls(),
        ]

    def audience_size_view(self, request: HttpRequest) -> JsonResponse:
        """Answer how many active users an audience reaches: ``?audience=&group=&recipient=``.

        For composers only (add or change permission). The count is bounded in rows and
        time (``audience.audience_size``); ``count`` is null when it ran out of time.
        """
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            return _json_error(403, "forbidden", gettext("You may not compose notifications."))
        if request.method != "GET":
            return _json_error(405, "method_not_allowed", gettext("Use GET."))
        audience = request.GET.get("audience", "")
        if audience not in Audience.values:
            return _json_error(400, "bad_audience", gettext("Unknown audience."))
        recipient_id = group_id = None
        try:
            if audience == Audience.USER and request.GET.get("recipient", "").strip():
                recipient_id = get_user_model()._meta.pk.to_python(request.GET["recipient"].strip())
            if audience == Audience.GROUP and request.GET.get("group", "").strip():
                group_id = int(request.GET["group"])
        except (ValidationError, ValueError):
            return _json_error(400, "bad_target", gettext("That is not a user's or group's id."))
        size = audience_size(audience, recipient_id=recipient_id, group_id=group_id)
        return JsonResponse(
            {
                "audience": audience,
                "count": size.count,
                "capped": size.capped,
                "confirm": needs_confirmation(audience, size),
                "text": reach_text(size),
            }
        )

    # ---- lists -------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {"time_zone": zone_description(), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        if _can_view_deliveries(self.admin_site, request):
            return self.list_display
        # Without read receipts: how many it went to, but not who received or read it.
        return tuple(
            "recipient_count_display" if name == "recipients_display" else name
            for name in self.list_display
            if name != "delivery_display"
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return notifications_with_delivery_counts(super().get_queryset(request))

    @admin.display(description=_("audience"), ordering="audience")
    def audience_display(self, obj: Notification) -> str:
        if obj.audience == Audience.USER and obj.recipient is not None:
            return gettext("User: %(name)s") % {"name": obj.recipient.get_username()}
        if obj.audience == Audience.GROUP and obj.group is not None:
            return gettext("Group: %(name)s") % {"name": obj.group.name}
        return obj.get_audience_display()

    @admin.display(description=_("title"), ordering="title")
    def title_display(self, obj: Notification) -> SafeString:
        # The level rides under the title: one column fewer keeps the list on one screen.
        short = Truncator(obj.title).chars(CHANGELIST_TITLE_CHARS)
        return format_html(
            '<span class="nadmin-title"{}>{}</span><br>'
            '<span class="nadmin-badge nadmin-level-{}">{}</span>',
            format_html(' title="{}"', obj.title) if short != obj.title else "",
            short,
            obj.level if obj.level in Level.values else Level.INFO,
            obj.get_level_display(),
        )

    @admin.display(description=_("state"))
    def state_display(self, obj: Notification) -> SafeString:
        state = notification_state(obj)
        when = {
            STATE_SCHEDULED: obj.publish_at,
            STATE_DISPATCHED: obj.dispatched_at,
            STATE_EXPIRED: obj.expires_at,
        }.get(state)
        return format_html(
            '<span class="nadmin-state nadmin-state-{}" title="{}">{}</span>{}',
            state,
            STATE_HINTS[state],
            STATE_LABELS[state],
            format_html('<br><small class="nadmin-when">{}</small>', _short_datetime(when))
            if when
            else "",
        )

    @admin.display(description=_("recipients"), ordering="total_count")
    def recipients_display(self, obj: Notification) -> SafeString | str:
        if not obj.dispatched_at:
            return "—"
        # The count links to who they are: the deliveries of this notification.
        return format_html(
            '<a href="{}" title="{}">{}</a>',
            deliveries_url(obj.pk),
            gettext("View deliveries"),
            obj.total_count,
        )

    @admin.display(description=_("recipients"), ordering="recipient_count")
    def recipient_count_display(self, obj: Notification) -> int | str:
        return obj.recipient_count if obj.dispatched_at else "—"

    @admin.display(description=_("delivered · read"), ordering="read_count")
    def delivery_display(self, obj: Notification) -> SafeString | str:
        # Both bars in one column: two columns of 56 px bars cost the list its last column.
        if not obj.dispatched_at:
            return "—"
        return format_html(
            '<span class="nadmin-bars">{}{}</span>',
            _progress(
                obj.delivered_count,
                obj.total_count,
                "delivered",
                gettext("%(percent)s%% delivered"),
            ),
            _progress(obj.read_count, obj.total_count, "read", gettext("%(percent)s%% read")),
        )

    @admin.display(description=_("created"), ordering="created_at")
    def created_display(self, obj: Notification) -> SafeString:
        by = obj.created_by.get_username() if obj.created_by else gettext("the system")
        return format_html(
            '{}<br><small class="nadmin-when">{}</small>',
            _short_datetime(obj.created_at),
            gettext("by %(name)s") % {"name": by},
        )

    # ---- the form ----------------------------------------------------------------------

    def get_autocomplete_fields(self, request: HttpRequest) -> tuple[str, ...]:
        """Search for the recipient when the site's user admin can search, else take an id.

        Not the ``autocomplete_fields`` attribute: its system check (admin.E039/E040) fails
        every management command of a site whose user model has no admin with
        ``search_fields``, and the app must not dictate a host's user admin.
        """
        return ("recipient",) if _users_searchable(self.admin_site, request) else ()

    def formfield_for_dbfield(self, db_field: Field, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name in {"publish_at", "expires_at"}:
            # Which zone the typed time is in, next to the field: the active one (the
            # browser's, from the tz cookie), not the server's.
            zone = gettext("Times are in %(zone)s.") % {"zone": zone_description()}
            kwargs["help_text"] = f"{kwargs.get('help_text') or ''} {zone}".strip()
            formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
            # Django's split date/time widget names its inputs with bare text ("Date:"),
            # not labels: give each an accessible name of its own (WCAG 1.3.1, 4.1.2).
            widgets = getattr(formfield.widget, "widgets", ())
            name = capfirst(db_field.verbose_name)
            for widget, part in zip(widgets, (gettext("date"), gettext("time")), strict=False):
                widget.attrs["aria-label"] = f"{name}: {part}"
            return formfield
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "recipient" and "help_text" in kwargs:
            searchable = "recipient" in self.get_autocomplete_fields(request)
            how = gettext("Type to search.") if searchable else gettext("Enter the user's id.")
            kwargs["help_text"] = f"{kwargs['help_text']} {how}"
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return self.add_fieldsets
        fieldsets = self.change_fieldsets
        if not _can_view_deliveries(self.admin_site, request):
            # The delivery stats are read receipts: they go, the rest of the box stays.
            fieldsets = tuple(
                (
                    title,
                    {**opts, "fields": tuple(f for f in opts["fields"] if f != "delivery_stats")},
                )
                for title, opts in fieldsets
            )
        if obj.dispatched_at is None:
            return fieldsets
        # Sent: the audience is fixed, so show only the target it used.
        target = {Audience.USER: ("recipient",), Audience.GROUP: ("group",)}.get(obj.audience, ())
        return ((None, {"fields": ("audience", *target)}), *fieldsets[1:])

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is not None and obj.recalled_at is not None:
            return (*self.readonly_fields, *CONTENT_FIELDS, "expires_at")
        if obj is not None and obj.dispatched_at is not None:
            # Sent: the text may still change (every open bell follows, see recall.edit);
            # who it went to, when, and its category may not.
            return (*self.readonly_fields, *(f for f in CONTENT_FIELDS if f not in EDITABLE_FIELDS))
        return self.readonly_fields

    @admin.display(description=_("Audience size"))
    def audience_reach(self, obj: Notification) -> SafeString:
        # The count for the form as it opens; admin.js asks again as the audience changes.
        size = audience_size(obj.audience, recipient_id=obj.recipient_id, group_id=obj.group_id)
        return render_to_string(
            "admin/realtime_notifications/notification/audience_reach.html",
            {
                "text": reach_text(size),
                "confirm": needs_confirmation(obj.audience, size),
                "url": reverse(
                    "admin:realtime_notifications_notification_audience_size",
                    current_app=self.admin_site.name,
                ),
                "threshold": number_format(confirm_audience_over(), force_grouping=True),
            },
        )

    @admin.display(description=_("How it will look"))
    def preview(self, obj: Notification) -> SafeString:
        first_line = (obj.body or "").strip().splitlines()[:1]
        return render_to_string(
            "admin/realtime_notifications/notification/preview.html",
            {
                "notification": obj,
                "level": obj.level if obj.level in Level.values else Level.INFO,
                "first_line": first_line[0] if first_line else "",
                "audience": self.audience_display(obj) if obj.pk else "",
                "level_labels": dict(Level.choices),
                "moment": (obj.dispatched_at or obj.publish_at or timezone.now()).isoformat(),
            },
        )

    @admin.display(description=_("Delivery"))
    def delivery_stats(self, obj: Notification) -> SafeString | str:
        if obj.pk is None or obj.dispatched_at is None:
            return gettext("Not sent yet.")
        stats = notification_stats(obj.pk)
        timeline = notification_timeline(obj.pk, obj.dispatched_at, stats.last_activity)
        labels = {
            "delivered": gettext("Delivered"),
            "read": gettext("Read"),
            "pending": gettext("Waiting for a browser"),
            "archived": gettext("Marked done"),
            "snoozed": gettext("Snoozed now"),
        }
        return render_to_string(
            "admin/realtime_notifications/notification/delivery_stats.html",
            {
                "stats": stats,
                "muted": obj.muted_count,
                "rows": [{**row, "label": labels[row["key"]]} for row in stats.rows()],
                "chart": _timeline_chart(timeline, stats.recipients),
                "time_zone": zone_description(),
                "all_url": deliveries_url(obj.pk),
                "pending_url": deliveries_url(obj.pk, state__exact=DeliveryState.PENDING),
            },
        )

    def save_model(self, request: HttpRequest, obj: Notification, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
            obj.save()
            return
        names = [name for name in form.fields if name in form.cleaned_data]
        text = [name for name in names if name in EDITABLE_FIELDS and name in form.changed_data]
        if text and Notification.objects.filter(pk=obj.pk, dispatched_at__isnull=False).exists():
            # Out already (perhaps while this form was open): an edit, recorded and pushed
            # to every open bell.
            current = Notification.objects.get(pk=obj.pk)
            edit(current, by=request.user, **{name: form.cleaned_data[name] for name in text})
            names = [name for name in names if name not in text]
        # Save only what the form edits: a full save of this stale copy would overwrite
        # dispatched_at and recipient_count if the listener sent it in the meantime.
        if names:
            obj.save(update_fields=names)

    # ---- the confirmation step --------------------------------------------------------

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change, **kwargs)
        if request.method == "POST" and "_back" in request.POST:
            # "Back" from the confirmation: the same form, filled in as posted, not saved.
            # Django's change view saves a valid form, so this one reports "not valid" (with
            # no errors, the page shows none) and is shown again instead.
            return type(form.__name__, (form,), {"is_valid": lambda self: False})
        return form

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if (
            request.method == "POST"
            and not request.POST.keys() & {"_confirmed", "_back"}
            and IS_POPUP_VAR not in request.POST
        ):
            confirmation = self._audience_confirmation(request, object_id)
            if confirmation is not None:
                return confirmation
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _audience_confirmation(
        self, request: HttpRequest, object_id: str | None
    ) -> HttpResponse | None:
        """Return the "Send to N people?" page when this Save needs one, else None.

        Asked on a valid form only (an invalid one goes back with its errors as usual), for a
        new notification or a changed audience of an unsent one, when it goes to everyone
        or to more than CONFIRM_AUDIENCE_OVER people. The page carries the posted form in
        hidden fields, so Confirm saves exactly it and Back shows it again, without script.
        """
        obj = None
        if object_id is not None:
            obj = self.get_object(request, unquote(object_id))
            if obj is None or obj.dispatched_at is not None:
                return None
            if not self.has_change_permission(request, obj):
                return None
        elif not self.has_add_permission(request):
            return None
        form_class = self.get_form(request, obj, change=obj is not None)
        form = form_class(request.POST, request.FILES, instance=obj)
        if not form.is_valid():
            return None
        if obj is not None and not AUDIENCE_FIELDS & set(form.changed_data):
            return None
        cleaned = form.cleaned_data
        audience = cleaned.get("audience") or (obj.audience if obj else Audience.ALL)
        recipient, group = cleaned.get("recipient"), cleaned.get("group")
        size = audience_size(
            audience,
            recipient_id=recipient.pk if recipient else None,
            group_id=group.pk if group else None,
        )
        if not needs_confirmation(audience, size):
            return None
        publish_at = cleaned.get("publish_at")
        context = {
            **self.admin_site.each_context(request),
            "title": _confirmation_title(size),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "original": obj,
            "size": size,
            "reach": reach_text(size),
            "threshold": number_format(confirm_audience_over(), force_grouping=True),
            "audience_label": _target_label(audience, recipient, group),
            "everyone": audience == Audience.ALL,
            "notification_title": cleaned.get("title", ""),
            "level_label": Level(cleaned["level"]).label if cleaned.get("level") else "",
            "publish_at": _short_datetime(publish_at) if publish_at else None,
            "time_zone": zone_description(),
            "posted": [
                (name, value)
                for name, values in request.POST.lists()
                if name not in {"csrfmiddlewaretoken", "_confirmed", "_back"}
                for value in values
            ],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/realtime_notifications/notification/confirm_audience.html", context
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = extra_context or {}
        if object_id.isdigit() and _can_view_deliveries(self.admin_site, request):
            extra_context["deliveries_url"] = deliveries_url(int(object_id))
        return super().change_view(request, object_id, form_url, extra_context)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[Any, ...]:
        """Summarise instead of listing every Delivery: a broadcast has thousands."""
        objs = list(objs)
        deleted = [
            format_html(
                '{}: <a href="{}">{}</a>',
                capfirst(Notification._meta.verbose_name),
                reverse("admin:realtime_notifications_notification_change", args=[obj.pk]),
                obj,
            )
            for obj in objs
        ]
        counts = {Notification._meta.verbose_name_plural: len(objs)}
        deliveries = Delivery.objects.filter(notification__in=[o.pk for o in objs]).count()
        if deliveries:
            counts[Delivery._meta.verbose_name_plural] = deliveries
        return deleted, counts, set(), []

    # ---- actions -----------------------------------------------------------------------

    @admin.action(
        description=_("Send again to those who have not received it"), permissions=("add",)
    )
    def resend_undelivered(self, request: HttpRequest, queryset: QuerySet) -> None:
        users = skipped = 0
        failed = False
        for notification in queryset:
            if notification.dispatched_at is None or notification.is_expired:
                skipped += 1
                continue
            try:
                sent = notification_resend_undelivered(notification)
            except Exception as exc:
                logger.exception("Resending notification %s failed", notification.pk)
                self.message_user(
                    request,
                    gettext(
                        "Could not reach the channel layer (%(error)s), so “%(title)s” and "
                        "the notifications after it were not sent again. Try again once "
                        "Redis is back."
                    )
                    % {"error": _describe_layer_error(exc), "title": notification.title},
                    messages.ERROR,
                )
                failed = True
                break
            users += sent
        if users:
            self.message_user(
                request,
                ngettext(
                    "Sent again to %(users)d user who had not received it.",
                    "Sent again to %(users)d users who had not received it.",
                    users,
                )
                % {"users": users},
                messages.SUCCESS,
            )
        elif not skipped and not failed:
            self.message_user(
                request,
                gettext("Nothing to send: every recipient has already received it."),
                messages.INFO,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "Skipped %(count)d notification that is not sent yet or has expired.",
                    "Skipped %(count)d notifications that are not sent yet or have expired.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )

    @admin.action(
        description=_("Recall: remove from every bell and inbox"), permissions=("change",)
    )
    def recall_selected(self, request: HttpRequest, queryset: QuerySet) -> Any:
        if request.POST.get("post") != "yes":
            # It cannot be undone: say what goes, and to how many, first (as delete does).
            return TemplateResponse(
                request,
                "admin/realtime_notifications/notification/confirm_recall.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": gettext("Recall notifications?"),
                    "notifications": list(queryset),
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        recalled = sum(recall(n, by=request.user) for n in queryset)
        already = len(queryset) - recalled
        if recalled:
            self.message_user(
                request,
                ngettext(
                    "Recalled %(count)d notification: it has left every bell and inbox "
                    "(kept here, with who recalled it and when).",
                    "Recalled %(count)d notifications: they have left every bell and inbox "
                    "(kept here, with who recalled them and when).",
                    recalled,
                )
                % {"count": recalled},
                messages.SUCCESS,
            )
        if already:
            self.message_user(
                request,
                ngettext(
                    "%(count)d notification had already been recalled.",
                    "%(count)d notifications had already been recalled.",
                    already,
                )
                % {"count": already},
                messages.INFO,
            )

    @admin.action(description=_("Expire now"), permissions=("change",))
    def expire_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        now = timezone.now()
        expired = sum(notification_expire(n, now=now) for n in queryset)
        already = len(queryset) - expired
        if expired:
            self.message_user(
                request,
                ngettext(
                    "Expired %(count)d notification: it has left the bell and the inbox.",
                    "Expired %(count)d notifications: they have left the bell and the inbox.",
                    expired,
                )
                % {"count": expired},
                messages.SUCCESS,
            )
        if already:
            self.message_user(
                request,
                ngettext(
                    "%(count)d notification had already expired.",
                    "%(count)d notifications had already expired.",
                    already,
                )
                % {"count": already},
                messages.INFO,
            )


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "user",
        "state_display",
        "created_at",
        "delivered_at",
        "read_at",
        "notification_link",
    )
    list_filter = ("state",)
    list_select_related = ("notification", "user")
    list_per_page = 100
    # Matches the unique (notification, user) index, so even millions of rows page cheaply.
    ordering = ("-notification", "user")
    # The user's login name is added per request (get_search_fields): not every user model
    # has a ``username``.
    search_fields = ("notification__title",)
    # COUNT(*) over every delivery of the site on each page view is not worth it.
    show_full_result_count = False
    readonly_fields = ("notification", "user", "state", "created_at", "delivered_at", "read_at")

    class Media:
        css = {"all": ("notifications/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (f"user__{get_user_model().USERNAME_FIELD}", *self.search_fields)

    @property
    def search_help_text(self) -> str:  # type: ignore[override]
        user_model = get_user_model()
        login = user_model._meta.get_field(user_model.USERNAME_FIELD).verbose_name
        return gettext("Search by %(login)s or notification title.") % {"login": login}

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        if self._filtered_notification_id(request) is not None:
            # The page header names the notification; a column repeating it is noise.
            return tuple(name for name in self.list_display if name != "notification_link")
        return self.list_display

    @admin.display(description=_("state"), ordering="state")
    def state_display(self, obj: Delivery) -> SafeString:
        return format_html(
            '<span class="nadmin-state nadmin-delivery-{}">{}</span>',
            obj.state if obj.state in DeliveryState.values else "pending",
            obj.get_state_display(),
        )

    @admin.display(description=_("notification"), ordering="notification")
    def notification_link(self, obj: Delivery) -> SafeString:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:realtime_notifications_notification_change", args=[obj.notification_id]),
            obj.notification.title,
        )

    @staticmethod
    def _filtered_notification_id(request: HttpRequest) -> int | None:
        raw = request.GET.get("notification__id__exact", "")
        return int(raw) if raw.isdigit() else None

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = extra_context or {}
        notification_id = self._filtered_notification_id(request)
        # Counting receipts for a user about to get a 403 (from super below) is wasted work.
        if notification_id is not None and self.has_view_or_change_permission(request):
            notification = (
                Notification.objects.filter(pk=notification_id).only("id", "title").first()
            )
            if notification is not None:
                stats: DeliveryStats = notification_delivery_stats(notification_id)
                extra_context.update(
                    {
                        "delivery_notification": notification,
                        "delivery_stats": stats,
                        "notification_url": reverse(
                            "admin:realtime_notifications_notification_change",
                            args=[notification_id],
                        ),
                    }
                )
        return super().changelist_view(request, extra_context)


def _json_error(status: int, error: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": error, "detail": detail}, status=status)


def _confirmation_title(size: AudienceSize) -> str:
    if size.count is None:
        return gettext("Send to everyone?")
    number = number_format(size.count, force_grouping=True)
    if size.capped:
        return gettext("Send to more than %(count)s people?") % {"count": number}
    return ngettext("Send to %(count)s person?", "Send to %(count)s people?", size.count) % {
        "count": number
    }


def _target_label(audience: str, recipient: Any, group: Any) -> str:
    if audience == Audience.USER and recipient is not None:
        return gettext("User: %(name)s") % {"name": recipient.get_username()}
    if audience == Audience.GROUP and group is not None:
        return gettext("Group: %(name)s") % {"name": group.name}
    return str(Audience(audience).label)


# The timeline's drawing box (SVG user units; it scales to the width it gets).
CHART_WIDTH = 480
CHART_HEIGHT = 120
TIMELINE_SERIES = ("pushed", "delivered", "read")


def _timeline_chart(timeline: Any, recipients: int) -> dict[str, Any]:
    """Lay the timeline out: a polyline per series, a table row per point (its text twin)."""
    span = timeline.end - timeline.start
    same_day = timezone.localtime(timeline.start).date() == timezone.localtime(timeline.end).date()
    fmt = "H:i" if same_day and span.days < 1 else "j M, H:i"
    width, height = CHART_WIDTH, CHART_HEIGHT
    count = len(timeline.points)
    lines = {}
    for series in TIMELINE_SERIES:
        coords = [f"0,{height:.1f}"]
        for i, point in enumerate(timeline.points):
            value = getattr(point, series)
            x = width * (i + 1) / count
            y = height - (height * value / recipients if recipients else 0)
            coords.append(f"{x:.1f},{y:.1f}")
        lines[series] = " ".join(coords)
    last = timeline.points[-1] if timeline.points else None
    return {
        "width": width,
        "height": height,
        "lines": lines,
        "start": date_format(timezone.localtime(timeline.start), fmt),
        "end": date_format(timezone.localtime(timeline.end), fmt),
        "rows": [
            {
                "at": date_format(timezone.localtime(point.at), fmt),
                "pushed": point.pushed,
                "delivered": point.delivered,
                "read": point.read,
                "delivered_percent": _percent(point.delivered, recipients),
                "read_percent": _percent(point.read, recipients),
            }
            for point in timeline.points
        ],
        "summary": gettext(
            "By %(end)s: %(delivered)s%% delivered, %(read)s%% read of %(recipients)s."
        )
        % {
            "end": date_format(timezone.localtime(timeline.end), fmt),
            "delivered": _percent(last.delivered, recipients) if last else 0,
            "read": _percent(last.read, recipients) if last else 0,
            "recipients": recipients,
        },
    }


def _describe_layer_error(exc: BaseException) -> str:
    """Name a channel layer failure for the admin: a silent Redis is no exception class."""
    if isinstance(exc, TimeoutError):
        return gettext("no answer within %(seconds)g s") % {"seconds": PUSH_BATCH_SECONDS}
    return exc.__class__.__name__
