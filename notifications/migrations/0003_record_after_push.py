"""Broadcasts are pushed before their rows are written: mark when the rows are all there.

Also drops Delivery's database-level foreign keys and their single-column indexes (see the
model). Rows dispatched before this migration count as recorded.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def mark_dispatched_as_recorded(apps, schema_editor):
    Notification = apps.get_model("realtime_notifications", "Notification")
    Notification.objects.filter(dispatched_at__isnull=False, recorded_at__isnull=True).update(
        recorded_at=models.F("dispatched_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("realtime_notifications", "0002_delivery_dispatch_order_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="recorded_at",
            field=models.DateTimeField(
                blank=True, editable=False, null=True, verbose_name="recorded at"
            ),
        ),
        migrations.RunPython(mark_dispatched_as_recorded, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="delivery",
            name="notification",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="realtime_notifications.notification",
                verbose_name="notification",
            ),
        ),
        migrations.AlterField(
            model_name="delivery",
            name="user",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="notification_deliveries",
                to=settings.AUTH_USER_MODEL,
                verbose_name="user",
            ),
        ),
        migrations.AddIndex(
            model_name="notification",
            index=models.Index(
                condition=models.Q(("dispatched_at__isnull", False), ("recorded_at__isnull", True)),
                fields=["id"],
                name="notif_unrecorded_idx",
            ),
        ),
    ]
