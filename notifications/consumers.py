"""NotificationConsumer: authenticate, join server-named groups, translate frames."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, NamedTuple

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.signed_cookies import SessionStore as SignedCookieSession
from redis.exceptions import RedisError

from notifications import conf, events
from notifications.asyncdb import database_unavailable, db_async
from notifications.auth import cookies_from_headers
from notifications.batching import process_marks
from notifications.dispatch import apush_read, apush_triage
from notifications.events import ClientFrame, FrameError, UserId
from notifications.fanout import LocalHub, encode_frame, get_hub
from notifications.handshake_sql import auth_group_ids, ping_rows, ping_rows_supported
from notifications.middleware import TIMEZONE_COOKIE, zone_from_cookie
from notifications.observe import aemit
from notifications.origin import handshake_origin_allowed
from notifications.preferences import muted_categories, muted_from
from notifications.recalls import recent_changes
from notifications.selectors import badge_state, missed_since
from notifications.services import (
    TriageResult,
    adeliveries_archive,
    adeliveries_mark_all_read,
    adeliveries_mark_read,
    adeliveries_mark_unread,
    adeliveries_snooze,
    adeliveries_unarchive,
    deliveries_record_in_flight,
)
from notifications.throttle import TokenBucket

try:  # daphne's WebSocket protocol: sending on a socket the browser has just closed
    from autobahn.exception import Disconnected as PeerDisconnected
except ImportError:  # another ASGI server
    PeerDisconnected = ()  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)

# Close codes: HTTP's, plus 4000 (autobahn accepts only 1000 and 3000-4999).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_LARGE = 4413
CLOSE_TOO_MANY = 4429
# The session the socket was opened with is gone: reconnect, and learn from the handshake
# whether the page is still logged in (4401 if not).
CLOSE_SESSION_GONE = 4409


def user_groups(user_id: UserId, is_staff: bool, group_ids: Iterable[int] = ()) -> set[str]:
    """Return the layer groups of a user: their own, everyone's, staff's, their auth groups'."""
    names = {events.user_group(user_id), events.GROUP_ALL}
    if is_staff:
        names.add(events.GROUP_STAFF)
    names.update(events.auth_group_group(group_id) for group_id in group_ids)
    return names


def groups_for_user(user_id: UserId) -> set[str] | None:
    """Return the layer groups a user's sockets belong in, or None for a gone/inactive user."""
    user = (
        get_user_model().objects.filter(pk=user_id, is_active=True).only("pk", "is_staff").first()
    )
    if user is None:
        return None
    return user_groups(user.pk, user.is_staff, auth_group_ids(user.pk))


def connect_state(user_id: UserId) -> tuple[list[int], int, int | None, frozenset[str]]:
    """Return what a handshake needs in one trip through the thread pool: auth group ids,
    unread, last id, and the categories whose pushes this socket drops."""
    unread, last_id = badge_state(user_id)
    return auth_group_ids(user_id), unread, last_id, muted_categories(user_id)


aconnect_state = db_async(connect_state)


class PingState(NamedTuple):
    """What a ping reads: the badge, the user's groups, whether the session remains."""

    unread: int
    last_id: int | None
    groups: set[str] | None  # None: the user is gone or inactive
    session_alive: bool
    muted: frozenset[str]


def ping_state(user_id: UserId, session: Any) -> PingState:
    """Return a ping's answer and checks from one trip through the thread pool.

    Session and groups are checked on every ping because the pushes that would tell the
    socket (a logout, a membership change) are best effort: with Redis silent they are
    dropped after a deadline rather than hold up the request that made them. One statement
    reads them all (``handshake_sql.ping_rows``) where the user model has the usual
    ``is_active`` and ``is_staff`` fields; a database session is looked up in it too.
    """
    if not ping_rows_supported():
        return ping_state_by_queries(user_id, session)
    key = getattr(session, "session_key", None)
    stored = _database_session_model(session) if key is not None else None
    rows = ping_rows(user_id, stored, key)
    groups = None if rows.is_staff is None else user_groups(user_id, rows.is_staff, rows.group_ids)
    alive = bool(rows.session_exists) if stored is not None else _session_exists(session)
    return PingState(rows.unread, rows.last_id, groups, alive, muted_from(rows.bell_choices))


def ping_state_by_queries(user_id: UserId, session: Any) -> PingState:
    """``ping_state`` one query at a time, for user models ``ping_rows`` cannot read."""
    unread, last_id = badge_state(user_id)
    return PingState(
        unread,
        last_id,
        groups_for_user(user_id),
        _session_exists(session),
        muted_categories(user_id),
    )


