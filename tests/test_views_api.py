"""The JSON API: GET /notifications/api/ and POST /notifications/api/read/."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from notifications.events import GROUP_FIELDS
from notifications.models import Audience, Delivery, DeliveryState, Notification
from tests.factories import NOTIFICATION_FIELDS, UserFactory

pytestmark = pytest.mark.django_db

LIST_URL = "/notifications/api/"
READ_URL = "/notifications/api/read/"


def deliver(user: Any, count: int = 1, state: str = DeliveryState.PENDING, **fields: Any) -> list:
    ids = []
    for index in range(count):
        row = Notification.objects.create(
            **{"title": f"n{index}", "audience": Audience.ALL, **fields}
        )
        Delivery.objects.create(notification=row, user=user, state=state)
        ids.append(row.pk)
    return ids


def client_for(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def post_json(client: Client, data: Any) -> Any:
    return client.post(READ_URL, data=json.dumps(data), content_type="application/json")


def states(user: Any) -> dict[int, str]:
    return dict(Delivery.objects.filter(user=user).values_list("notification_id", "state"))


@pytest.fixture
def me():
    return UserFactory()


@pytest.fixture
def other():
    return UserFactory()


@pytest.fixture
def client(me) -> Client:
    return client_for(me)


def test_urls_match_the_contract() -> None:
    assert reverse("notifications:api-list") == LIST_URL
    assert reverse("notifications:api-read") == READ_URL


# ---- login required ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url"), [("get", LIST_URL), ("post", READ_URL)])
def test_anonymous_gets_a_json_401_not_the_login_page(method: str, url: str) -> None:
    response = getattr(Client(), method)(url)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "not_authenticated"


def test_anonymous_read_changes_nothing(me) -> None:
    ids = deliver(me, 2)
    post_json(Client(), {"ids": ids})
    post_json(Client(), {"all": True})
    assert set(states(me).values()) == {DeliveryState.PENDING}


# ---- GET /notifications/api/ ---------------------------------------------------------------


def test_list_shape(client, me) -> None:
    ids = deliver(me, 2)
    deliver(me, 1, DeliveryState.READ)
    response = client.get(LIST_URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert set(data) == {"unread", "results", "next"}
    assert data["unread"] == 2
    assert data["next"] is None
    assert [item["id"] for item in data["results"]][1:] == sorted(ids, reverse=True)
    for item in data["results"]:
        assert set(item) == {*NOTIFICATION_FIELDS, *GROUP_FIELDS}


def test_list_empty(client) -> None:
    assert client.get(LIST_URL).json() == {"unread": 0, "results": [], "next": None}


@pytest.mark.parametrize("flag", ["1", "true"])
def test_list_unread_filter(client, me, flag: str) -> None:
    unread = deliver(me, 2)
    deliver(me, 2, DeliveryState.READ)
    data = client.get(LIST_URL, {"unread": flag}).json()
    assert [item["id"] for item in data["results"]] == sorted(unread, reverse=True)


def test_list_unread_zero_means_all(client, me) -> None:
    deliver(me, 1)
    deliver(me, 1, DeliveryState.READ)
    assert len(client.get(LIST_URL, {"unread": "0"}).json()["results"]) == 2


def test_list_cursor(client, me) -> None:
    ids = sorted(deliver(me, 5), reverse=True)
    first = client.get(LIST_URL, {"limit": 2}).json()
    assert [item["id"] for item in first["results"]] == ids[:2]
    assert first["next"] == ids[1]
    second = client.get(LIST_URL, {"limit": 2, "before": first["next"]}).json()
    assert [item["id"] for item in second["results"]] == ids[2:4]
    third = client.get(LIST_URL, {"limit": 2, "before": second["next"]}).json()
    assert [item["id"] for item in third["results"]] == ids[4:]
    assert third["next"] is None


def test_list_limit_is_capped(client, me, settings) -> None:
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "MAX_SYNC": 2}
    deliver(me, 3)
    data = client.get(LIST_URL, {"limit": 500}).json()
    assert len(data["results"]) == 2
    assert data["next"] is not None


def test_list_default_page_size_is_20(client, me) -> None:
    deliver(me, 21)
    data = client.get(LIST_URL).json()
    assert len(data["results"]) == 20
    assert data["next"] is not None


@pytest.mark.parametrize(
    "params",
    [
        {"before": "abc"},
        {"before": "0"},
        {"before": "-3"},
        {"before": "1.5"},
        {"limit": "x"},
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "2e3"},
    ],
)
def test_list_bad_parameters_are_400(client, me, params: dict[str, str]) -> None:
    deliver(me, 1)
    response = client.get(LIST_URL, params)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_list_huge_before_is_400_not_500(me) -> None:
    client = client_for(me, raise_request_exception=False)
    response = client.get(LIST_URL, {"before": str(2**64)})
    assert response.status_code in (200, 400)


def test_list_empty_parameters_mean_defaults(client, me) -> None:
    deliver(me, 2)
    data = client.get(LIST_URL, {"before": "", "limit": ""}).json()
    assert len(data["results"]) == 2


def test_list_excludes_expired(client, me) -> None:
    live = deliver(me, 1)
    deliver(me, 1, expires_at=timezone.now() - timedelta(seconds=1))
    data = client.get(LIST_URL).json()
    assert [item["id"] for item in data["results"]] == live
    assert data["unread"] == 1


def test_list_shows_only_own_rows(client, me, other) -> None:
    mine = deliver(me, 1)
    theirs = deliver(other, 3)
    data = client.get(LIST_URL, {"before": max(theirs) + 1}).json()
    assert [item["id"] for item in data["results"]] == mine
    assert data["unread"] == 1


def test_list_rejects_post(client) -> None:
    assert client.post(LIST_URL).status_code == 405


def test_get_never_changes_state(client, me) -> None:
    deliver(me, 3)
    before = list(Delivery.objects.values_list("pk", "state", "delivered_at", "read_at"))
    client.get(LIST_URL)
    client.get(LIST_URL, {"unread": "1"})
    client.get(READ_URL, {"ids": "1", "all": "true"})
    assert list(Delivery.objects.values_list("pk", "state", "delivered_at", "read_at")) == before


def test_read_rejects_get(client) -> None:
    assert client.get(READ_URL).status_code == 405


# ---- POST /notifications/api/read/ ---------------------------------------------------------


def test_read_ids(client, me) -> None:
    ids = deliver(me, 3)
    response = post_json(client, {"ids": ids[:2]})
    assert response.status_code == 200
    assert response.json() == {"unread": 1}
    assert states(me) == {
        ids[0]: DeliveryState.READ,
        ids[1]: DeliveryState.READ,
        ids[2]: DeliveryState.PENDING,
    }
    assert (
        Delivery.objects.filter(user=me, state=DeliveryState.READ, read_at__isnull=True).count()
        == 0
    )


def test_read_all(client, me) -> None:
    deliver(me, 3)
    deliver(me, 1, DeliveryState.DELIVERED)
    assert post_json(client, {"all": True}).json() == {"unread": 0}
    assert set(states(me).values()) == {DeliveryState.READ}


def test_read_empty_ids(client, me) -> None:
    deliver(me, 2)
    assert post_json(client, {"ids": []}).json() == {"unread": 2}


def test_read_twice_is_harmless(client, me) -> None:
    ids = deliver(me, 2)
    post_json(client, {"ids": ids[:1]})
    assert post_json(client, {"ids": ids[:1]}).json() == {"unread": 1}


def test_read_of_others_ids_changes_nothing_and_leaks_nothing(client, me, other) -> None:
    deliver(me, 1)
    theirs = deliver(other, 2)
    nonexistent = max(theirs) + 1000
    others = post_json(client, {"ids": theirs})
    missing = post_json(client, {"ids": [nonexistent]})
    assert others.status_code == missing.status_code == 200
    assert others.content == missing.content == b'{"unread": 1}'
    assert set(states(other).values()) == {DeliveryState.PENDING}
    assert not Delivery.objects.filter(user=other, read_at__isnull=False).exists()


def test_read_all_touches_only_own_rows(client, me, other) -> None:
    deliver(me, 1)
    deliver(other, 2)
    post_json(client, {"all": True})
    assert set(states(other).values()) == {DeliveryState.PENDING}


@pytest.mark.parametrize(
    "body",
    ["not json", "{", "", "[1, 2]", '"ids"', "null", "3"],
)
def test_read_bad_body_is_400(client, me, body: str) -> None:
    ids = deliver(me, 1)
    # An empty body reads as {}: no "ids", refused too.
    response = client.post(READ_URL, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert states(me) == {ids[0]: DeliveryState.PENDING}


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"ids": None},
        {"ids": "1"},
        {"ids": [0]},
        {"ids": ["1"]},
        {"ids": [True]},
        {"ids": [1.5]},
        {"all": "true"},
        {"all": 1},
        {"ids": list(range(1, 502))},
    ],
)
def test_read_bad_ids_are_400(client, me, data: dict[str, Any]) -> None:
    ids = deliver(me, 1)
    response = post_json(client, data)
    assert response.status_code == 400
    assert states(me) == {ids[0]: DeliveryState.PENDING}


def test_read_deeply_nested_body_is_400(me) -> None:
    client = client_for(me, raise_request_exception=False)
    response = client.post(READ_URL, data="[" * 20_000, content_type="application/json")
    assert response.status_code == 400


# ---- CSRF ------------------------------------------------------------------------------------


def test_read_requires_csrf_token(me) -> None:
    ids = deliver(me, 1)
    client = client_for(me, enforce_csrf_checks=True)
    response = post_json(client, {"ids": ids})
    assert response.status_code == 403
    response = post_json(client, {"all": True})
    assert response.status_code == 403
    assert states(me) == {ids[0]: DeliveryState.PENDING}


def test_read_with_csrf_token(me) -> None:
    ids = deliver(me, 1)
    client = client_for(me, enforce_csrf_checks=True)
    client.get("/notifications/")  # the inbox page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = client.post(
        READ_URL,
        data=json.dumps({"ids": ids}),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 200
    assert response.json() == {"unread": 0}
    assert states(me) == {ids[0]: DeliveryState.READ}


# ---- triage endpoints and JSON errors ------------------------------------------------------

TRIAGE_URLS = {
    "archive": "/notifications/api/archive/",
    "unarchive": "/notifications/api/unarchive/",
    "unread": "/notifications/api/unread/",
    "snooze": "/notifications/api/snooze/",
}


def post_to(client: Client, url: str, data: Any) -> Any:
    return client.post(url, data=json.dumps(data), content_type="application/json")


def test_triage_urls_match_the_contract() -> None:
    for verb, url in TRIAGE_URLS.items():
        assert reverse(f"notifications:api-{verb}") == url


def test_archive_then_list_by_status(client, me) -> None:
    ids = deliver(me, 3)
    response = post_to(client, TRIAGE_URLS["archive"], {"ids": ids[:2]})
    assert response.status_code == 200
    assert response.json() == {"ids": sorted(ids[:2]), "unread": 1}
    inbox = client.get(LIST_URL).json()
    assert [n["id"] for n in inbox["results"]] == [ids[2]]
    archived = client.get(LIST_URL, {"status": "archived"}).json()
    assert sorted(n["id"] for n in archived["results"]) == sorted(ids[:2])
    back = post_to(client, TRIAGE_URLS["unarchive"], {"ids": ids[:1]}).json()
    assert back == {"ids": ids[:1], "unread": 2}


def test_snooze_and_unread(client, me) -> None:
    ids = deliver(me, 2, DeliveryState.READ)
    until = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)
    response = post_to(client, TRIAGE_URLS["snooze"], {"ids": ids[:1], "until": until.isoformat()})
    assert response.status_code == 200
    assert response.json() == {"ids": ids[:1], "unread": 0, "until": until.isoformat()}
    snoozed = client.get(LIST_URL, {"status": "snoozed"}).json()["results"]
    assert [n["id"] for n in snoozed] == ids[:1]
    assert post_to(client, TRIAGE_URLS["unread"], {"ids": ids}).json() == {
        "ids": sorted(ids),
        "unread": 2,
    }


def test_a_snooze_time_without_offset_is_read_in_the_tz_cookie_zone(client, me) -> None:
    (nid,) = deliver(me)
    client.cookies["tz"] = "Asia/Tokyo"
    local = (timezone.now() + timedelta(days=1)).astimezone(ZoneInfo("Asia/Tokyo"))
    naive = local.replace(tzinfo=None, microsecond=0).isoformat()
    response = post_to(client, TRIAGE_URLS["snooze"], {"ids": [nid], "until": naive})
    assert response.status_code == 200
    stored = Delivery.objects.get(user=me, notification_id=nid).snoozed_until
    assert stored == local.replace(microsecond=0)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"ids": "1"}, "ids"),
        ({"ids": [0]}, "ids"),
        ({"ids": [1], "until": "soon"}, "ISO 8601"),
        ({"ids": [1], "until": "2001-01-01T00:00:00+00:00"}, "future"),
    ],
)
def test_bad_snooze_bodies_are_json_400s(client, me, body: dict, detail: str) -> None:
    response = post_to(client, TRIAGE_URLS["snooze"], body)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert detail in response.json()["detail"]


@pytest.mark.parametrize("url", [READ_URL, *TRIAGE_URLS.values()])
def test_writes_without_csrf_token_are_json_403s(me, url: str) -> None:
    client = client_for(me, enforce_csrf_checks=True)
    response = post_to(client, url, {"ids": [1]})
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "csrf_failed"


@pytest.mark.parametrize("url", [*TRIAGE_URLS.values()])
def test_triage_needs_login_and_post(url: str, client) -> None:
    anonymous = post_to(Client(), url, {"ids": [1]})
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "not_authenticated")
    wrong = client.get(url)
    assert wrong.status_code == 405
    assert wrong["Allow"] == "POST"
    assert wrong.json()["error"] == "method_not_allowed"


def test_list_rejects_unknown_status_and_level_as_json(client) -> None:
    for query in ({"status": "deleted"}, {"level": "fatal"}):
        response = client.get(LIST_URL, query)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"


def test_unknown_api_path_is_a_json_404(client) -> None:
    response = client.get("/notifications/api/nope/")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_list_filters_by_level_and_old_unread_alias_still_works(client, me) -> None:
    info, error = deliver(me), deliver(me, level="error")
    deliver(me, 1, DeliveryState.READ, level="error")
    by_level = client.get(LIST_URL, {"level": "error"}).json()["results"]
    assert len(by_level) == 2 and error[0] in [n["id"] for n in by_level]
    for query in ({"unread": "1"}, {"status": "unread"}):
        ids = [n["id"] for n in client.get(LIST_URL, query).json()["results"]]
        assert sorted(ids) == sorted(info + error)
