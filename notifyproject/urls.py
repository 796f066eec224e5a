"""URLs of the demo site: home, auth, admin, and the notifications app."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView, TemplateView

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("notifications/", include("notifications.urls")),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico on pages that name none (the admin's): no 404 in the log.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
]
