"""Fifty-odd XSS payloads in titles, bodies and links: shown as text, nothing runs.

A canary (window.__xss) and a dialog listener watch the bell, the inbox and the admin.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from playwright.sync_api import expect

from notifications.models import Delivery, Notification
from notifications.services import notify
from tests.browser.conftest import Bell, log_in, wait_until
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def payloads() -> list[str]:
    """Classic vectors (OWASP's filter-evasion list and friends), each tripping the canary."""
    run = "window.__xss=1;alert(1)"
    tags = [
        f"<script>{run}</script>",
        f"<ScRiPt>{run}</sCrIpT>",
        f'<script src="data:text/javascript,{run}"></script>',
        f"<img src=x onerror={run}>",
        f'<img src=x onerror="{run}">',
        "<img src=x:alert(1) onerror=eval(src)>",
        f"<svg onload={run}>",
        f"<svg><script>{run}</script></svg>",
        f"<body onload={run}>",
        f'<iframe src="javascript:{run}"></iframe>',
        f'<iframe srcdoc="<script>parent.{run}</script>"></iframe>',
        f'<object data="javascript:{run}"></object>',
        f'<embed src="javascript:{run}">',
        f'<a href="javascript:{run}">click</a>',
        f'<a href="jav&#x09;ascript:{run}">tab</a>',
        f'<div onmouseover="{run}">hover</div>',
        f"<input autofocus onfocus={run}>",
        f"<select autofocus onfocus={run}>",
        f"<textarea autofocus onfocus={run}>",
        f"<details open ontoggle={run}>",
        f"<video><source onerror={run}></video>",
        f"<audio src=x onerror={run}>",
        f"<marquee onstart={run}>",
        f"<math><mtext><script>{run}</script></mtext></math>",
        f"<style>@import 'javascript:{run}';</style>",
        f'<link rel=stylesheet href="javascript:{run}">',
        f'<meta http-equiv="refresh" content="0;url=javascript:{run}">',
        f'<base href="javascript:{run}//">',
        f'<form action="javascript:{run}"><button>go</button></form>',
        f"<isindex action=javascript:{run} type=image>",
        f'<table background="javascript:{run}">',
        f'<div style="background:url(javascript:{run})">',
        f'<div style="width:expression({run})">',
        f'"><script>{run}</script>',
        f"'><script>{run}</script>",
        f"</title><script>{run}</script>",
        f"</textarea><script>{run}</script>",
        f"</script><script>{run}</script>",
        f'<!--<img src="--><img src=x onerror={run}//">',
        f"<img src=`x` onerror={run}>",
        f'<img """><script>{run}</script>">',
        f"<scr<script>ipt>{run}</scr</script>ipt>",
        f"&lt;script&gt;{run}&lt;/script&gt;",
        f"&#60;script&#62;{run}&#60;/script&#62;",
        f"\\u003cscript\\u003e{run}\\u003c/script\\u003e",
        f"{{{{constructor.constructor('{run}')()}}}}",
        f"${{{run}}}",
        f"javascript:{run}",
        f'<img src=x onerror="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114'
        f'&#0000105&#0000112&#0000116&#0000058{run}">',
        f"<xss onafterscriptexecute={run}><script>1</script>",
        f'<noscript><p title="</noscript><img src=x onerror={run}>">',
        f"<template><img src=x onerror={run}></template>",
        f"<svg><animate onbegin={run} attributeName=x dur=1s>",
        f"<dialog open onclose={run}>",
    ]
    return tags


HOSTILE_LINKS = [
    "javascript:window.__xss=1",
    "JaVaScRiPt:window.__xss=1",
    "data:text/html,<script>window.__xss=1</script>",
    "vbscript:msgbox(1)",
    "//evil.example/",
    " javascript:window.__xss=1",
]
SAFE_BUT_TRICKY_LINKS = [
    '/search?q="><script>window.__xss=1</script>',
    'https://example.com/"onmouseover="window.__xss=1',
    "/x#<img/src=x/onerror=window.__xss=1>",
]


def guard(page) -> list[str]:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return dialogs


def assert_nothing_ran(page, dialogs) -> None:
    page.wait_for_timeout(300)  # give any injected handler (onload, autofocus) time to fire
    assert page.evaluate("window.__xss") == 0
    assert dialogs == []


def test_payloads_show_as_text_in_the_bell_the_inbox_and_the_admin(new_context):
    user = UserFactory()
    admin = UserFactory(username="xss-admin", is_staff=True, is_superuser=True)
    evil = payloads()
    assert len(evil) >= 50

    for link in HOSTILE_LINKS:
        with pytest.raises(ValidationError):
            notify(user, "hostile link", url=link)
    created = [notify(user, title[:200], body=title) for title in evil]
    created += [notify(user, "tricky but valid link", url=link) for link in SAFE_BUT_TRICKY_LINKS]
    # Rows that skipped validation (bulk_create, raw SQL) must still never become links.
    Notification.objects.bulk_create(
        [
            Notification(title="unvalidated", recipient=user, audience="user", url=link)
            for link in HOSTILE_LINKS
        ]
    )
    total = len(created) + len(HOSTILE_LINKS)
    wait_until(
        lambda: Delivery.objects.filter(user=user).count() == total,
        timeout=20,
        what="every payload dispatched",
    )

    context = new_context()
    context.add_init_script("window.__xss = 0")
    page = log_in(context, user.username)
    dialogs = guard(page)
    bell = Bell(page).wait_ready()
    bell.expect_unread(total)
    bell.open()
    titles = bell.items.locator(".nbell-title").all_text_contents()
    assert titles[: len(HOSTILE_LINKS)] == ["unvalidated"] * len(HOSTILE_LINKS)
    assert (
        bell.root.locator(
            "img, script, iframe, svg[onload], object, embed, video, audio, "
            "input, select, textarea, details, marquee"
        ).count()
        == 0
    )
    assert_nothing_ran(page, dialogs)

    # A live one, shown as a toast too.
    live = notify(user, evil[3], body=evil[0])
    expect(bell.toast(live.pk).locator(".nbell-title")).to_have_text(evil[3])
    assert_nothing_ran(page, dialogs)

    # The inbox, every page of it.
    page.goto("/notifications/")
    seen: set[str] = set()
    while True:
        for item in page.locator("main [data-notification-id]").all():
            seen.add(item.get_attribute("data-notification-id"))
        assert (
            page.locator(
                "main a[href^='javascript'], main a[href^='data'], "
                "main a[href^='vbscript'], main a[href^='//']"
            ).count()
            == 0
        )
        assert_nothing_ran(page, dialogs)
        older = page.locator("a", has_text="Older")
        if not older.count():
            break
        older.first.click()
        page.wait_for_load_state()
    assert seen >= {str(n.pk) for n in created}
    # The body text survives intact, as text.
    page.goto("/notifications/")
    expect(page.locator("main").get_by_text(evil[3], exact=False).first).to_be_visible()

    # The admin: changelist (titles) and a change page (every field).
    admin_context = new_context()
    admin_context.add_init_script("window.__xss = 0")
    admin_page = log_in(admin_context, admin.username, PASSWORD)
    admin_dialogs = guard(admin_page)
    admin_page.goto("/admin/realtime_notifications/notification/?all=&o=-1")
    expect(admin_page.locator("#result_list")).to_be_visible()
    assert_nothing_ran(admin_page, admin_dialogs)
    for notification in created[:5]:
        admin_page.goto(f"/admin/realtime_notifications/notification/{notification.pk}/change/")
        assert_nothing_ran(admin_page, admin_dialogs)
    admin_page.goto(
        f"/admin/realtime_notifications/delivery/?notification__id__exact={created[0].pk}"
    )
    assert_nothing_ran(admin_page, admin_dialogs)
