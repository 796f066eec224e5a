"""A ping's one statement reads what the five queries it replaced read, case by case."""

import pytest
from django.contrib.sessions.backends.cache import SessionStore as CacheSession
from django.contrib.sessions.backends.db import SessionStore as DatabaseSession
from django.contrib.sessions.backends.signed_cookies import SessionStore as CookieSession
from django.utils import timezone

from notifications import consumers
from notifications.consumers import ping_state, ping_state_by_queries
from notifications.handshake_sql import ping_rows, ping_rows_supported
from notifications.models import CategoryPreference, Delivery, DeliveryState, Notification
from notifications.services import deliveries_record
from tests.factories import GroupFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def delivered(user, **fields):
    notification = Notification.objects.create(title="t", recipient=user, audience="user", **fields)
    deliveries_record(notification.pk, [user.pk])
    return notification


def database_session(user):
    session = DatabaseSession()
    session["_auth_user_id"] = str(user.pk)
    session.create()
    return session


def test_the_demo_user_model_takes_the_one_statement():
    assert ping_rows_supported()


def test_a_user_with_groups_mutes_and_a_mixed_inbox():
    user = StaffFactory()
    user.groups.add(GroupFactory(), GroupFactory())
    for _ in range(3):
        delivered(user)
    delivered(user, group_key="post:1")
    delivered(user, group_key="post:1")
    read = delivered(user)
    Delivery.objects.filter(notification=read).update(state=DeliveryState.READ)
    delivered(user, expires_at=timezone.now() - timezone.timedelta(minutes=1))
    CategoryPreference.objects.create(user=user, category="mentions", bell=False)
    CategoryPreference.objects.create(user=user, category="digest", bell=True)
    session = database_session(user)
    state = ping_state(user.pk, session)
    assert state == ping_state_by_queries(user.pk, session)
    assert state.unread == 4  # three alone, one group counted once; read and expired not
    assert state.session_alive is True
    assert state.muted == {"mentions"}
    assert len(state.groups) == 5  # own, everyone's, staff's, two auth groups


def test_a_new_user_with_nothing_yet():
    user = UserFactory()
    session = database_session(user)
    state = ping_state(user.pk, session)
    assert state == ping_state_by_queries(user.pk, session)
    assert (state.unread, state.last_id) == (0, None)


def test_a_deleted_session_and_an_inactive_or_deleted_user():
    user = UserFactory()
    session = database_session(user)
    DatabaseSession().delete(session.session_key)
    assert ping_state(user.pk, session).session_alive is False
    assert ping_state(user.pk, session) == ping_state_by_queries(user.pk, session)
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    assert ping_state(user.pk, session).groups is None
    assert ping_state(user.pk, session) == ping_state_by_queries(user.pk, session)
    gone = user.pk
    user.delete()
    assert ping_state(gone, session).groups is None
    assert ping_state(gone, session) == ping_state_by_queries(gone, session)


@pytest.mark.parametrize("backend", [CookieSession, CacheSession], ids=["cookie", "cache"])
def test_sessions_stored_elsewhere_are_asked_their_own_way(backend):
    user = UserFactory()
    delivered(user)
    session = backend()
    session["_auth_user_id"] = str(user.pk)
    session.save()
    assert ping_state(user.pk, session) == ping_state_by_queries(user.pk, session)
    assert ping_state(user.pk, session).session_alive is True


def test_a_session_handed_over_lazily_as_channels_does_is_looked_up_in_the_statement():
    from django.utils.functional import SimpleLazyObject

    user = UserFactory()
    stored = database_session(user)
    lazy = SimpleLazyObject(lambda: DatabaseSession(stored.session_key))
    assert consumers._database_session_model(lazy) is DatabaseSession.get_model_class()
    assert ping_state(user.pk, lazy) == ping_state_by_queries(user.pk, lazy)
    assert ping_state(user.pk, lazy).session_alive is True


def test_a_socket_without_a_session_key_is_alive_as_before():
    user = UserFactory()
    assert ping_state(user.pk, None) == ping_state_by_queries(user.pk, None)


def test_the_rows_say_when_the_session_was_not_asked():
    user = UserFactory()
    assert ping_rows(user.pk).session_exists is None
    assert ping_rows(user.pk, DatabaseSession.get_model_class(), "nope").session_exists is False
