"""The inbox page and grouping (issue 12): a group item is one head row with its actor line
and an expander; without JavaScript the expander is a page of the members; forms with
``group=1`` act on the whole item, a member's own form on that member alone."""

from __future__ import annotations

import html as html_lib
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from notifications.models import Delivery, DeliveryState
from notifications.views import actor_line
from tests.test_inbox import INBOX, deliver, inbox_html, shown_ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_of(client, user):
    client.force_login(user)
    return client


def comment(user, key: str, actor: str = "", title: str = "", **fields):
    """A notification of group ``key`` by ``actor`` (a name), delivered to ``user``."""
    return deliver(
        user, title or f"{actor or 'Someone'} commented", group_key=key, actor_name=actor, **fields
    )


@pytest.fixture
def thread(user):
    """Thirteen comments on one thread by thirteen people (Ana the newest), and one plain row
    before them."""
    plain = deliver(user, "Plain one")
    names = [f"P{i:02d}" for i in range(11)] + ["Bo", "Ana"]
    made = [comment(user, "thread:7", name) for name in names]
    return {"plain": plain, "members": made, "head": made[-1]}


def row_html(response, notification_id: int) -> str:
    """The <li> of one row, as rendered."""
    page = inbox_html(response)
    start = page.index(f'data-notification-id="{notification_id}"')
    start = page.rindex("<li", 0, start)
    return page[start : page.index("</li>", start)]


def states(user) -> dict[int, str]:
    return dict(Delivery.objects.filter(user=user).values_list("notification_id", "state"))


# ---- the actor line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "actors", "count", "line"),
    [
        ([], 0, 13, "13 notifications"),
        (["Ana"], 1, 13, "Ana"),
        (["Ana", "Bo"], 2, 5, "Ana and Bo"),
        (["Ana", "Bo", "Cy"], 3, 5, "Ana, Bo and Cy"),
        (["Ana", "Bo", "Cy"], 4, 5, "Ana, Bo and 2 others"),
        (["Ana", "Bo", "Cy"], 13, 13, "Ana, Bo and 11 others"),
        (["Ana"], 2, 3, "Ana and one other"),
        (["Ana"], 13, 13, "Ana and 12 others"),
        (["Ana", "Bo"], 3, 3, "Ana, Bo and one other"),
    ],
)
def test_the_actor_line_reads_as_the_bells(names, actors, count, line):
    assert actor_line(names, actors, count) == line


# ---- the head row ------------------------------------------------------------------------


def test_a_group_is_one_head_row_with_actors_newest_title_and_an_expander(client_of, thread):
    response = client_of.get(INBOX)
    assert shown_ids(response) == [thread["head"].pk, thread["plain"].pk]
    head = row_html(response, thread["head"].pk)
    assert "ninbox-grouped" in head
    assert 'data-group-key="thread:7"' in head
    assert 'data-group-count="13"' in head
    assert "Ana, Bo and 11 others" in head
    assert "Ana commented" in head  # the newest title
    assert json.loads(html_lib.unescape(re.search(r'data-group-actors="([^"]*)"', head)[1])) == [
        "Ana",
        "Bo",
        "P10",
    ]
    expander = re.search(r'<a class="ninbox-more" href="([^"]+)"[^>]*>', head)
    assert 'data-notification-group-count="13"' in expander[0]
    assert "12 more" in head
    link = urlsplit(html_lib.unescape(expander[1]))
    assert link.path == INBOX
    assert parse_qs(link.query) == {"group": ["thread:7"], "bucket_of": [str(thread["head"].pk)]}
    # The head's own form acts on the whole item; a plain row's does not say so.
    assert 'name="group" value="1"' in head
    plain = row_html(response, thread["plain"].pk)
    assert "ninbox-more" not in plain and 'name="group"' not in plain
    assert "data-notification-group-count" not in plain
    # The unread count counts the group once.
    assert re.search(r'data-ninbox-count="unread">2<', inbox_html(response))


