"""daphne refuses an oversized frame from its header, before buffering a byte of it.

The consumer's own limit (MAX_FRAME_BYTES, close 4413) runs on a frame daphne has already
read whole: by default daphne (autobahn underneath) buffers up to 1 MiB per frame and per
message before the application sees it. Started with ``--websocket-max-message-size`` and
``--websocket-max-frame-size`` at the app's limit, autobahn checks the length a frame's
header declares and fails the connection at once: the payload is never read. (daphne leaves
autobahn's ``failByDrop`` on, so "fails" means the TCP connection is aborted rather than
closed with 1009; a browser reports 1006.)
These tests speak raw WebSocket to a real daphne so the header can be sent alone.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
from collections.abc import Iterator

import pytest

from notifications import conf
from notifyproject.demo.supervisor import daphne_command
from tests import processes
from tests.conftest import session_cookie
from tests.factories import UserFactory

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024
CLOSE_MESSAGE_TOO_BIG = 1009  # what autobahn sends when it closes instead of dropping


def limited_daphne_command(port: int, limit: int) -> list[str]:
    """The demo's daphne command with the frame and message limits at ``limit`` bytes.

    Given last, so they win (argparse keeps the last) whatever daphne_command already says.
    """
    return [
        *daphne_command(port),
        "--websocket-max-message-size",
        str(limit),
        "--websocket-max-frame-size",
        str(limit),
    ]


def start(port: int, args: list[str], env: dict[str, str]) -> processes.Process:
    process = processes.spawn("daphne", args, env)
    try:
        process.wait_for_port(port)
    except Exception:
        process.stop()
        raise
    return process


@pytest.fixture(scope="module")
def daphnes(live_env) -> Iterator[dict[str, int]]:
    """One daphne with the app's limit, one with daphne's default (1 MiB), for the module."""
    limit = conf.get().MAX_FRAME_BYTES
    limited_port, stock_port = processes.free_port(), processes.free_port()
    limited = start(limited_port, limited_daphne_command(limited_port, limit), live_env)
    try:
        # daphne's own defaults, spelled out: what a daphne started without the flags does.
        stock = start(stock_port, limited_daphne_command(stock_port, MIB), live_env)
    except Exception:
        limited.stop()
        raise
    yield {"limited": limited_port, "stock": stock_port, "limit": limit}
    stock.stop()
    limited.stop()


def open_socket(port: int, cookie: str) -> socket.socket:
    """Open a WebSocket by hand and read the hello frame."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /ws/notifications/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, f"closed during the handshake: {response!r}"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    opcode, payload = read_frame(sock, response.split(b"\r\n\r\n", 1)[1])
    assert opcode == 0x1 and b'"hello"' in payload, (opcode, payload)
    return sock


def read_exactly(sock: socket.socket, count: int, buffered: bytes) -> tuple[bytes, bytes]:
    data = buffered
    while len(data) < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-frame")
        data += chunk
    return data[:count], data[count:]


def read_frame(sock: socket.socket, buffered: bytes = b"") -> tuple[int, bytes]:
    """Read one unmasked server frame; return (opcode, payload)."""
    head, rest = read_exactly(sock, 2, buffered)
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        raw, rest = read_exactly(sock, 2, rest)
        length = struct.unpack("!H", raw)[0]
    elif length == 127:
        raw, rest = read_exactly(sock, 8, rest)
        length = struct.unpack("!Q", raw)[0]
    payload, _ = read_exactly(sock, length, rest)
    return opcode, payload


def frame_header(length: int, mask: bytes) -> bytes:
    """A masked final text frame's header declaring ``length`` bytes of payload."""
    if length < 126:
        return bytes([0x81, 0x80 | length]) + mask
    if length < 65536:
        return bytes([0x81, 0x80 | 126]) + struct.pack("!H", length) + mask
    return bytes([0x81, 0x80 | 127]) + struct.pack("!Q", length) + mask


def masked_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return frame_header(len(payload), mask) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


DROPPED = "dropped"


def next_server_frame(sock: socket.socket, timeout: float) -> tuple[int, bytes] | str | None:
    """Return the next frame, DROPPED if the server cut the connection, None on timeout."""
    sock.settimeout(timeout)
    try:
        return read_frame(sock)
    except TimeoutError:
        return None
    except (ConnectionError, OSError):
        return DROPPED
    finally:
        sock.settimeout(10)


def refused(outcome: tuple[int, bytes] | str | None) -> bool:
    """Whether the server failed the connection: aborted, or closed with 1009."""
    if outcome == DROPPED:
        return True
    if isinstance(outcome, tuple) and outcome[0] == 0x8:
        return struct.unpack("!H", outcome[1][:2])[0] == CLOSE_MESSAGE_TOO_BIG
    return False


def test_a_1_mib_frame_is_refused_from_its_header_alone(daphnes):
    sock = open_socket(daphnes["limited"], session_cookie(UserFactory()))
    try:
        # Only the header: 1 MiB announced, not one byte of it sent.
        sock.sendall(frame_header(MIB, os.urandom(4)))
        outcome = next_server_frame(sock, timeout=5)
        assert refused(outcome), outcome
    finally:
        sock.close()
    # The process is unharmed: the next socket opens and says hello.
    open_socket(daphnes["limited"], session_cookie(UserFactory())).close()


def test_one_byte_over_the_limit_is_refused_and_a_frame_at_the_limit_is_read(daphnes):
    limit = daphnes["limit"]
    cookie = session_cookie(UserFactory())
    sock = open_socket(daphnes["limited"], cookie)
    try:
        # A frame of exactly the limit reaches the consumer, which answers (here an error
        # frame for an unknown type): the socket stays open.
        prefix, suffix = b'{"type": "nothing", "pad": "', b'"}'
        body = prefix + b"x" * (limit - len(prefix) - len(suffix)) + suffix
        sock.sendall(masked_frame(body))
        reply = next_server_frame(sock, timeout=5)
        assert isinstance(reply, tuple) and reply[0] == 0x1, reply
    finally:
        sock.close()
    sock = open_socket(daphnes["limited"], cookie)
    try:
        sock.sendall(frame_header(limit + 1, os.urandom(4)))
        outcome = next_server_frame(sock, timeout=5)
        assert refused(outcome), outcome
    finally:
        sock.close()


def test_a_stock_daphne_waits_to_buffer_the_1_mib_frame(daphnes):
    """What the flags change: without them daphne reads the whole megabyte first."""
    sock = open_socket(daphnes["stock"], session_cookie(UserFactory()))
    try:
        sock.sendall(frame_header(MIB, os.urandom(4)))
        assert next_server_frame(sock, timeout=1.5) is None  # still reading, buffering
    finally:
        sock.close()
