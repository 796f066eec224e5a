"""The site around the bell: anonymous visitors, login, the user menu and logout."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib.sessions.models import Session
from playwright.sync_api import expect

from tests.browser.conftest import Bell, log_in
from tests.factories import StaffFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_anonymous_visitor_sees_no_bell_and_a_login_link(new_context):
    page = new_context().new_page()
    page.goto("/")
    expect(page.locator("[data-notification-bell]")).to_have_count(0)
    login = page.locator("[data-login-link]")
    expect(login).to_be_visible()
    login.click()
    page.wait_for_url("**/accounts/login/**")
    expect(page.get_by_label("Username")).to_be_visible()
    # The inbox asks for a login too.
    page.goto("/notifications/")
    assert urlsplit(page.url).path == "/accounts/login/"


def test_wrong_password_says_so_and_user_menu_logs_out(new_context):
    user = UserFactory()
    context = new_context()
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("not the password")
    page.locator("main form button[type=submit]").click()
    expect(page.locator(".form-error")).to_be_visible()

    page = log_in(context, user.username)
    Bell(page).wait_ready()
    expect(page.locator("[data-admin-link]")).to_have_count(0)  # not staff
    page.locator("[data-user-menu] summary").click()
    page.locator("[data-logout]").click()
    expect(page.locator("[data-login-link]")).to_be_visible()
    expect(page.locator("[data-notification-bell]")).to_have_count(0)


def test_staff_see_the_admin_link(new_context):
    staff = StaffFactory(is_superuser=True)
    page = log_in(new_context(), staff.username)
    page.locator("[data-admin-link]").click()
    page.wait_for_url("**/admin/")


def test_a_lost_session_stops_reconnecting_and_offers_to_log_in_again(new_context):
    user = UserFactory()
    page = log_in(new_context(), user.username)
    sockets = []

    def pass_through(ws):
        ws.connect_to_server()
        sockets.append(ws)

    # Sockets opened from now on go through Playwright, so the test can cut one.
    page.route_web_socket("**/ws/notifications/", pass_through)
    page.reload()
    bell = Bell(page).wait_ready()
    Session.objects.all().delete()  # logged out elsewhere, or the session expired
    sockets[-1].close(code=1012)  # the server restarts; the page reconnects without a session

    expect(bell.root).to_have_attribute("data-connection-state", "closed")
    relogin = bell.root.locator("[data-notification-relogin]")
    expect(relogin).to_be_visible()
    expect(relogin).to_have_text("Log in again")
    relogin.click()
    page.wait_for_url("**/accounts/login/?next=%2F")
