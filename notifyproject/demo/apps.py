"""App config of the demo-only app (``seed_demo``, ``bench_notifications``, ``run_stack``)."""

from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "notifyproject.demo"
    label = "demo"
    verbose_name = "notifyproject demo"
