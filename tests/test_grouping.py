"""Grouping (issue 12): a group counts once in the badge, lists show one head per item,
the members endpoint, and the verbs "as one" (``group: true``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from notifications.handshake_sql import badge_state
from notifications.models import Audience, Delivery, DeliveryState, Notification
from notifications.selectors import (
    group_members,
    inbox_counts,
    inbox_page,
    missed_since,
    notification_page,
    unread_count,
    unread_count_by_orm,
)
from notifications.services import deliveries_archive, deliveries_mark_read
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def deliver(
    user: Any, key: str = "", actor: str = "", state: str = DeliveryState.DELIVERED, **extra: Any
) -> int:
    """One notification of ``key`` by ``actor`` (a name), delivered to ``user``: its id."""
    notification = Notification.objects.create(
        title=f"{actor or 'someone'} on {key or 'nothing'}",
        audience=Audience.ALL,
        group_key=key,
        actor_name=actor,
        dispatched_at=timezone.now(),
        recorded_at=timezone.now(),
        **extra,
    )
    Delivery.objects.create(notification=notification, user=user, state=state)
    return notification.pk


def ids_of(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


@pytest.fixture
def me():
    return UserFactory()


@pytest.fixture
def other():
    return UserFactory()


# ---- 1. the badge counts a group once -----------------------------------------------------


def test_unread_groups_count_once_everywhere(me, other) -> None:
    for name in ("Ana", "Bo", "Ana"):
        deliver(me, "post:1", name)
    deliver(me, "post:2", "Cy")
    deliver(me)
    deliver(me)
    deliver(other, "post:1", "Ana")
    assert unread_count(me) == 4  # post:1, post:2 and two ungrouped
    assert badge_state(me.pk)[0] == 4
    assert inbox_counts(me)["unread"] == 4


def test_read_archived_and_snoozed_rows_of_a_group_do_not_count(me) -> None:
    first, second, third = (deliver(me, "k", name) for name in ("Ana", "Bo", "Cy"))
    deliveries_mark_read(me, [first])
    deliveries_archive(me, [second])
    Delivery.objects.filter(notification_id=third).update(
        snoozed_until=timezone.now() + timedelta(hours=1)
    )
    assert (unread_count(me), badge_state(me.pk)[0], inbox_counts(me)["unread"]) == (0, 0, 0)
    Delivery.objects.filter(notification_id=third).update(snoozed_until=timezone.now())
    assert (unread_count(me), badge_state(me.pk)[0], inbox_counts(me)["unread"]) == (1, 1, 1)


def test_the_count_built_once_agrees_with_the_orm_row_by_row(me, other) -> None:
    """``unread_count`` is SQL built once (handshake_sql); the ORM's aggregate is its
    reference, case by case, after each change."""
    now = timezone.now()

    def counts() -> tuple[int, int]:
        return unread_count(me), unread_count_by_orm(me)

    assert counts() == (0, 0)
    steps = [
        (lambda: deliver(me), 1),
        (lambda: deliver(me, state=DeliveryState.PENDING), 2),
        (lambda: deliver(me, state=DeliveryState.READ), 2),
        (lambda: [deliver(me, "k", name) for name in ("Ana", "Bo", "Ana")], 3),
        (lambda: deliver(me, "k2", "Cy", state=DeliveryState.READ), 3),
        (lambda: deliver(me, expires_at=now - timedelta(seconds=1)), 3),
        (lambda: deliver(me, expires_at=now + timedelta(hours=1)), 4),
        (lambda: deliver(me, recalled_at=now), 4),
        (lambda: deliver(other), 4),
        (lambda: deliveries_archive(me, [deliver(me)]), 4),
        (
            lambda: Delivery.objects.filter(notification_id=deliver(me)).update(
                snoozed_until=now + timedelta(hours=1)
            ),
            4,
        ),
        (
            lambda: Delivery.objects.filter(notification_id=deliver(me)).update(
                snoozed_until=now - timedelta(seconds=1)
            ),
            5,
        ),
    ]
    for change, expected in steps:
        change()
        assert counts() == (expected, expected)


def test_the_count_is_one_statement(me, django_assert_num_queries) -> None:
    deliver(me, "k", "Ana")
    with django_assert_num_queries(1):
        assert unread_count(me) == 1


def test_other_counts_of_the_inbox_stay_per_row(me) -> None:
    ids = [deliver(me, "k", "Ana") for _ in range(3)]
    deliveries_archive(me, ids[:2])
    assert inbox_counts(me) == {"unread": 1, "archived": 2, "snoozed": 0}


def test_the_badge_is_one_statement(me, django_assert_num_queries) -> None:
    deliver(me, "k", "Ana")
    newest = deliver(me, "k", "Bo")
    with django_assert_num_queries(1):
        assert badge_state(me.pk) == (1, newest)


# ---- 2. lists collapse --------------------------------------------------------------------


def test_a_page_shows_one_head_per_item_with_its_size_and_actors(me) -> None:
    plain = deliver(me, actor="Dee")
    members = [deliver(me, "post:1", name) for name in ("Ana", "Bo", "Ana", "Cy", "Eve", "")]
    page = notification_page(me)
    assert ids_of(page.results) == [members[-1], plain]
    head, single = page.results
    assert head["group_count"] == 6
    assert head["group_actors"] == ["Eve", "Cy", "Ana"]  # distinct, newest first, at most 3
    assert head["group_actor_count"] == 4
    assert (single["group_count"], single["group_actors"], single["group_actor_count"]) == (
        1,
        ["Dee"],
        1,
    )
    assert page.unread == 2


def test_every_list_entry_has_the_group_keys_and_pushes_do_not(me) -> None:
    from notifications.events import GROUP_FIELDS, serialize_notification

    deliver(me)
    item = notification_page(me).results[0]
    assert (item["group_count"], item["group_actors"], item["group_actor_count"]) == (1, [], 0)
    pushed = serialize_notification(Notification.objects.get())
    assert not set(GROUP_FIELDS) & set(pushed)


def test_rows_read_as_one_stay_one_item_and_a_new_unread_one_starts_another(me) -> None:
    old = [deliver(me, "k", name) for name in ("Ana", "Bo")]
    deliveries_mark_read(me, old)  # one statement: one read_at
    new = deliver(me, "k", "Cy")
    results = notification_page(me).results
    assert ids_of(results) == [new, old[1]]
    assert [(r["group_count"], r["read"]) for r in results] == [(1, False), (2, True)]
    assert ids_of(notification_page(me, status="unread").results) == [new]
    # Read one by one, they are two items.
    deliveries_mark_read(me, [new])
    assert [r["group_count"] for r in notification_page(me).results] == [1, 2]


def test_archived_items_are_what_was_archived_together(me) -> None:
    first = [deliver(me, "k", "Ana") for _ in range(2)]
    second = deliver(me, "k", "Bo")
    deliveries_archive(me, first)
    deliveries_archive(me, [second])
    results = notification_page(me, status="archived").results
    assert ids_of(results) == [second, first[1]]
    assert [r["group_count"] for r in results] == [1, 2]


def test_snoozed_items_share_their_until(me) -> None:
    until = timezone.now() + timedelta(hours=1)
    ids = [deliver(me, "k", "Ana") for _ in range(3)]
    Delivery.objects.filter(notification_id__in=ids[:2]).update(snoozed_until=until)
    Delivery.objects.filter(notification_id=ids[2]).update(
        snoozed_until=until + timedelta(minutes=1)
    )
    results = notification_page(me, status="snoozed").results
    assert [(r["id"], r["group_count"]) for r in results] == [(ids[2], 1), (ids[1], 2)]


def test_a_level_filter_groups_within_that_level(me) -> None:
    error = deliver(me, "k", "Ana", level="error")
    deliver(me, "k", "Bo")  # newer, but info: not in the error list
    results = notification_page(me, level="error").results
    assert [(r["id"], r["group_count"]) for r in results] == [(error, 1)]


def test_pagination_walks_over_heads(me) -> None:
    expected = []
    for index in range(5):
        deliver(me, f"k{index}", "Ana")
        expected.append(deliver(me, f"k{index}", "Bo"))
    expected.reverse()
    first = notification_page(me, limit=2)
    assert ids_of(first.results) == expected[:2] and first.next == expected[1]
    second = notification_page(me, limit=2, before=first.next)
    assert ids_of(second.results) == expected[2:4]
    third = notification_page(me, limit=2, before=second.next)
    assert ids_of(third.results) == expected[4:] and third.next is None


def test_a_member_older_than_the_cursor_is_not_listed_on_a_later_page(me) -> None:
    member = deliver(me, "k", "Ana")
    plain = [deliver(me) for _ in range(2)]
    head = deliver(me, "k", "Bo")
    first = notification_page(me, limit=2)
    assert ids_of(first.results) == [head, plain[1]]
    assert ids_of(notification_page(me, before=first.next).results) == [plain[0]]
    assert member not in ids_of(notification_page(me, before=plain[0]).results)


def test_lists_stay_a_few_queries_whatever_the_page(me, django_assert_max_num_queries) -> None:
    for index in range(15):
        for name in ("Ana", "Bo", "Cy"):
            deliver(me, f"k{index}", name)
        deliver(me)
    with django_assert_max_num_queries(3):
        page = notification_page(me, limit=50)
    assert len(page.results) == 30
    with django_assert_max_num_queries(4):
        inbox = inbox_page(me, limit=50)
    assert {d.group_count for d in inbox.deliveries} == {1, 3}
    with django_assert_max_num_queries(4):
        missed = missed_since(me, None)
    assert len(missed.notifications) == 30


def test_the_inbox_page_heads_carry_the_attributes_and_paginate(me) -> None:
    deliver(me, "k", "Ana")
    plain = deliver(me)
    head = deliver(me, "k", "Bo")
    page = inbox_page(me, limit=1)
    (shown,) = page.deliveries
    assert shown.notification_id == head
    assert (shown.group_count, shown.group_actors, shown.group_actor_count) == (2, ["Bo", "Ana"], 2)
    assert page.older == head and page.newer is None
    second = inbox_page(me, limit=1, before=page.older)
    assert [d.notification_id for d in second.deliveries] == [plain]
    assert second.older is None and second.newer == plain
    back = inbox_page(me, limit=1, after=second.newer)
    assert [d.notification_id for d in back.deliveries] == [head] and back.newer is None
    assert page.unread == 2 and page.counts["unread"] == 2


def test_missed_lists_heads_but_its_cursor_goes_over_every_row(me, settings) -> None:
    start = deliver(me)
    members = [deliver(me, "k", name) for name in ("Ana", "Bo")]
    last = deliver(me, "k2", "Cy")
    Delivery.objects.update(created_at=timezone.now() - timedelta(minutes=5))  # settled
    missed = missed_since(me, start)
    assert ids_of(missed.notifications) == [members[1], last]
    assert missed.notifications[0]["group_count"] == 2
    assert missed.cursor == last
    # A member whose head is past the batch's cap is hidden, yet the cursor passes it.
    with override_settings(NOTIFICATIONS={**settings.NOTIFICATIONS, "MAX_SYNC": 1}):
        capped = missed_since(me, start)
    assert capped.notifications == [] and capped.cursor == members[0]


def test_collapsing_never_looks_at_another_users_rows(me, other) -> None:
    mine = deliver(me, "k", "Ana")
    notification = Notification.objects.get(pk=mine)
    newer = deliver(other, "k", "Bo")
    Delivery.objects.create(notification=notification, user=other)
    assert ids_of(notification_page(me).results) == [mine]
    assert [r["group_count"] for r in notification_page(other).results] == [2]
    assert ids_of(notification_page(other).results) == [mine]  # dispatched to other last
    assert newer in [d.notification_id for d in group_members(other, mine)]


# ---- 3. the members of an item ------------------------------------------------------------

LIST_URL = "/notifications/api/"


@pytest.fixture
def client(me):
    from django.test import Client

    client = Client()
    client.force_login(me)
    return client


def test_group_members_are_the_items_rows_newest_first(me, other) -> None:
    read = [deliver(me, "k", "Ana") for _ in range(2)]
    deliveries_mark_read(me, read)
    unread = [deliver(me, "k", name) for name in ("Bo", "Cy")]
    deliver(me, "other", "Ana")
    deliver(other, "k", "Ana")
    assert [d.notification_id for d in group_members(me, unread[0])] == unread[::-1]
    assert [d.notification_id for d in group_members(me, read[0])] == read[::-1]
    assert [d.notification_id for d in group_members(me, read[0], "unread")] == []
    plain = deliver(me)
    assert [d.notification_id for d in group_members(me, plain)] == [plain]
    assert group_members(other, unread[0]) == []


def test_the_api_lists_an_items_members_and_paginates(client, me) -> None:
    deliveries_mark_read(me, [deliver(me, "k", "Ana")])
    members = [deliver(me, "k", name) for name in ("Bo", "Cy", "Dee")]
    deliver(me)
    first = client.get(LIST_URL, {"group": "k", "bucket_of": members[0], "limit": 2}).json()
    assert ids_of(first["results"]) == members[:0:-1]
    assert [r["group_count"] for r in first["results"]] == [1, 1]
    assert first["next"] == members[1] and first["unread"] == 2
    rest = client.get(LIST_URL, {"group": "k", "bucket_of": members[0], "before": first["next"]})
    assert ids_of(rest.json()["results"]) == [members[0]] and rest.json()["next"] is None
    # Without bucket_of: the key's unread rows.
    assert ids_of(client.get(LIST_URL, {"group": "k"}).json()["results"]) == members[::-1]


def test_the_api_members_of_an_archived_item(client, me) -> None:
    together = [deliver(me, "k", "Ana") for _ in range(2)]
    alone = deliver(me, "k", "Bo")
    deliveries_archive(me, together)
    deliveries_archive(me, [alone])
    query = {"group": "k", "status": "archived", "bucket_of": together[0]}
    assert ids_of(client.get(LIST_URL, query).json()["results"]) == together[::-1]
    response = client.get(LIST_URL, {"group": "k", "status": "archived"})
    assert response.status_code == 400 and response.json()["error"] == "bad_request"


def test_the_api_reveals_nothing_of_another_users_item(client, me, other) -> None:
    theirs = deliver(other, "k", "Ana")
    deliver(me, "k", "Bo")
    response = client.get(LIST_URL, {"group": "k", "bucket_of": theirs})
    assert response.status_code == 200 and response.json()["results"] == []
    mine = deliver(me, "k2", "Bo")
    assert client.get(LIST_URL, {"group": "k", "bucket_of": mine}).json()["results"] == []


@pytest.mark.parametrize(
    "query",
    [
        {"group": ""},
        {"group": "k" * 201},
        {"bucket_of": "1"},
        {"group": "k", "bucket_of": "x"},
        {"group": "k", "bucket_of": "0"},
        {"group": "k", "status": "deleted"},
    ],
)
def test_bad_group_parameters_are_400(client, query) -> None:
    response = client.get(LIST_URL, query)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


# ---- 4. verbs "as one" --------------------------------------------------------------------


def states(user: Any) -> dict[int, tuple[str, bool]]:
    rows = Delivery.objects.filter(user=user).values_list("notification_id", "state", "read_at")
    return {nid: (state, read_at is not None) for nid, state, read_at in rows}


def test_expand_groups_adds_the_items_rows_and_nothing_else(me, other) -> None:
    from notifications.services import expand_groups

    old = deliver(me, "k", "Ana")
    deliveries_mark_read(me, [old])
    item = [deliver(me, "k", name) for name in ("Bo", "Cy")]
    plain = deliver(me)
    theirs = deliver(other, "k", "Ana")
    assert expand_groups(me, [item[1], plain, theirs, 999_999]) == [
        item[1],
        plain,
        theirs,
        999_999,
        item[0],
    ]
    assert expand_groups(me, [old]) == [old]
    assert expand_groups(me, []) == []


def test_read_as_one_reads_the_item_with_one_read_at(me) -> None:
    item = [deliver(me, "k", name) for name in ("Ana", "Bo", "Cy")]
    other_item = deliver(me, "k2", "Ana")
    result = deliveries_mark_read(me, [item[-1]], group=True)
    assert result.ids == item and result.unread == 1
    assert len(set(Delivery.objects.filter(notification_id__in=item).values_list("read_at"))) == 1
    results = notification_page(me).results
    assert [(r["id"], r["group_count"]) for r in results] == [(other_item, 1), (item[-1], 3)]


def test_without_group_a_verb_changes_only_its_ids(me) -> None:
    item = [deliver(me, "k", name) for name in ("Ana", "Bo")]
    assert deliveries_mark_read(me, [item[-1]]).ids == [item[-1]]
    assert deliveries_archive(me, [item[0]]).ids == [item[0]]


def test_triage_as_one_in_the_view_it_acts_from(me) -> None:
    from notifications.services import (
        deliveries_mark_unread,
        deliveries_snooze,
        deliveries_unarchive,
    )

    item = [deliver(me, "k", name) for name in ("Ana", "Bo")]
    deliveries_mark_read(me, item, group=True)
    later_one = deliver(me, "k", "Cy")  # unread: another item
    unread = deliveries_mark_unread(me, [item[1]], group=True)
    assert unread.ids == item and unread.unread == 1  # all unread now: one item
    archived = deliveries_archive(me, [later_one], group=True)
    assert archived.ids == [*item, later_one] and archived.unread == 0
    back = deliveries_unarchive(me, [item[0]], group=True)
    assert back.ids == [*item, later_one]
    snoozed = deliveries_snooze(me, [later_one], timezone.now() + timedelta(hours=1), group=True)
    assert snoozed.ids == [*item, later_one] and snoozed.unread == 0


def test_the_http_verbs_take_the_group_flag(client, me) -> None:
    import json

    item = [deliver(me, "k", name) for name in ("Ana", "Bo")]
    plain = deliver(me)

    def post(verb: str, **body: Any) -> Any:
        return client.post(
            f"{LIST_URL}{verb}/", data=json.dumps(body), content_type="application/json"
        )

    assert post("archive", ids=[item[1]], group=True).json() == {"ids": item, "unread": 1}
    assert post("unarchive", ids=[item[0]], group=True).json() == {"ids": item, "unread": 2}
    assert post("read", ids=[item[1]], group=True).json() == {"unread": 1}
    assert states(me)[item[0]] == ("read", True)
    assert post("unread", ids=[item[1]], group=True).json()["ids"] == item
    until = (timezone.now() + timedelta(hours=1)).isoformat()
    snoozed = post("snooze", ids=[item[0]], until=until, group=True).json()
    assert snoozed["ids"] == item and snoozed["unread"] == 1
    assert post("archive", ids=[plain], group="yes").status_code == 400
    assert post("read", ids=[plain], group=False).json() == {"unread": 0}


def test_the_group_flag_in_frames_parses() -> None:
    from notifications.events import FrameError, parse_client_frame

    def parse(**frame: Any) -> Any:
        import json

        return parse_client_frame(json.dumps(frame), max_ids=10)

    assert parse(type="read", ids=[1], group=True).group is True
    assert parse(type="archive", ids=[1]).group is False
    assert parse(type="unarchive", ids=[1], group=None).group is False
    until = (timezone.now() + timedelta(hours=1)).isoformat()
    assert parse(type="snooze", ids=[1], until=until, group=True).group is True
    assert parse(type="ack", ids=[1], group=True).group is False  # not a grouping verb
    with pytest.raises(FrameError) as caught:
        parse(type="unread", ids=[1], group=1)
    assert caught.value.code == "invalid_group"
