"""HTTP routes of the notifications app: the inbox and its JSON API."""

from django.urls import path

from notifications import api, views

app_name = "notifications"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("api/", api.api_list, name="api-list"),
    path("api/read/", api.api_read, name="api-read"),
]