def _database_session_model(session: Any) -> type | None:
    """The model of a session whose ``exists()`` is the database backend's own query."""
    from django.contrib.sessions.backends.db import SessionStore as DatabaseSession

    # __class__, not type(): Channels' SessionMiddleware hands the session over in a
    # LazyObject, which passes __class__ (and isinstance) through to the store.
    kind = session.__class__
    if issubclass(kind, DatabaseSession) and kind.exists is DatabaseSession.exists:
        return session.model
    return None


def _session_exists(session: Any) -> bool:
    key = getattr(session, "session_key", None)
    if key is None or isinstance(session, SignedCookieSession):
        return True  # nothing stored server-side to look up (the cookie is the session)
    return bool(session.exists(key))


aping_state = db_async(ping_state)


def preload_connect_state(user: Any) -> tuple[list[int], int, int | None, frozenset[str]]:
    """``connect_state`` for SessionAuthMiddleware's ``preload``: read with session and user."""
    return connect_state(user.pk)


def missed_with_in_flight(user_id: UserId, since: int | None) -> Any:
    """Answer a sync, including broadcasts pushed but not yet recorded.

    A socket that joined its groups just after a broadcast's push has neither the frame nor,
    yet, a row: writing this user's row first puts it in the answer.
    """
    deliveries_record_in_flight(user_id, None)
    missed = missed_since(user_id, since)
    if since is not None:
        # A page that holds a list may hold what was recalled or edited since it was
        # pushed (a push lost, or the page offline): the answer says so.
        recalled, updated = recent_changes(user_id)
        missed = replace(missed, recalled=recalled, updated=updated)
    return missed


amissed_with_in_flight = db_async(missed_with_in_flight)
agroups_for_user = db_async(groups_for_user)


