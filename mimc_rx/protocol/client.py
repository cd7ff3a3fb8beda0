"""``ClientSession``: the client side of the MIMC web protocol, without I/O.

Theory of operation. The session behaves on the wire like the official web SDK 1.0.3
(docs/protocol.md 6) and speaks Python values to its driver (docs/sansio.md):

* ``login(token_answer)`` checks the token service's answer (6.1 step 5) and queues CONN. The
  CONN reply brings the challenge; the session signs and sends BIND (6.3) and starts the PING
  timer. The BIND reply becomes a ``StatusChange``; success also starts the UC PING timer.
* c2s SECMSG payloads go out **unencrypted** with no ``cipher`` flag, as the web SDK sends
  them (5, 10.3); s2c SECMSG payloads are always RC4-decrypted with the key of that frame.
* A COMPOUND for another uuid/resource is dropped without ack (6.8, 10.5). Otherwise its
  messages are emitted, then SEQUENCE_ACK(maxSequence) is queued (the driver publishes events
  before it writes, so nothing is acked that the application was not given), and a message whose
  sequence was already seen is acked but not emitted; the seen-set is shared by P2P and P2T
  and bounded (``dedup_window``) where the SDK's grows forever (10.6). It lives in the
  ``SessionMemory`` the driver passes in, so it outlives the connection: a redelivery on the
  next connection is dropped too.
* A COMPOUND with EXCEED_COUNT_LIMIT is a pull notification (6.10): the first one for a given
  minSequence is emitted (and acked unless ``ack_pull_notifications=False``); a repeat with the
  same minSequence acks the remembered maxSequence silently, as the SDK does (10.16).
* Auto-pull (``auto_pull=True``, 6.10/6.11): a pull notification is answered with PULL at once,
  and each pulled COMPOUND that stops short of the notified maxSequence with another PULL, until
  the range is covered or an answer brings nothing of it. The range is then not acked on notice
  (the PULL would find nothing pending), and a repeated notice is answered with PULL, not with
  the SDK's blind ack of the old maxSequence: auto-pull acks only what it emitted.
* The outbox (``SessionMemory.outbox``): a stored P2P/P2T send stays there, as the bytes that
  went out, until its PACKET_ACK. Once bound, a session first sends again every entry an
  earlier connection left unacked, oldest first, under the same packet id (the server answers a
  packet id it already stored with the first ack); entries older than ``max_age`` are dropped
  with ``SendExpired``. A full outbox refuses the send (``OutboxFull``) before anything is
  queued. Unstored sends never enter it (at most once). An ack whose packet id was already
  acked is not emitted again: one ``ServerAck`` per send.
* Unlimited groups (6.12): JOIN/QUIT/MESSAGE go out as UC packets; MESSAGE_LIST is acked per
  topic before its messages are emitted; UC PING lists the joined topics every
  ``uc_ping_interval``. Unlike the SDK (10.10) the joined list has no duplicates and forgets
  topics that were left or dismissed. The list lives in the ``SessionMemory``: once bound, a
  session joins again every topic an earlier connection of the user was in; a logout forgets
  them.

Deviation from the SDK: after a failed BIND the session closes (``close_requested``), where
the SDK keeps a useless socket open and PINGing (6.4); a new login needs a new session.

Every transition is in ``_TRANSITIONS`` (frames) and ``_COMMAND_STATES`` (commands).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

from mimc_rx.errors import (
    FrameError,
    LocalProtocolError,
    NotLoggedIn,
    PacketError,
    PayloadTooLarge,
    TokenError,
)
from mimc_rx.protocol import codec, codec_uc, codec_wire
from mimc_rx.protocol.codec import (
    DEFAULT_SERVER,
    Cmd,
    Header,
    HeaderTemplate,
    MIMCGroup,
    MIMCPacket,
    WireUser,
)
from mimc_rx.protocol.codec_base import constructor
from mimc_rx.protocol.crypto import PayloadCipher, bind_signature
from mimc_rx.protocol.events import (
    BadPacket,
    ClientEvent,
    Kicked,
    P2PMessage,
    P2TMessage,
    PacketId,
    ProtocolFailure,
    PullNotification,
    SendExpired,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)
from mimc_rx.protocol.framing import Frame, frame_bytes, parse_frame, serialize_frame
from mimc_rx.protocol.ids import WebIdFactory
from mimc_rx.protocol.memory import DEFAULT_DEDUP_WINDOW, SessionMemory
from mimc_rx.protocol.token import TokenInfo, parse_token_answer

__all__ = [
    "P2P_TEXT_LIMIT",
    "UC_TEXT_LIMIT",
    "ClientSession",
    "ClientState",
    "check_payload",
]

P2P_TEXT_LIMIT: Final = 15360
"""P2P/P2T text limit of SDK 1.0.2+, in UTF-16 code units (docs/protocol.md 6.16)."""
UC_TEXT_LIMIT: Final = 10240
"""Unlimited-group text limit, in UTF-16 code units (6.16)."""


class ClientState(enum.Enum):
    """Where the client is: IDLE -> CONNECTING -> BINDING -> BOUND -> CLOSED."""

    IDLE = "idle"  # nothing sent yet
    CONNECTING = "connecting"  # CONN sent, waiting for the challenge
    BINDING = "binding"  # BIND sent, waiting for the result
    BOUND = "bound"  # logged in
    CLOSED = "closed"  # kicked, failed, or the transport closed


def check_payload(payload: bytes | bytearray | memoryview | str, text_limit: int) -> bytes:
    """Apply the limits of docs/protocol.md 6.16 and return the bytes to send.

    The one place the payload limits are checked: every ``send_*`` command calls it before
    anything is queued. Text counts UTF-16 code units (as the web SDK does, 10.18) and goes
    out as UTF-8 (emoji included, unlike the web SDK, 10.7); bytes may be up to three times
    ``text_limit`` long, the UTF-8 size of the longest text the SDK would send.

    Raises:
        PayloadTooLarge: over the limit; nothing is sent.
        TypeError: neither text nor bytes.
    """
    if isinstance(payload, str):
        data = payload.encode("utf-8", errors="surrogatepass")
        # Outside the BMP a code point is two UTF-16 units (and four UTF-8 bytes); text of one
        # UTF-8 byte per character is one unit per character, so the common case skips a count.
        if len(data) == len(payload):
            units = len(payload)
        else:
            units = len(payload.encode("utf-16-le", errors="surrogatepass")) // 2
        if units > text_limit:
            raise PayloadTooLarge(units, text_limit, "UTF-16 code units")
        return data
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be str or bytes, not {type(payload).__name__}")
    data = bytes(payload)
    if len(data) > 3 * text_limit:
        raise PayloadTooLarge(len(data), 3 * text_limit, "bytes")
    return data


class ClientSession:
    """The sans-I/O MIMC client (docs/sansio.md). Bytes and time in; bytes and events out.

    Args:
        app_id: the app id; the token answer's ``appId`` must match it (6.1 step 5).
        app_account: the account; the token answer's ``appAccount`` must match it.
        resource: this client instance's resource (6.14).
        ids: header/packet id factory; default ``WebIdFactory`` (6.2).
        ping_interval: seconds between keep-alive PINGs, from the CONN reply on (6.5).
        uc_ping_interval: seconds between UC PINGs while bound and in a topic (6.12).
        ack_pull_notifications: ack a pull notification's range at once (6.10); with False,
            the application acks it later with ``ack_sequence``. Default: ack unless
            ``auto_pull``.
        dedup_window: the dedup window of a fresh memory; give it only without ``memory``.
        memory: what the user remembers across connections (delivered sequences, joined
            unlimited groups); pass the same ``SessionMemory`` to each new session of a user.
            Default: a fresh one, for a session that stands alone.
        auto_pull: answer a pull notification with PULL until the notified range arrived
            (6.10, 6.11), so an offline backlog arrives by itself.
    """

    def __init__(
        self,
        app_id: int,
        app_account: str,
        resource: str,
        *,
        ids: Callable[[], str] | None = None,
        ping_interval: float = 30.0,
        uc_ping_interval: float = 10.0,
        ack_pull_notifications: bool | None = None,
        dedup_window: int | None = None,
        memory: SessionMemory | None = None,
        auto_pull: bool = False,
    ) -> None:
        if memory is not None and dedup_window is not None:
            raise ValueError("give dedup_window or memory, not both (the memory has its window)")
        self._app_id = int(app_id)
        self._app_account = app_account
        self._resource = resource
        self._ids: Callable[[], str] = ids or WebIdFactory()
        self._ping_interval = ping_interval
        self._uc_ping_interval = uc_ping_interval
        self._auto_pull = auto_pull
        # With auto-pull the range is not acked on notice: the PULL would find nothing pending.
        self._ack_pull = not auto_pull if ack_pull_notifications is None else ack_pull_notifications
        self._state = ClientState.IDLE
        self._token: TokenInfo | None = None
        self._cipher: PayloadCipher | None = None  # the key decoded once (docs/protocol.md 5)
        self._secmsg_header: HeaderTemplate | None = None  # c2s SECMSG headers, from login on
        self._me_cache: WireUser | None = None
        self._send_template: codec_wire.SendTemplate | None = None  # P2P/P2T packets, from login
        self._challenge: str | None = None
        self._events: list[ClientEvent] = []
        self._out: list[bytes] = []
        self._close_requested = False
        self._ping_at: float | None = None
        self._uc_ping_at: float | None = None
        if memory is None:
            memory = SessionMemory(DEFAULT_DEDUP_WINDOW if dedup_window is None else dedup_window)
        self._memory = memory
        self._last_min: int | None = None  # 6.10 lastMin / lastMax, "-1" in the SDK
        self._last_max: int | None = None
        self._pull_target: int | None = None  # auto-pull: the notified maxSequence still due

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def is_logged_in(self) -> bool:
        return self._state is ClientState.BOUND

    @property
    def close_requested(self) -> bool:
        """True once the session wants the transport closed (KICK, failed BIND, bad frame)."""
        return self._close_requested

    @property
    def app_id(self) -> int:
        return self._app_id

    @property
    def app_account(self) -> str:
        return self._app_account

    @property
    def resource(self) -> str:
        return self._resource

    @property
    def uuid(self) -> int | None:
        """The token's ``miUserId`` once ``login`` accepted a token answer."""
        return self._token.uuid if self._token else None

    @property
    def token(self) -> str | None:
        return self._token.token if self._token else None

    @property
    def package(self) -> str | None:
        return self._token.app_package if self._token else None

    @property
    def token_info(self) -> TokenInfo | None:
        """The whole parsed token answer (security key included)."""
        return self._token

    @property
    def uc_topics(self) -> tuple[int, ...]:
        """The unlimited-group topics listed in UC PING, oldest first."""
        return self._memory.uc_topics

    @property
    def memory(self) -> SessionMemory:
        """What this session shares with the user's other sessions (see ``SessionMemory``)."""
        return self._memory

    @property
    def auto_pull(self) -> bool:
        """Whether a pull notification is answered with PULL by the session itself."""
        return self._auto_pull

    # ------------------------------------------------------------------ driver API

    def events_received(self) -> list[ClientEvent]:
        """The events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        """The frames to write since the last call, one websocket binary message each."""
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        """When ``expire`` must be called next (PING and UC PING timers), or None."""
        if self._state is ClientState.CLOSED:
            return None
        deadlines = [t for t in (self._ping_at, self._uc_ping_at) if t is not None]
        return min(deadlines) if deadlines else None

    def expire(self, now: float) -> None:
        """Fire the timers that are due: keep-alive PING (6.5) and UC PING (6.12)."""
        if self._state is ClientState.CLOSED:
            return
        if self._ping_at is not None and now >= self._ping_at:
            self._send(self._header(Cmd.PING, self._ids()))  # 6.5: empty XMMsgPing
            self._ping_at = now + self._ping_interval
        if self._uc_ping_at is not None and now >= self._uc_ping_at:
            topics = self._memory.uc_topics
            if topics:
                groups = tuple(MIMCGroup(app_id=self._app_id, topic_id=t) for t in topics)
                self._send_uc(codec_uc.UCPing(groups=groups))
            self._uc_ping_at = now + self._uc_ping_interval

    def receive_eof(self) -> None:
        """The transport closed: the session is over (the web SDK marks itself logged out)."""
        self._enter_closed()

    def receive_data(self, data: bytes, now: float) -> None:
        """Handle one websocket message. Never raises on peer bytes (STYLE.md 3)."""
        if self._state is ClientState.CLOSED:
            return
        try:
            frame = parse_frame(data)
        except FrameError as exc:
            self._fail(exc.reason, exc.detail)
            return
        cmd = frame.header.cmd
        if cmd == Cmd.PING:
            return  # 6.5, 9.4: a s2c PING is ignored
        handler = _TRANSITIONS.get((self._state, cmd))
        if handler is None:
            self._events.append(
                BadPacket(reason="unexpected-cmd", detail=f"{cmd!r} while {self._state.name}")
            )
            return
        try:
            handler(self, frame, now)
        except PacketError as exc:
            self._events.append(
                BadPacket(reason=exc.reason, packet_id=_pid(exc.packet_id), detail=exc.detail)
            )
        except Exception as exc:  # a bug of ours must not escape as the peer's fault
            self._fail("internal-error", f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ commands

    def login(self, token_answer: Mapping[str, Any] | str | bytes, now: float) -> None:
        """Check the token service's answer (6.1 step 5) and queue CONN.

        A bad answer emits ``StatusChange(online=False, ...)`` with the web SDK's strings and
        leaves the session IDLE. When already logged in, re-emits ``StatusChange(True)``.
        """
        if self._state is ClientState.BOUND:
            self._events.append(StatusChange(online=True))  # 6.1 step 4
            return
        self._require("login")
        try:
            self._token = parse_token_answer(
                token_answer, app_id=self._app_id, app_account=self._app_account
            )
        except TokenError as exc:
            self._events.append(
                StatusChange(
                    online=False,
                    err_type=exc.err_type,
                    err_reason=exc.err_reason,
                    err_desc=exc.err_desc,
                )
            )
            return
        self._cipher = PayloadCipher(self._token.security_key_b64)  # checked base64 by the parse
        self._me_cache = None
        self._secmsg_header = HeaderTemplate(self._header(Cmd.SECMSG, ""))
        self._send_template = codec_wire.SendTemplate(
            codec_wire.encode_user(
                self._app_id, self._app_account, self._token.uuid, self._resource
            ),
            self._app_id,
            self._token.app_package,
            p2p_type=_P2P,
            p2t_type=_P2T,
        )
        # 6.1 step 1, 4.1: the CONN header carries only server, cmd and id.
        header = Header(server=DEFAULT_SERVER, cmd=Cmd.CONN, id=self._ids())
        self._send(header, codec.encode_message(codec.ConnRequest()))
        self._state = ClientState.CONNECTING

    def send_p2p(
        self,
        to_account: str,
        payload: bytes | str,
        *,
        is_store: bool = True,
        biz_type: str = "",
        now: float,
    ) -> PacketId:
        """Send a one-to-one message (6.6); returns its packet id, which the ack will carry.

        A stored message (``is_store``) stays in the outbox until its ack (module docstring).

        Raises:
            OutboxFull: a stored send while the outbox is full; nothing is sent.
        """
        self._require("send_p2p")
        data = check_payload(payload, P2P_TEXT_LIMIT)
        if is_store:
            self._memory.outbox.check_room()
        # 6.6: to = appId + account; bizType absent on the wire when not given. Written
        # straight from the fields (codec_wire.SendTemplate: the bytes of the MIMCP2PMessage).
        assert self._send_template is not None
        packet_id = self._ids()
        plain = self._send_template.p2p(packet_id, to_account, data, is_store, biz_type or None)
        return self._send_plain(packet_id, plain, now if is_store else None)

    def send_p2t(
        self,
        topic_id: int,
        payload: bytes | str,
        *,
        is_store: bool = True,
        biz_type: str = "",
        now: float,
    ) -> PacketId:
        """Send a group message (6.7); returns its packet id. Stored ones use the outbox too."""
        self._require("send_p2t")
        data = check_payload(payload, P2P_TEXT_LIMIT)
        if is_store:
            self._memory.outbox.check_room()
        assert self._send_template is not None
        packet_id = self._ids()
        plain = self._send_template.p2t(packet_id, topic_id, data, is_store, biz_type or None)
        return self._send_plain(packet_id, plain, now if is_store else None)

    def send_uc(
        self,
        topic_id: int,
        payload: bytes | str,
        *,
        is_store: bool = False,
        biz_type: str = "",
        now: float,
    ) -> PacketId:
        """Send an unlimited-group message (6.12).

        Returns the UCPacket id, as the web SDK does; receivers see the inner message's id,
        which is one id older (10.9).
        """
        self._require("send_uc")
        data = check_payload(payload, UC_TEXT_LIMIT)
        message = codec_uc.UCMessageBody(
            group=MIMCGroup(app_id=self._app_id, topic_id=topic_id),
            payload=data,
            is_store=is_store,
            user=self._me(),
            packet_id=self._ids(),
            biz_type=biz_type or None,
        )
        return self._send_uc(message)

    def join_uc(self, topic_id: int, now: float) -> PacketId:
        """Ask to join an unlimited group; the answer is a ``UCJoinResult`` (6.12)."""
        self._require("join_uc")
        return self._send_uc(codec_uc.UCJoin(group=self._uc_group(topic_id)))

    def quit_uc(self, topic_id: int, now: float) -> PacketId:
        """Ask to leave an unlimited group; the answer is a ``UCQuitResult`` (6.12)."""
        self._require("quit_uc")
        return self._send_uc(codec_uc.UCQuit(group=self._uc_group(topic_id)))

    def add_uc_topics(self, topic_ids: Iterable[int]) -> None:
        """Add topics joined earlier (the REST topic list, 8.2) to the UC PING list (6.12)."""
        self._memory.remember_uc_topics(topic_ids)

    def pull(self, now: float) -> PacketId:
        """Ask the server for pending messages (PULL, 6.11); they arrive as COMPOUND."""
        self._require("pull")
        return self._send_pull()

    def ack_sequence(self, sequence: int, now: float) -> None:
        """Send SEQUENCE_ACK: delivered up to ``sequence`` (6.9), e.g. after a pull notice."""
        self._require("ack_sequence")
        self._send_sequence_ack(sequence)

    def logout(self, now: float) -> None:
        """Send UBND (6.13); the server closes the connection.

        The memory forgets the joined unlimited groups, so a later login does not join them
        again by itself (after a logout the application joins what it wants, as with the SDK).
        """
        if self._state in (ClientState.IDLE, ClientState.CLOSED):
            return
        self._memory.forget_uc_topics()
        self._send(self._header(Cmd.UBND, self._ids()))

    # ------------------------------------------------------------------ frame handlers

    def _on_conn_reply(self, frame: Frame, now: float) -> None:
        assert self._token is not None
        try:
            reply = codec.decode_message(codec.ConnResponse, frame.payload)
        except PacketError as exc:
            self._fail("bad-conn-reply", exc.detail)
            return
        if not reply.challenge:
            self._fail("bad-conn-reply", "the CONN reply carries no challenge")
            return
        self._challenge = reply.challenge  # 6.1 step 3
        self._ping_at = now + self._ping_interval  # 6.1 step 7, 10.14: PINGs start here
        header = self._header(Cmd.BIND, self._ids())
        assert header.id is not None
        sig = bind_signature(  # 6.3
            security_key_b64=self._token.security_key_b64,
            challenge=reply.challenge,
            chid=self._token.chid,
            uuid=self._token.uuid,
            resource=self._resource,
            header_id=header.id,
            token=self._token.token,
        )
        bind = codec.BindRequest(token=self._token.token, sig=sig)  # kick present, empty (10.1)
        self._send(header, codec.encode_message(bind))
        self._state = ClientState.BINDING

    def _on_bind_reply(self, frame: Frame, now: float) -> None:
        try:
            reply = codec.decode_message(codec.BindResponse, frame.payload)
        except PacketError as exc:
            self._fail("bad-bind-reply", exc.detail)
            return
        status = StatusChange(
            online=bool(reply.result),
            err_type=reply.error_type or "",  # 6.4: absent strings reach the callback as ""
            err_reason=reply.error_reason or "",
            err_desc=reply.error_desc or "",
        )
        self._events.append(status)
        if status.online:
            self._state = ClientState.BOUND
            self._uc_ping_at = now + self._uc_ping_interval  # 6.4: UC PING timer starts
            self._resend_outbox(now)
            # 6.12: a new connection is in no unlimited group; join again the ones an earlier
            # connection of this user was in (the answers come as UCJoinResult).
            for topic_id in sorted(self._memory.uc_topics):
                self._send_uc(codec_uc.UCJoin(group=self._uc_group(topic_id)))
        else:
            self._enter_closed()

    def _resend_outbox(self, now: float) -> None:
        # The stored sends an earlier connection left unacked, oldest first, under their
        # packet ids (6.6: header id = packet id); the server's sender dedup acks a packet it
        # already stored with its first ack instead of storing it twice.
        outbox = self._memory.outbox
        for entry in outbox.expire(now):
            self._events.append(
                SendExpired(packet_id=PacketId(entry.packet_id), age=now - entry.queued_at)
            )
        for entry in outbox:
            self._send_secmsg(entry.packet_id, entry.plain)

    def _on_kick(self, frame: Frame, now: float) -> None:
        # 6.13: the web SDK ignores the payload and closes; we report its strings too.
        try:
            reply = codec.decode_message(codec.BindResponse, frame.payload)
        except PacketError:
            reply = codec.BindResponse()
        self._events.append(
            Kicked(
                err_type=reply.error_type or "",
                err_reason=reply.error_reason or "",
                err_desc=reply.error_desc or "",
            )
        )
        self._enter_closed()

    def _on_secmsg(self, frame: Frame, now: float) -> None:
        assert self._cipher is not None
        # 5: every s2c SECMSG payload is RC4 with this frame's header id (the SDK ignores
        # the cipher flag, so do we).
        plain = self._cipher(frame.header.id or "", frame.payload)
        # The hot path: a PACKET_ACK, or a COMPOUND of P2P/P2T messages for us, is read straight
        # into the events; anything else (or unusual) through the generic decoder, which gives
        # the exact error. Both feed the same rules below (tests/protocol/test_codec_fast.py).
        fields = codec.decode_s2c_packet(plain)
        if fields is not None:
            if fields[0] == _PACKET_ACK:
                _, packet_id, sequence, timestamp, err_msg = cast(codec.AckFields, fields)
                self._on_ack(packet_id, sequence, timestamp, err_msg)
                return
            _, uuid, resource, max_sequence, entries = cast(codec.ListFields, fields)
            assert self._token is not None
            if uuid == self._token.uuid and resource == self._resource:
                self._on_deliveries(entries, max_sequence)
                return
        packet = codec.decode_packet(plain)
        match packet.body:
            case codec.MIMCPacketAck() as ack:
                self._on_ack(
                    ack.packet_id or "", ack.sequence or 0, ack.timestamp or 0, ack.error_msg or ""
                )
            case codec.MIMCPacketList() as plist:
                self._on_packet_list(packet, plist)
            case codec_uc.UCPacket() as uc:
                self._on_uc_packet(packet, uc)
            case _:
                pass  # 6.8, 3: other types are ignored by the SDK

    def _on_ack(self, packet_id: str, sequence: int, timestamp: int, err_msg: str) -> None:
        if self._memory.first_ack(packet_id):  # one ServerAck per send
            self._events.append(_make_ack(PacketId(packet_id), sequence, timestamp, err_msg))

    def _on_deliveries(self, entries: list[codec.DeliveryFields], max_sequence: int | None) -> None:
        # _on_packet_list for a list of P2P/P2T messages for us, read by the fast path: the
        # same rules (dedup by sequence, emit, then SEQUENCE_ACK, then auto-pull) on flat values.
        first, events = self._memory.first_delivery, self._events
        for entry in entries:
            ptype, packet_id, sequence, timestamp, account, resource, to_account = entry[:7]
            if not first(sequence):  # 6.8 step 4, 5: a duplicate is acked, not emitted
                continue
            if ptype == _P2P:
                events.append(
                    _make_p2p(
                        PacketId(packet_id),
                        sequence,
                        timestamp,
                        account,
                        resource,
                        to_account,
                        entry[7],
                        entry[9],
                        entry[10],
                        entry[11],
                    )
                )
            else:
                events.append(
                    _make_p2t(
                        PacketId(packet_id),
                        sequence,
                        timestamp,
                        account,
                        resource,
                        entry[8],
                        entry[9],
                        entry[10],
                        entry[11],
                    )
                )
        self._after_list(max_sequence, [entry[2] for entry in entries])

    def _on_packet_list(self, packet: MIMCPacket, plist: codec.MIMCPacketList) -> None:
        assert self._token is not None
        # 6.8 step 2, 10.5: a list for another uuid/resource is dropped without an ack.
        if plist.uuid != self._token.uuid or (plist.resource or "") != self._resource:
            self._events.append(
                BadPacket(
                    reason="not-for-us",
                    packet_id=_pid(packet.packet_id),
                    detail=f"COMPOUND for {plist.uuid}/{plist.resource}",
                )
            )
            return
        if plist.status == codec.PushStatus.EXCEED_COUNT_LIMIT:
            self._on_pull_notification(plist)  # 6.8 step 3
            return
        for item in plist.packets:
            self._on_delivered(item)
        self._after_list(plist.max_sequence, [item.sequence or 0 for item in plist.packets])

    def _after_list(self, max_sequence: int | None, sequences: list[int]) -> None:
        # 6.8 step 4: the SDK queues the ack first; here it is queued once every packet became
        # an event, so an internal failure half-way acks nothing. On the wire the order is the
        # same: the driver publishes the events before it writes the ack (docs/sansio.md).
        if max_sequence is not None:
            self._send_sequence_ack(max_sequence)
        if self._pull_target is not None:
            self._continue_pull(sequences)

    def _continue_pull(self, sequences: list[int]) -> None:
        # 6.11: one PULL answers at most the server's page size. Pull again while an answer
        # brings part of the notified range; stop once it is covered or nothing of it came.
        target = self._pull_target
        assert target is not None
        pulled = max((seq for seq in sequences if seq <= target), default=None)
        if pulled is None:
            return
        if pulled >= target:
            self._pull_target = None
        else:
            self._send_pull()

    def _on_pull_notification(self, plist: codec.MIMCPacketList) -> None:
        low, high = plist.min_sequence or 0, plist.max_sequence or 0
        if low == self._last_min:
            if self._auto_pull:
                # Auto-pull never acks what it has not emitted: a repeat means "still there".
                self._pull_target = high
                self._send_pull()
            elif self._last_max is not None:
                # 6.10, 10.16: a repeat acks the remembered maxSequence and stays silent.
                self._send_sequence_ack(self._last_max)
            return
        self._events.append(PullNotification(min_sequence=low, max_sequence=high))
        if self._ack_pull:
            self._send_sequence_ack(high)
        self._last_min, self._last_max = low, high
        if self._auto_pull:
            self._pull_target = high  # 6.11: fetch the range now, page by page
            self._send_pull()

    def _on_delivered(self, item: MIMCPacket) -> None:
        body = item.body
        sequence = item.sequence or 0
        packet_id = PacketId(item.packet_id or "")
        match body:
            case codec.OpaqueBody(error=error) if error:
                self._events.append(
                    BadPacket(reason="bad-packet", packet_id=packet_id, detail=error)
                )
            case codec.MIMCP2PMessage() if self._memory.first_delivery(sequence):  # 6.8 step 4, 5
                sender, to = body.sender or WireUser(), body.to or WireUser()
                self._events.append(
                    P2PMessage(
                        packet_id=packet_id,
                        sequence=sequence,
                        timestamp=item.timestamp or 0,
                        from_account=sender.app_account or "",
                        from_resource=sender.resource or "",
                        to_account=to.app_account or "",
                        to_resource=to.resource or "",
                        payload=body.payload or b"",
                        biz_type=body.biz_type or "",
                        is_store=bool(body.is_store),
                    )
                )
            case codec.MIMCP2TMessage() if self._memory.first_delivery(sequence):
                sender, group = body.sender or WireUser(), body.to or MIMCGroup()
                self._events.append(
                    P2TMessage(
                        packet_id=packet_id,
                        sequence=sequence,
                        timestamp=item.timestamp or 0,
                        from_account=sender.app_account or "",
                        from_resource=sender.resource or "",
                        topic_id=group.topic_id or 0,
                        payload=body.payload or b"",
                        biz_type=body.biz_type or "",
                        is_store=bool(body.is_store),
                    )
                )
            case _:
                pass  # a duplicate (acked above, not emitted) or a type the SDK ignores

    def _on_uc_packet(self, packet: MIMCPacket, uc: codec_uc.UCPacket) -> None:
        assert self._token is not None
        user = uc.user or WireUser()
        # 6.12, 10.11: the SDK drops a UC packet only when uuid AND resource both differ.
        if user.uuid != self._token.uuid and (user.resource or "") != self._resource:
            self._events.append(
                BadPacket(
                    reason="not-for-us",
                    packet_id=_pid(uc.packet_id),
                    detail=f"UC packet for {user.uuid}/{user.resource}",
                )
            )
            return
        body = uc.body
        match body:
            case codec_uc.UCJoinResp():
                topic = _topic(body.group)
                if not body.code:
                    self._memory.remember_uc_topics((topic,))
                self._events.append(
                    UCJoinResult(topic_id=topic, code=body.code or 0, message=body.message or "")
                )
            case codec_uc.UCQuitResp():
                topic = _topic(body.group)
                if not body.code:
                    self._memory.forget_uc_topic(topic)
                self._events.append(
                    UCQuitResult(topic_id=topic, code=body.code or 0, message=body.message or "")
                )
            case codec_uc.UCMessageList():
                topic = _topic(body.group)
                if body.max_sequence is not None:  # 6.12: SEQ_ACK before dispatch
                    ack = codec_uc.UCSequenceAck(
                        group=self._uc_group(topic), sequence=body.max_sequence
                    )
                    self._send_uc(ack)
                for message in body.messages:  # 6.12: UC messages are not deduplicated
                    self._events.append(_uc_message(message, topic))
            case codec_uc.UCDismiss():
                topic = _topic(body.group)
                self._memory.forget_uc_topic(topic)
                self._events.append(UCDismissed(topic_id=topic))
            case _:
                pass  # PONG and the rest: ignored by the SDK

    # ------------------------------------------------------------------ helpers

    def _require(self, command: str) -> None:
        allowed = _COMMAND_STATES[command]
        if self._state in allowed:
            return
        if ClientState.BOUND in allowed:
            raise NotLoggedIn(command)
        raise LocalProtocolError(f"cannot {command} while {self._state.name}")

    def _me(self) -> WireUser:
        assert self._token is not None
        me = self._me_cache
        if me is None:  # fixed once the token is known (frozen, so it can be shared)
            me = self._me_cache = WireUser(
                app_id=self._app_id,
                app_account=self._app_account,
                uuid=self._token.uuid,
                resource=self._resource,
            )
        return me

    def _uc_group(self, topic_id: int) -> MIMCGroup:
        return MIMCGroup(app_id=self._app_id, topic_id=topic_id)

    def _header(self, cmd: str, header_id: str) -> Header:
        # 4.1: every frame but CONN carries chid, uuid, server, resource, cmd, id in that order.
        assert self._token is not None
        return Header(
            chid=self._token.chid,
            uuid=self._token.uuid,
            server=DEFAULT_SERVER,
            resource=self._resource,
            cmd=cmd,
            id=header_id,
        )

    def _send(self, header: Header, payload: bytes = b"") -> None:
        self._out.append(serialize_frame(Frame(header=header, payload=payload)))

    def _send_body(self, body: codec.PacketBody, *, keep_at: float | None = None) -> PacketId:
        # 6.6: packetId = header id = the id returned; SECMSG goes out unencrypted (5).
        # With keep_at, the packet also waits in the outbox for its ack.
        assert self._token is not None
        packet_id = self._ids()
        plain = codec.encode_packet_of(body, packet_id=packet_id, package=self._token.app_package)
        return self._send_plain(packet_id, plain, keep_at)

    def _send_plain(self, packet_id: str, plain: bytes, keep_at: float | None) -> PacketId:
        # An encoded MIMCPacket as one SECMSG; with keep_at, it waits in the outbox for its ack.
        self._send_secmsg(packet_id, plain)
        if keep_at is not None:
            self._memory.outbox.add(packet_id, plain, keep_at)
        return PacketId(packet_id)

    def _send_secmsg(self, header_id: str, plain: bytes) -> None:
        # 4.1: the header of _header(SECMSG, header_id), from the template built at login.
        assert self._secmsg_header is not None
        self._out.append(frame_bytes(self._secmsg_header.encode(header_id), plain))

    def _send_uc(self, body: codec_uc.UCBody) -> PacketId:
        # 6.12: MIMCPacket.packetId = UCPacket.packetId = header id.
        assert self._token is not None
        packet_id = self._ids()
        uc = codec_uc.UCPacket(body=body, user=self._me(), packet_id=packet_id)
        plain = codec.encode_packet_of(uc, packet_id=packet_id, package=self._token.app_package)
        self._send_secmsg(packet_id, plain)
        return PacketId(packet_id)

    def _send_pull(self) -> PacketId:
        assert self._token is not None
        request = codec.PullMessageRequest(
            uuid=self._token.uuid, resource=self._resource, app_id=self._app_id
        )
        return self._send_body(request)

    def _send_sequence_ack(self, sequence: int) -> None:
        # 6.9: no packetId and no package in the MIMCPacket; a fresh header id.
        assert self._token is not None
        ack = codec.MIMCSequenceAck(
            uuid=self._token.uuid, resource=self._resource, sequence=sequence, app_id=self._app_id
        )
        self._send_secmsg(self._ids(), codec.encode_packet_of(ack))

    def _enter_closed(self) -> None:
        if self._state is not ClientState.CLOSED:
            self._state = ClientState.CLOSED
            self._close_requested = True
        self._ping_at = self._uc_ping_at = None

    def _fail(self, reason: str, detail: str) -> None:
        self._events.append(ProtocolFailure(reason=reason, detail=detail))
        self._enter_closed()


def _pid(packet_id: str | None) -> PacketId | None:
    return PacketId(packet_id) if packet_id is not None else None


def _topic(group: MIMCGroup | None) -> int:
    return (group.topic_id or 0) if group is not None else 0


def _uc_message(message: codec_uc.UCMessageBody, list_topic: int) -> UCMessage:
    sender = message.user or WireUser()
    return UCMessage(
        packet_id=PacketId(message.packet_id or ""),
        sequence=message.sequence or 0,
        timestamp=message.timestamp or 0,
        from_account=sender.app_account or "",
        from_resource=sender.resource or "",
        topic_id=message.group.topic_id or list_topic if message.group else list_topic,
        payload=message.payload or b"",
        biz_type=message.biz_type or "",
        is_store=bool(message.is_store),
    )


# The receive fast path builds its events with positional constructors (codec_base): the same
# objects as the keyword calls, without a frozen __init__'s object.__setattr__ per field.
_make_ack: Final = constructor(ServerAck, ("packet_id", "sequence", "timestamp", "err_msg"))
_make_p2p: Final = constructor(
    P2PMessage,
    (
        "packet_id",
        "sequence",
        "timestamp",
        "from_account",
        "from_resource",
        "to_account",
        "to_resource",
        "payload",
        "biz_type",
        "is_store",
    ),
)
_make_p2t: Final = constructor(
    P2TMessage,
    (
        "packet_id",
        "sequence",
        "timestamp",
        "from_account",
        "from_resource",
        "topic_id",
        "payload",
        "biz_type",
        "is_store",
    ),
)
_PACKET_ACK: Final = int(codec.PacketType.PACKET_ACK)
_P2P: Final = int(codec.PacketType.P2P_MESSAGE)
_P2T: Final = int(codec.PacketType.P2T_MESSAGE)

_Handler = Callable[[ClientSession, Frame, float], None]

# Which s2c command each state accepts (docs/protocol.md 3, 6). Anything else is a BadPacket
# "unexpected-cmd" (the SDK ignores it); a s2c PING is always ignored (6.5).
_TRANSITIONS: Final[dict[tuple[ClientState, str | None], _Handler]] = {
    (ClientState.CONNECTING, Cmd.CONN): ClientSession._on_conn_reply,
    (ClientState.BINDING, Cmd.BIND): ClientSession._on_bind_reply,
    (ClientState.BOUND, Cmd.SECMSG): ClientSession._on_secmsg,
    (ClientState.CONNECTING, Cmd.KICK): ClientSession._on_kick,
    (ClientState.BINDING, Cmd.KICK): ClientSession._on_kick,
    (ClientState.BOUND, Cmd.KICK): ClientSession._on_kick,
}

_BOUND: Final = frozenset({ClientState.BOUND})

# Which state each command needs; a send outside BOUND raises NotLoggedIn (6.6).
_COMMAND_STATES: Final[dict[str, frozenset[ClientState]]] = {
    "login": frozenset({ClientState.IDLE}),
    "send_p2p": _BOUND,
    "send_p2t": _BOUND,
    "send_uc": _BOUND,
    "join_uc": _BOUND,
    "quit_uc": _BOUND,
    "pull": _BOUND,
    "ack_sequence": _BOUND,
}