def test_a_group_without_actors_says_how_many(client_of, user):
    for _ in range(3):
        comment(user, "builds")
    head = row_html(client_of.get(INBOX), Delivery.objects.order_by("-id").first().notification_id)
    assert "3 notifications" in head and "2 more" in head


def test_a_key_with_one_row_is_an_ordinary_row(client_of, user):
    alone = comment(user, "thread:9", "Ana")
    row = row_html(client_of.get(INBOX), alone.pk)
    assert "ninbox-more" not in row and "ninbox-grouped" not in row
    assert 'data-group-key="thread:9"' in row  # a live arrival of the key merges into it


def test_read_rows_of_a_key_are_an_item_of_their_own(client_of, user, thread):
    """Read together, they stay together; a new unread one starts a new item."""
    client_of.post(INBOX, {"action": "read", "ids": str(thread["head"].pk), "group": "1"})
    fresh = comment(user, "thread:7", "Cy")
    response = client_of.get(INBOX)
    assert shown_ids(response) == [fresh.pk, thread["head"].pk, thread["plain"].pk]
    assert "ninbox-more" not in row_html(response, fresh.pk)
    assert "12 more" in row_html(response, thread["head"].pk)


# ---- the members page (no JavaScript) ----------------------------------------------------------


def members_url(thread, **extra: str) -> str:
    query = {"group": "thread:7", "bucket_of": str(thread["head"].pk), **extra}
    return INBOX + "?" + "&".join(f"{k}={v}" for k, v in query.items())


def test_the_expander_link_shows_the_members_as_a_page_with_a_way_back(client_of, thread):
    response = client_of.get(members_url(thread))
    page = inbox_html(response)
    assert response.status_code == 200
    members = thread["members"]
    assert shown_ids(response) == [n.pk for n in reversed(members)][:20]
    assert "ninbox-more" not in page and "ninbox-grouped" not in page  # members are rows
    assert 'name="group"' not in page  # their forms act on one row each
    assert "Back to all notifications" in page and 'href="/notifications/"' in page
    assert "13 notifications in this group" in page
    assert "Ana, Bo and 11 others" in page
    assert f'data-members-of="thread:7" data-bucket-of="{thread["head"].pk}"' in page


def test_the_members_page_paginates_within_the_item(client_of, user, settings):
    made = [comment(user, "big", f"U{i}") for i in range(25)]
    head = made[-1]
    first = client_of.get(f"{INBOX}?group=big&bucket_of={head.pk}")
    assert len(shown_ids(first)) == 20
    older = re.search(r'href="([^"]+)" rel="next"', inbox_html(first))
    query = parse_qs(urlsplit(html_lib.unescape(older[1])).query)
    assert query["group"] == ["big"] and query["bucket_of"] == [str(head.pk)]
    second = client_of.get(html_lib.unescape(older[1]))
    assert shown_ids(second) == [n.pk for n in reversed(made[:5])]
    newer = re.search(r'href="([^"]+)" rel="prev"', inbox_html(second))
    assert shown_ids(client_of.get(html_lib.unescape(newer[1]))) == shown_ids(first)


def test_a_members_page_of_someone_elses_item_or_a_bad_one_is_empty(client_of, thread):
    from tests.factories import UserFactory

    stranger = UserFactory()
    theirs = comment(stranger, "thread:7", "Zed")
    for query in (
        f"?group=thread:7&bucket_of={theirs.pk}",
        f"?group=other&bucket_of={thread['head'].pk}",  # the row is of another key
        "?group=thread:7&bucket_of=nonsense&status=archived",  # no bucket named
    ):
        response = client_of.get(INBOX + query)
        assert response.status_code == 200, query
        assert shown_ids(response) == [], query
        assert "Back to all notifications" in inbox_html(response)