class NotificationConsumer(AsyncWebsocketConsumer):
    """One browser tab's socket at /ws/notifications/.

    It has no channel of its own: layer events reach it through its process's LocalHub,
    which joins each group once per process and encodes each frame once.
    """

    channel_layer_alias = None
    user_id: UserId | None = None
    session_group: str | None = None
    closed = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.joined: set[str] = set()
        self.early: list[tuple[dict[str, Any], str | None]] | None = []
        self.muted: frozenset[str] = frozenset()
        if not handshake_origin_allowed(self.scope):
            # Closing before accept refuses the handshake (HTTP 403): another site's page
            # must not open a socket with our user's cookie, whatever wraps this consumer.
            await self.close()
            return
        if user is None or not user.is_authenticated:
            # Accept, then close with 4401, so the page can tell "log in again" from a drop.
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id = user.pk
        self.hub: LocalHub = get_hub(encode_frame)
        session = self.scope.get("session")
        session_key = getattr(session, "session_key", None)
        self.session_group = events.session_group(session_key) if session_key else None
        settings = conf.get()
        self.max_frame_bytes = settings.MAX_FRAME_BYTES
        self.max_ids = settings.MAX_IDS
        self.bucket = TokenBucket(settings.RATE_LIMIT_PER_SECOND, settings.RATE_LIMIT_BURST)
        # Auth groups, unread count and last id usually come preloaded with the session and
        # the user (one database call per handshake, see notifyproject.asgi). Whatever is
        # dispatched between that read and the joins below is not lost: a pushed frame
        # waits for hello, and the sync that follows hello finds the rest (on_sync).
        preloaded = self.scope.get("preloaded")
        if preloaded is None:
            preloaded = await aconnect_state(self.user_id)
        group_ids, unread, last_id, self.muted = preloaded
        wanted = user_groups(user.pk, user.is_staff, group_ids)
        if self.session_group:
            wanted.add(self.session_group)
        # Recorded first: whatever the join does, disconnect takes the socket out again.
        self.joined = wanted
        # Bounded (deadlines.HANDSHAKE_JOIN_SECONDS): with Redis silent, hello still comes
        # from the database, and the hub writes the joins when Redis answers again.
        if await self.hub.join_many(wanted, self) is False:
            logger.warning(
                "Greeting a socket of user %s before its groups are in Redis; the hub retries",
                self.user_id,
            )
        await self.accept()
        await self.send_json(events.hello_frame(unread, last_id))
        # Events that arrived while we joined groups and counted wait for hello, which the
        # protocol says comes first. (One already counted in hello may be pushed again: the
        # bell keeps one per id.)
        early, self.early = self.early, None
        for event, frame in early or ():
            await self.deliver(event, frame)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' own, minus a task and an ``asyncio.wait`` per frame.

        Channels waits on the server's receive and the socket's own layer channel at once,
        wrapping each in a new task for every message; this consumer has no layer channel
        (its process's hub delivers), so its one input is the server's receive. A broadcast
        answered by thousands of browsers (an ack, a seen mark each) spent an eighth of
        daphne's event loop in that wrapping.
        """
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            while True:
                await self.dispatch(await receive())

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its ``aclose_old_connections`` before every message.

        Channels 4.2+ runs ``close_old_connections`` before each handler on asgiref's one
        thread-sensitive thread: every frame of every socket of the process (an ack and a
        seen mark per browser per broadcast) queued for that one thread, a round trip
        through it each, and the GIL handed back and forth for nothing. The event loop's
        thread holds no connection here (the ORM refuses to run on it), and every database
        call of this consumer goes through ``db_async``, whose thread closes its own old
        connections before and after the call.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Channels' own also discards self.groups (none: the hub holds the memberships)
        # and takes the same thread hop as dispatch did.
        self.closed = True
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        self.closed = True
        for group in self.joined:
            await self.hub.leave(group, self)
        self.joined = set()

    async def _sync_groups(self) -> bool:
        """Join the groups the server derives for this user; leave any no longer theirs."""
        assert self.user_id is not None  # noqa: S101
        wanted = await agroups_for_user(self.user_id)
        if wanted is None:
            return False
        await self._move_to(wanted)
        return True

    async def _move_to(self, groups: set[str]) -> None:
        """Be in exactly ``groups`` (plus the session's): join the new, leave the old."""
        wanted = groups | ({self.session_group} if self.session_group else set())
        if wanted == self.joined:
            return
        added, removed = wanted - self.joined, self.joined - wanted
        # Recorded first: whatever the join does, disconnect takes the socket out again.
        self.joined = wanted
        await self.hub.join_many(added, self)
        for group in removed:
            await self.hub.leave(group, self)

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    # ---- client → server -----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.user_id is None:
            return
        if _frame_size(text_data, bytes_data) > self.max_frame_bytes:
            await self.close(code=CLOSE_TOO_LARGE)
            return
        if not self.bucket.take():
            logger.info("Closing a flooding socket of user %s", self.user_id)
            await self.close(code=CLOSE_TOO_MANY)
            return
        try:
            frame = events.parse_client_frame(text_data, max_ids=self.max_ids, zone=self.zone)
        except FrameError as exc:
            await self.send_json(events.error_frame(exc.code, exc.detail))
            return
        handler = getattr(self, f"on_{frame.type}")
        try:
            await handler(frame)
        except Exception as exc:
            # A database hiccup must not kill the socket: say so, and let the client retry.
            # (A socket the browser closed meanwhile needs no answer and no alarm.)
            # An answer to a socket that closed while we worked: the disconnect is on its way.
            if self.closed or isinstance(exc, PeerDisconnected):
                return
            if database_unavailable(exc):
                # An outage is one line per frame, not a traceback each (the listener logs it).
                logger.warning(
                    "Database unavailable for a %s frame of user %s: %s",
                    frame.type,
                    self.user_id,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            else:
                logger.exception("Handling a %s frame of user %s failed", frame.type, self.user_id)
            with contextlib.suppress(Exception):
                await self.send_json(events.error_frame("server_error", "Try again shortly."))

    async def on_ping(self, frame: ClientFrame) -> None:
        # Group memberships live in Redis: they expire, and a restarted Redis forgets them.
        # The process re-adds its groups now and then, pings being a convenient clock.
        await self.hub.refresh()
        assert self.user_id is not None  # noqa: S101
        state = await aping_state(self.user_id, self.scope.get("session"))
        if state.groups is None or not state.session_alive:
            # The user is gone or inactive, or the session was deleted (a logout whose push
            # to this socket failed: Redis down at that moment). The page may hold a newer
            # session (a password change cycles the key): reconnecting tells, and closes
            # with 4401 if it does not.
            self.user_id = None
            await self.close(code=CLOSE_SESSION_GONE)
            return
        # The pushes that move sockets between groups, or change what they drop, are best
        # effort (a user's save does not wait for a silent Redis): what is read here counts.
        await self._move_to(state.groups)
        self.muted = state.muted
        await self.send_json(events.pong_frame(state.last_id, state.unread))

    @functools.cached_property
    def zone(self) -> Any:
        """The user's time zone (the bell's ``tz`` cookie): a snooze time without an offset
        is read in it. The handshake's cookies are the socket's for its whole life, so they
        are read once, not at every frame."""
        cookies = self.scope.get("cookies") or cookies_from_headers(self.scope.get("headers", ()))
        return zone_from_cookie(cookies.get(TIMEZONE_COOKIE))

    async def on_ack(self, frame: ClientFrame) -> None:
        # Written with the acks of the process's other sockets within ACK_WINDOW, without
        # holding this socket's next frame up (batching.py).
        # watch_notifications hears "delivered" when the batch commits.
        process_marks().mark_delivered(self.user_id, frame.ids)

    async def on_read(self, frame: ClientFrame) -> None:
        await self._after_read(
            await adeliveries_mark_read(self.user_id, frame.ids, group=frame.group)
        )

    async def on_read_all(self, frame: ClientFrame) -> None:
        await self._after_read(await adeliveries_mark_all_read(self.user_id))

    async def on_seen(self, frame: ClientFrame) -> None:
        # Written with the process's other sockets' marks, within a second (batching.py).
        process_marks().mark_seen(self.user_id, frame.ids)

    async def on_archive(self, frame: ClientFrame) -> None:
        await self._after_triage(
            await adeliveries_archive(self.user_id, frame.ids, group=frame.group)
        )

    async def on_unarchive(self, frame: ClientFrame) -> None:
        await self._after_triage(
            await adeliveries_unarchive(self.user_id, frame.ids, group=frame.group)
        )

    async def on_unread(self, frame: ClientFrame) -> None:
        await self._after_triage(
            await adeliveries_mark_unread(self.user_id, frame.ids, group=frame.group)
        )

    async def on_snooze(self, frame: ClientFrame) -> None:
        await self._after_triage(
            await adeliveries_snooze(self.user_id, frame.ids, frame.until, group=frame.group)
        )

    async def _after_triage(self, result: TriageResult) -> None:
        """Tell every socket of the user (this one too) what changed, as reads are told."""
        if not result.ids:
            return
        extra = {"until": result.until} if result.until else {}
        await aemit(result.kind, user=str(self.user_id), ids=result.ids, **extra)
        try:
            await apush_triage(self.user_id, result)
            return
        except (TimeoutError, RedisError, OSError) as exc:
            logger.warning(
                "Could not tell the other tabs of user %s about %s: %r",
                self.user_id,
                result.kind,
                exc,
            )
        await self.send_json(
            events.triage_frame(result.kind, result.ids, result.unread, result.until)
        )

    async def _after_read(self, result: Any) -> None:
        if result.ids:
            await aemit("read", user=str(self.user_id), ids=result.ids)
            # Every socket of the user, this one included, hears it through the user's group.
            try:
                await apush_read(self.user_id, result)
                return
            except (TimeoutError, RedisError, OSError) as exc:
                # The read is recorded: this socket is told directly, the other tabs catch up
                # at their next pong.
                logger.warning(
                    "Could not tell the other tabs of user %s about a read: %r", self.user_id, exc
                )
        await self.send_json(events.read_frame(result.ids, result.unread))

    async def on_sync(self, frame: ClientFrame) -> None:
        missed = await amissed_with_in_flight(self.user_id, frame.since)
        answer = events.missed_frame(
            missed.notifications,
            missed.cursor,
            missed.unread,
            recalled=missed.recalled,
            updated=missed.updated,
            next_since=missed.next,
        )
        # Encoded once; only an answer over the frame limit (rare) is cut and encoded again.
        text = json.dumps(answer, separators=(",", ":"))  # ASCII: its length is its bytes
        if len(text) > self.max_frame_bytes:
            cut = events.fit_missed_frame(answer, self.max_frame_bytes, after=frame.since)
            text = json.dumps(cut, separators=(",", ":"))
        await self.send(text_data=text)

    # ---- channel layer → client (called by the process's LocalHub) ---------------------

    def _drops(self, notification: dict[str, Any]) -> bool:
        """Whether this user muted the pushed notification's category (critical: never)."""
        return notification.get("category") in self.muted and not notification.get("critical")

    async def deliver(self, event: dict[str, Any], frame: str | None) -> None:
        """Take one layer event whose socket frame, if any, is already encoded."""
        if self.closed or self.user_id is None:
            return
        if self.early is not None:  # hello not sent yet
            self.early.append((event, frame))
            return
        kind = event.get("type")
        if kind == "notify.created" and self.muted and self._drops(event["notification"]):
            return
        if kind == "notify.preferences":
            self.muted = frozenset(event.get("muted") or ())
        if (
            kind in ("notify.created", "notify.read", "notify.state", "notify.preferences")
            and frame is not None
        ):
            # Straight to the server's send: this runs once per socket per broadcast, and
            # channels' two send wrappers add nothing here but their cost.
            await self.base_send({"type": "websocket.send", "text": frame})
        elif kind == "notify.logout":
            self.user_id = None  # no frame may follow a logout
            await self.close(code=CLOSE_UNAUTHENTICATED)
        elif kind == "notify.membership" and not await self._sync_groups():
            self.user_id = None
            await self.close(code=CLOSE_UNAUTHENTICATED)


def _frame_size(text_data: str | None, bytes_data: bytes | None) -> int:
    if text_data is not None:
        return len(text_data.encode("utf-8", errors="surrogatepass"))
    return len(bytes_data or b"")
