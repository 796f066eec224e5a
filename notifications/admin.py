"""Admin: compose notifications (created_by is the admin) and inspect their deliveries."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from notifications.models import Delivery, DeliveryState, Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "audience",
        "level",
        "state",
        "recipient_count",
        "delivered",
        "read",
        "created_at",
        "created_by",
    )
    list_filter = ("level", "audience")
    search_fields = ("title",)
    autocomplete_fields = ("recipient",)
    readonly_fields = ("created_by", "created_at", "dispatched_at", "recipient_count")
    fieldsets = (
        (None, {"fields": ("title", "body", "level", "url")}),
        (_("Audience"), {"fields": ("audience", "recipient", "group")}),
        (_("Schedule"), {"fields": ("publish_at", "expires_at")}),
        (_("Record"), {"fields": ("created_by", "created_at", "dispatched_at", "recipient_count")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return (
            super()
            .get_queryset(request)
            .select_related("created_by")
            .annotate(
                delivered_count=Count(
                    "deliveries", filter=~Q(deliveries__state=DeliveryState.PENDING)
                ),
                read_count=Count("deliveries", filter=Q(deliveries__state=DeliveryState.READ)),
            )
        )

    def save_model(self, request: HttpRequest, obj: Notification, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_readonly_fields(
        self, request: HttpRequest, obj: Notification | None = None
    ) -> tuple[str, ...]:
        # What was sent stays as it was sent: once dispatched, only the expiry may change.
        if obj is not None and obj.dispatched_at is not None:
            return (
                *self.readonly_fields,
                "title",
                "body",
                "level",
                "url",
                "audience",
                "recipient",
                "group",
                "publish_at",
            )
        return self.readonly_fields

    @admin.display(description=_("state"))
    def state(self, obj: Notification) -> str:
        if obj.is_expired:
            return str(_("expired"))
        if obj.dispatched_at:
            return str(_("dispatched"))
        if obj.is_scheduled:
            return str(_("scheduled"))
        return str(_("pending"))

    @admin.display(description=_("delivered"), ordering="delivered_count")
    def delivered(self, obj: Notification) -> int:
        return obj.delivered_count

    @admin.display(description=_("read"), ordering="read_count")
    def read(self, obj: Notification) -> int:
        return obj.read_count


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("notification", "user", "state", "created_at", "delivered_at", "read_at")
    list_filter = ("state",)
    search_fields = ("notification__title", "user__username")
    list_select_related = ("notification", "user")
    readonly_fields = ("notification", "user", "state", "created_at", "delivered_at", "read_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