def test_an_archived_item_has_its_members_page(client_of, user, thread):
    client_of.post(INBOX, {"action": "archive", "ids": str(thread["head"].pk), "group": "1"})
    response = client_of.get(INBOX, {"status": "archived"})
    head = row_html(response, thread["head"].pk)
    assert "12 more" in head
    link = html_lib.unescape(re.search(r'class="ninbox-more" href="([^"]+)"', head)[1])
    assert parse_qs(urlsplit(link).query)["status"] == ["archived"]
    assert len(shown_ids(client_of.get(link))) == 13


# ---- the verbs -----------------------------------------------------------------------------


def test_a_heads_form_with_group_acts_on_every_member(client_of, user, thread):
    response = client_of.post(
        INBOX, {"action": "read", "ids": str(thread["head"].pk), "group": "1"}, follow=True
    )
    assert "Marked 13 as read." in response.content.decode()
    read = states(user)
    assert all(read[n.pk] == DeliveryState.READ for n in thread["members"])
    assert read[thread["plain"].pk] != DeliveryState.READ
    # They were read as one, so they stay one item.
    assert (
        Delivery.objects.filter(user=user, notification__group_key="thread:7")
        .values("read_at")
        .distinct()
        .count()
        == 1
    )

    client_of.post(INBOX, {"action": "archive", "ids": str(thread["head"].pk), "group": "1"})
    archived = Delivery.objects.filter(user=user, archived_at__isnull=False)
    assert {d.notification_id for d in archived} == {n.pk for n in thread["members"]}
    client_of.post(
        INBOX + "?status=archived",
        {"action": "unarchive", "ids": str(thread["head"].pk), "group": "1"},
    )
    assert not Delivery.objects.filter(user=user, archived_at__isnull=False).exists()


def test_the_bulk_form_with_group_snoozes_whole_items(client_of, user, thread):
    other = [comment(user, "thread:8", name) for name in ("Cy", "Di")]
    client_of.post(
        INBOX,
        {"snooze": "tomorrow", "ids": [str(thread["head"].pk), str(other[-1].pk)], "group": "1"},
    )
    snoozed = set(
        Delivery.objects.filter(user=user, snoozed_until__gt=timezone.now()).values_list(
            "notification_id", flat=True
        )
    )
    assert snoozed == {n.pk for n in thread["members"] + other}


def test_without_group_a_form_acts_on_that_row_alone(client_of, user, thread):
    head = thread["head"]
    client_of.post(INBOX, {"action": "archive", "ids": str(head.pk)})
    assert set(
        Delivery.objects.filter(user=user, archived_at__isnull=False).values_list(
            "notification_id", flat=True
        )
    ) == {head.pk}
    # The item's next newest heads it now, one smaller.
    response = client_of.get(INBOX)
    assert "11 more" in row_html(response, thread["members"][-2].pk)


def test_a_members_form_acts_on_one_member(client_of, user, thread):
    member = thread["members"][3]
    url = members_url(thread)
    response = client_of.post(url, {"action": "archive", "ids": str(member.pk)})
    assert response.status_code == 302 and response["Location"] == url
    archived = Delivery.objects.filter(user=user, archived_at__isnull=False)
    assert [d.notification_id for d in archived] == [member.pk]
    assert member.pk not in shown_ids(client_of.get(url))
    assert len(shown_ids(client_of.get(url))) == 12


def test_acting_on_the_row_a_members_page_is_named_by_goes_on_from_another(client_of, user, thread):
    """The page names its item by bucket_of; reading that row takes it out of the item."""
    head = thread["head"]
    response = client_of.post(members_url(thread), {"action": "read", "ids": str(head.pk)})
    assert states(user)[head.pk] == DeliveryState.READ
    location = urlsplit(response["Location"])
    query = parse_qs(location.query)
    assert query["group"] == ["thread:7"]
    assert query["bucket_of"] == [str(thread["members"][-2].pk)]
    assert len(shown_ids(client_of.get(response["Location"]))) == 12

    # Done with every member: back to the inbox.
    rest = [str(n.pk) for n in thread["members"][:-1]]
    response = client_of.post(response["Location"], {"action": "archive", "ids": rest})
    assert response["Location"] == INBOX
