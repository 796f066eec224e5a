"""HTTP routes of the notifications app: the inbox and its JSON API."""

from django.urls import path, re_path

from notifications import api, preferences_page, views

app_name = "notifications"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("preferences/", preferences_page.preferences, name="preferences"),
    path("api/", api.api_list, name="api-list"),
    path("api/read/", api.api_read, name="api-read"),
    path("api/archive/", api.api_archive, name="api-archive"),
    path("api/unarchive/", api.api_unarchive, name="api-unarchive"),
    path("api/unread/", api.api_unread, name="api-unread"),
    path("api/snooze/", api.api_snooze, name="api-snooze"),
    path("api/preferences/", api.api_preferences, name="api-preferences"),
    # Last: any other path under api/ answers a JSON 404.
    re_path(r"^api/(?P<rest>.*)$", api.api_not_found, name="api-not-found"),
]
