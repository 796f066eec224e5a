"""App configuration: connect the model-signal receivers and register the system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    name = "notifications"
    # Not "notifications": that label, its tables and its migration records belong to
    # django-notifications-hq and its community fork. A site leaving them keeps their tables
    # in place beside ours and imports them (manage.py import_django_notifications).
    label = "realtime_notifications"
    verbose_name = _("Notifications")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from notifications import checks, receivers  # noqa: F401  (registers on import)

        receivers.connect()
