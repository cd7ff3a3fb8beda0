"""Every exception mimc-rx raises, in one tree.

::

    MimcError
    ├── ProtocolError
    │   ├── LocalProtocolError      you called the API in a way the protocol forbids
    │   └── RemoteProtocolError     the peer sent bytes we cannot accept
    │       ├── FrameError          a frame is short, mis-sized, mis-checksummed or unparseable
    │       └── PacketError         a payload inside a good frame is not a valid message
    ├── NotLoggedIn                 a send or command needs a bound session (a LocalProtocolError)
    ├── ConnectionClosed            the websocket went away; the reason is in the fields
    ├── LoginError                  the server refused BIND (err_type / err_reason / err_desc)
    ├── TokenError                  the token fetcher failed or returned junk
    ├── SendTimeout                 no server ack in time (also a TimeoutError)
    ├── PayloadTooLarge             a payload over the protocol limit (also a ValueError)
    ├── OutboxFull                  too many stored sends wait for their ack; nothing was sent
    └── ServerError                 the local server or an HTTP API answered with an error

Exceptions carry structured fields and build their message from them, so a notebook shows
something readable and a program can branch on the fields.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "FrameError",
    "LocalProtocolError",
    "LoginError",
    "MimcError",
    "NotLoggedIn",
    "OutboxFull",
    "PacketError",
    "PayloadTooLarge",
    "ProtocolError",
    "RemoteProtocolError",
    "SendTimeout",
    "ServerError",
    "TokenError",
]


class MimcError(Exception):
    """Base class of every error raised by mimc-rx."""


class ProtocolError(MimcError):
    """The MIMC protocol was violated, by us or by the peer."""


class LocalProtocolError(ProtocolError):
    """This side used the protocol wrongly (for example, sending before login)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot accept."""


class FrameError(RemoteProtocolError):
    """A web ("V5") frame could not be parsed.

    Attributes:
        reason: a short machine-friendly reason, e.g. ``"too-short"`` or ``"bad-checksum"``.
        detail: a human explanation.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class PacketError(RemoteProtocolError):
    """A message inside a well-formed frame could not be decoded (bad protobuf, bad UTF-8).

    One bad packet does not end a session: the sessions turn this into a ``BadPacket`` event.

    Attributes:
        reason: a short machine-friendly reason, e.g. ``"bad-protobuf"``.
        detail: a human explanation.
        packet_id: the packet id, when the envelope was readable enough to carry one.
    """

    def __init__(self, reason: str, detail: str = "", packet_id: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.packet_id = packet_id
        super().__init__(f"{reason}: {detail}" if detail else reason)


class NotLoggedIn(LocalProtocolError):
    """A send or command needs a logged-in session."""

    def __init__(self, action: str = "send") -> None:
        self.action = action
        super().__init__(f"cannot {action}: the user is not logged in")


class ConnectionClosed(MimcError):
    """The connection to the server closed.

    Attributes:
        reason: why it closed, as reported by the transport or the protocol.
        code: the websocket close code, when there was one.
    """

    def __init__(self, reason: str, code: int | None = None) -> None:
        self.reason = reason
        self.code = code
        suffix = f" (code {code})" if code is not None else ""
        super().__init__(f"connection closed: {reason}{suffix}")


class LoginError(MimcError):
    """The server refused the login (BIND result false, docs/protocol.md 6.4)."""

    def __init__(self, err_type: str, err_reason: str, err_desc: str) -> None:
        self.err_type = err_type
        self.err_reason = err_reason
        self.err_desc = err_desc
        super().__init__(f"login refused: {err_type}/{err_reason}: {err_desc}")


class TokenError(MimcError):
    """The token fetcher failed or its answer was unusable (docs/protocol.md 6.1 step 5)."""

    def __init__(self, err_type: str, err_reason: str, err_desc: str = "") -> None:
        self.err_type = err_type
        self.err_reason = err_reason
        self.err_desc = err_desc
        super().__init__(f"{err_type}: {err_reason}" + (f" ({err_desc})" if err_desc else ""))


class SendTimeout(MimcError, TimeoutError):
    """No server ack arrived for a packet in time."""

    def __init__(self, packet_id: str, timeout: float) -> None:
        self.packet_id = packet_id
        self.timeout = timeout
        super().__init__(f"no server ack for packet {packet_id} within {timeout:g} s")


class PayloadTooLarge(MimcError, ValueError):
    """A payload is over the protocol limit (docs/protocol.md 6.16); nothing was sent."""

    def __init__(self, size: int, limit: int, unit: str = "characters") -> None:
        self.size = size
        self.limit = limit
        self.unit = unit
        super().__init__(f"payload of {size} {unit} is over the limit of {limit} {unit}")


class OutboxFull(MimcError):
    """Too many stored sends wait for their server ack; this one was not sent.

    The outbox keeps every stored message until the server acks it, to send it again after a
    reconnect (``SessionMemory.outbox``). It is bounded: when it is full, the application is
    sending faster than the server acks (or the server is unreachable) and should wait for
    acks (``await user.ack(pid)``) before sending more.
    """

    def __init__(self, waiting: int, limit: int) -> None:
        self.waiting = waiting
        self.limit = limit
        super().__init__(f"{waiting} stored sends wait for their ack (the outbox holds {limit})")


class ServerError(MimcError):
    """An HTTP API of the server answered with an error (docs/protocol.md 8)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"server answered {code}: {message}")
