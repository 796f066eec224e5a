"""HTTP routes of the notifications app: the inbox and its JSON API."""

from django.urls import path

from notifications import views

app_name = "notifications"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("api/", views.api_list, name="api-list"),
    path("api/read/", views.api_read, name="api-read"),
]
