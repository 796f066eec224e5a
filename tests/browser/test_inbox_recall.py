"""The inbox follows recalls, edits and expiries live, in Chromium on the real stack."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

import notifications
from notifications.models import Level
from tests.browser.conftest import log_in
from tests.browser.test_bell_recall import pushes_go_through  # noqa: F401 (autouse fixture)
from tests.browser.test_inbox_live import delivered, open_inbox, row, rows
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_recalled_edited_and_expired_rows_change_live(new_context):
    user = UserFactory()
    typo = notifications.notify(user, "Maintenence tonight", body="At 22:00", level=Level.INFO)
    wrong = notifications.broadcast("Sent to the wrong people")
    brief = notifications.notify(
        user, "Flash sale", expires_at=timezone.now() + timedelta(seconds=6)
    )
    keep = notifications.notify(user, "Stays")
    delivered(user, 4)
    page = open_inbox(log_in(new_context(), user.username))
    expect(rows(page)).to_have_count(4)
    row(page, typo).locator("[data-ninbox-select]").check()

    notifications.edit(typo, title="Maintenance tonight", body="At 23:00", level=Level.WARNING)
    edited = row(page, typo)
    expect(edited.locator(".ninbox-title")).to_have_text("Maintenance tonight")
    expect(edited.locator(".ninbox-excerpt")).to_have_text("At 23:00")
    expect(edited).to_have_attribute("data-level", "warning")
    expect(edited.locator("[data-ninbox-select]")).to_be_checked()  # kept its selection

    notifications.recall(wrong)
    expect(row(page, wrong)).to_have_count(0)
    expect(row(page, brief)).to_have_count(0, timeout=20_000)  # at its expiry, no reload
    expect(row(page, keep)).to_have_count(1)
    page.reload()
    expect(rows(page)).to_have_count(2)
    expect(row(page, typo).locator(".ninbox-title")).to_have_text("Maintenance tonight")
