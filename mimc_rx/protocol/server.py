"""``ServerSession``: the server side of one MIMC web connection, without I/O.

Theory of operation. The session owns the protocol; the server's business logic (tokens,
routing, storage) owns the data. The session answers CONN by itself with a fresh challenge
(docs/protocol.md 6.1), and turns everything else into an event that the business logic answers
with a command (docs/sansio.md):

* BIND -> ``BindRequested``; ``accept_bind(key, ...)`` checks the signature of 6.3 (an empty
  ``kick`` counts as ``"0"``, 10.1) and answers ok or ``auth/invalid-sig``; ``reject_bind``
  answers with the given error. Either way a refused client may BIND again.
* c2s SECMSG -> one event per packet (``P2PReceived``, ``PullRequested``, ``UCJoinRequested``...).
  The payload is decrypted only when the header says ``cipher=1`` (5, 10.3): the web SDK sends
  it clear, the TCP SDKs encrypted. A packet claiming another sender than the bound
  uuid/resource is refused as a ``BadPacket``.
* Commands build s2c frames. Every s2c SECMSG is RC4-encrypted with a fresh server-chosen
  header id and ``cipher=1`` in the header, as our capture server did (5, the vectors). Its
  MIMCPacket id comes from the same id factory (one id, then the header id), and its
  timestamp from the injected millisecond clock.
* A PING is accepted in any state and echoed (6.5: the SDK ignores the echo). UBND ends the
  session. Anything the state does not allow (SECMSG before BIND, a second CONN, an unknown
  cmd) or a frame that does not parse is a ``ProtocolFailure``: the session asks to be closed
  and sends the peer nothing about why.

Peer bytes never raise out of ``receive_data``. Transitions are in ``_TRANSITIONS``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Final, TypeVar, cast

from mimc_rx.errors import FrameError, LocalProtocolError, PacketError
from mimc_rx.protocol import codec, codec_uc, codec_wire
from mimc_rx.protocol.codec import (
    DEFAULT_SERVER,
    MIMC_CHID,
    Cmd,
    Header,
    HeaderTemplate,
    MIMCGroup,
    WireUser,
)
from mimc_rx.protocol.codec_base import constructor
from mimc_rx.protocol.crypto import PayloadCipher, verify_bind_signature
from mimc_rx.protocol.events import (
    BadPacket,
    BindRequested,
    Delivery,
    DeliveryKind,
    P2PReceived,
    P2TReceived,
    PacketId,
    Peer,
    Pinged,
    ProtocolFailure,
    PullRequested,
    SequenceAcked,
    ServerEvent,
    UCDelivery,
    UCJoinRequested,
    UCMessageReceived,
    UCPinged,
    UCQuitRequested,
    UCSequenceAcked,
    UnbindRequested,
)
from mimc_rx.protocol.framing import (
    Frame,
    frame_bytes,
    parse_frame,
    serialize_frame,
    split_frame,
)
from mimc_rx.protocol.ids import CounterIdFactory, random_challenge, wall_clock_ms

__all__ = ["CIPHER_RC4", "GroupBodies", "ServerSession", "ServerState", "delivery_of"]

_A = TypeVar("_A")

CIPHER_RC4: Final = 1
"""ClientHeader.cipher for an RC4 payload (docs/protocol.md 4.1, 5)."""


class ServerState(enum.Enum):
    """AWAIT_CONN -> AWAIT_BIND -> BINDING (BindRequested emitted) -> BOUND -> CLOSED."""

    AWAIT_CONN = "await-conn"
    AWAIT_BIND = "await-bind"
    BINDING = "binding"
    BOUND = "bound"
    CLOSED = "closed"

    # Members are singletons compared by identity, so the identity hash is consistent with
    # equality; Enum's own __hash__ is Python code, run for every frame by the _TRANSITIONS
    # lookup (about 1 us of the 12 us a c2s P2P frame costs).
    __hash__ = object.__hash__


class GroupBodies:
    """Encoded group message bodies, shared by the sessions of one server (docs/protocol.md 6.7).

    A group message goes to every member session in a COMPOUND of its own; the MIMCP2TMessage
    inside is the same for all of them (sender, group, payload, isStore, bizType), only the
    packet around it (the recipient's sequence) differs. Sessions given the same
    ``GroupBodies`` encode that body once and reuse the bytes. The memo maps the body's inputs
    to its bytes, so it changes no output. The driver calls :meth:`clear` once the fan-out is
    written (the local server: after each tick's deliveries); the memo also forgets
    everything by itself when it holds ``limit`` bodies.
    """

    __slots__ = ("_bodies", "_limit")

    def __init__(self, limit: int = 1024) -> None:
        self._bodies: dict[tuple[object, ...], bytes] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._bodies)

    def clear(self) -> None:
        """Forget every body (they keep their payloads alive)."""
        self._bodies.clear()

    def encoded(self, app_id: int | None, item: Delivery) -> bytes:
        """The MIMCP2TMessage bytes of group delivery ``item`` for a member of app ``app_id``."""
        key = (app_id, item.topic_id, item.sender, item.payload, item.is_store, item.biz_type)
        body = self._bodies.get(key)
        if body is None:
            if len(self._bodies) >= self._limit:
                self._bodies.clear()
            body = self._bodies[key] = codec.encode_message(_group_body(app_id, item))
        return body


class ServerSession:
    """The sans-I/O MIMC server side of one connection (docs/sansio.md).

    Args:
        ids: header and packet ids of s2c frames; default ``srv<ms>-<n>``.
        challenges: CONN challenges; default 32 random hex characters (6.1 step 2).
        clock_ms: wall clock in ms for the MIMCPacket timestamp of s2c SECMSG.
        host: XMMsgConnResp.host (a front-end name); absent when None.
        group_bodies: a memo shared with the server's other sessions, so that a group
            message is encoded once for all its recipients; without it each session encodes
            its own copy (the bytes are the same either way).
    """

    def __init__(
        self,
        *,
        ids: Callable[[], str] | None = None,
        challenges: Callable[[], str] | None = None,
        clock_ms: Callable[[], int] | None = None,
        host: str | None = None,
        group_bodies: GroupBodies | None = None,
    ) -> None:
        self._clock_ms: Callable[[], int] = clock_ms or wall_clock_ms
        self._ids: Callable[[], str] = ids or CounterIdFactory("srv", self._clock_ms)
        self._challenges: Callable[[], str] = challenges or random_challenge
        self._host = host
        self._group_bodies = group_bodies
        self._state = ServerState.AWAIT_CONN
        self._events: list[ServerEvent] = []
        self._out: list[bytes] = []
        self._close_requested = False
        self._challenge: str | None = None
        self._bind_header: Header | None = None
        self._bind_request: codec.BindRequest | None = None
        self._uuid: int | None = None
        self._resource: str | None = None
        self._app_id: int | None = None
        self._app_account: str | None = None
        self._package: str | None = None
        self._security_key: str | None = None
        self._cipher: PayloadCipher | None = None  # the key decoded once (docs/protocol.md 5)
        self._secmsg_header: HeaderTemplate | None = None  # s2c SECMSG headers, set at BIND
        # The per-session constant parts of the two frames sent per message (codec_wire).
        self._packet_template: codec_wire.PacketTemplate | None = None
        self._ack_template: codec_wire.PacketAckTemplate | None = None
        # Encoded MIMCUser of each sender and recipient seen in a P2P delivery, bounded.
        self._users: dict[object, bytes] = {}
        self._peer_cache: Peer | None = None

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def is_bound(self) -> bool:
        return self._state is ServerState.BOUND

    @property
    def close_requested(self) -> bool:
        """True once the session wants the transport closed (UBND, KICK, violation, close)."""
        return self._close_requested

    @property
    def challenge(self) -> str | None:
        """The challenge sent in the CONN reply."""
        return self._challenge

    @property
    def uuid(self) -> int | None:
        """The bound user's uuid (set by ``accept_bind``)."""
        return self._uuid

    @property
    def resource(self) -> str | None:
        return self._resource

    @property
    def app_id(self) -> int | None:
        return self._app_id

    @property
    def app_account(self) -> str | None:
        """Given to ``accept_bind``, or else learnt from the first packet's sender."""
        return self._app_account

    @property
    def package(self) -> str | None:
        return self._package

    # ------------------------------------------------------------------ driver API

    def events_received(self) -> list[ServerEvent]:
        """The events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        """The frames to write since the last call, one websocket binary message each."""
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        """The server session keeps no timers; idle timeouts belong to the driver."""
        return None

    def expire(self, now: float) -> None:
        """Nothing is timed here (see ``next_deadline``)."""

    def receive_eof(self) -> None:
        """The transport closed."""
        self._state = ServerState.CLOSED

    def receive_data(self, data: bytes, now: float) -> None:
        """Handle one websocket message. Never raises on peer bytes (STYLE.md 3)."""
        if self._state is ServerState.CLOSED:
            return
        try:
            if self._state is ServerState.BOUND:
                # The hot path: a bound session's SECMSG needs only the header's id and
                # cipher, read without the Header and Frame dataclasses. Anything else, or a
                # header decode_header_fields does not read, takes parse_frame (rare frames:
                # CONN, BIND, PING, junk), which gives the exact error.
                *_, raw_header, payload = split_frame(data)
                fields = codec.decode_header_fields(raw_header)
                if fields is not None and fields[0] == Cmd.SECMSG:
                    self._handle(_secmsg_fields, (fields[1], fields[2], payload))
                    return
            frame = parse_frame(data)
        except FrameError as exc:
            self._violation(exc.reason, exc.detail)
            return
        cmd = frame.header.cmd
        if cmd == Cmd.PING:
            # 6.5: accepted in any state; echoed with the client's own header, empty payload.
            self._events.append(Pinged())
            self._send(frame.header)
            return
        handler = _TRANSITIONS.get((self._state, cmd))
        if handler is None:
            self._violation("unexpected-cmd", f"{cmd!r} while {self._state.name}")
            return
        self._handle(handler, frame)

    def _handle(self, handler: Callable[[ServerSession, _A], None], arg: _A) -> None:
        try:
            handler(self, arg)
        except PacketError as exc:
            self._events.append(
                BadPacket(reason=exc.reason, packet_id=_pid(exc.packet_id), detail=exc.detail)
            )
        except Exception as exc:  # a bug of ours must not escape as the peer's fault
            self._violation("internal-error", f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ BIND commands (6.3)

    def accept_bind(
        self, security_key_b64: str, *, app_id: int, package: str, app_account: str | None = None
    ) -> bool:
        """Answer ``BindRequested`` for a known token: verify the signature and reply.

        Args:
            security_key_b64: the user's ``miUserSecurityKey`` as issued (base64 text).
            app_id: the user's app; goes into s2c messages.
            package: the app package; goes into s2c MIMCPackets.
            app_account: the user's account, used in s2c UC packets and checked against the
                sender of c2s packets; learnt from the first packet when None.

        Returns:
            True when the signature matched (BIND ok sent); False when it did not
            (``auth/invalid-sig`` sent, and the client may BIND again).
        """
        header, request = self._pending_bind("accept_bind")
        cipher = PayloadCipher(security_key_b64)  # ValueError now rather than at the first SECMSG
        ok = verify_bind_signature(
            request.sig,
            security_key_b64=security_key_b64,
            challenge=self._challenge or "",
            chid="" if header.chid is None else header.chid,
            uuid="" if header.uuid is None else header.uuid,
            resource=header.resource or "",
            header_id=header.id or "",
            token=request.token or "",
            method=request.method or "",
            kick=request.kick,  # 10.1: empty or absent means "0"
            client_attrs=request.client_attrs,
            cloud_attrs=request.cloud_attrs,
            server=header.server or DEFAULT_SERVER,
        )
        if not ok:
            self._reply_bind(
                header,
                codec.BindResponse(
                    result=False,
                    error_type="auth",
                    error_reason="invalid-sig",
                    error_desc="signature mismatch",
                ),
            )
            self._state = ServerState.AWAIT_BIND
            return False
        self._uuid = header.uuid or 0
        self._resource = header.resource or ""
        self._app_id = int(app_id)
        self._package = package
        self._app_account = app_account
        self._security_key = security_key_b64
        self._cipher = cipher
        self._peer_cache = None
        # 5: every s2c SECMSG has this header with a fresh id, and cipher=1.
        self._secmsg_header = HeaderTemplate(
            Header(
                chid=MIMC_CHID,
                uuid=self._uuid,
                server=DEFAULT_SERVER,
                resource=self._resource,
                cmd=Cmd.SECMSG,
                cipher=CIPHER_RC4,
            )
        )
        self._packet_template = codec_wire.PacketTemplate(package)
        self._ack_template = codec_wire.PacketAckTemplate(self._uuid, self._resource, package)
        self._users.clear()
        self._reply_bind(header, codec.BindResponse(result=True))  # 6.4
        self._state = ServerState.BOUND
        return True

    def reject_bind(self, err_type: str, err_reason: str, err_desc: str) -> None:
        """Answer ``BindRequested`` with a refusal (e.g. ``token-expired``, 4.2)."""
        header, _ = self._pending_bind("reject_bind")
        reply = codec.BindResponse(
            result=False,
            error_type=err_type or None,
            error_reason=err_reason or None,
            error_desc=err_desc or None,
        )
        self._reply_bind(header, reply)
        self._state = ServerState.AWAIT_BIND

    # ------------------------------------------------------------------ SECMSG commands

    def ack_packet(
        self,
        packet_id: str,
        *,
        sequence: int,
        timestamp: int,
        error_msg: str = "",
        code: int = 200,
    ) -> None:
        """Send PACKET_ACK for a c2s packet (6.6). ``errorMsg`` is always present, as ours was."""
        self._require_bound("ack_packet")
        assert self._ack_template is not None
        # The bytes of codec.MIMCPacketAck(packet_id, uuid, resource, sequence, timestamp,
        # package, error_msg, code), written straight from the fields (codec_wire).
        body = self._ack_template.encode(packet_id, sequence, timestamp, error_msg, code)
        self._send_packet(_PACKET_ACK, body)

    def deliver(self, items: Sequence[Delivery], *, max_sequence: int) -> None:
        """Send one COMPOUND with ``items`` (6.6 step 2, 6.7); the client acks ``max_sequence``."""
        self._require_bound("deliver")
        # The generic MIMCPacketList with one MIMCPacket per item, built from encoded bodies:
        # the same bytes (tests/protocol/test_server.py), without the dataclasses.
        entries = [
            (
                item.packet_id,
                item.package,
                item.sequence,
                _P2T if item.kind is DeliveryKind.P2T else _P2P,
                self._delivery_body(item),
                item.timestamp,
            )
            for item in items
        ]
        plain = codec_wire.encode_packet_list(
            entries,
            uuid=self._uuid,
            resource=self._resource,
            max_sequence=max_sequence,
            status=_NORMAL,
        )
        self._send_packet(_COMPOUND, plain)

    def notify_backlog(self, min_sequence: int, max_sequence: int) -> None:
        """Send a pull notification: COMPOUND with EXCEED_COUNT_LIMIT and no packets (6.10)."""
        self._require_bound("notify_backlog")
        self._send_secmsg(
            codec.MIMCPacketList(
                uuid=self._uuid,
                resource=self._resource,
                max_sequence=max_sequence,
                status=codec.PushStatus.EXCEED_COUNT_LIMIT,
                min_sequence=min_sequence,
            )
        )

    def uc_join_result(self, topic_id: int, code: int = 0, message: str = "success") -> None:
        """Answer ``UCJoinRequested`` with JOIN_RESP; code 0 means joined (6.12)."""
        self._require_bound("uc_join_result")
        group = self._group(topic_id)
        self._send_uc(codec_uc.UCJoinResp(group=group, code=code, message=message))

    def uc_quit_result(self, topic_id: int, code: int = 0, message: str = "success") -> None:
        """Answer ``UCQuitRequested`` with QUIT_RESP; code 0 means left (6.12)."""
        self._require_bound("uc_quit_result")
        group = self._group(topic_id)
        self._send_uc(codec_uc.UCQuitResp(group=group, code=code, message=message))

    def deliver_uc(self, topic_id: int, items: Sequence[UCDelivery], *, max_sequence: int) -> None:
        """Send one MESSAGE_LIST of a topic; sequences are per topic (6.12, 6.15)."""
        self._require_bound("deliver_uc")
        group = self._group(topic_id)
        messages = tuple(
            codec_uc.UCMessageBody(
                group=group,
                payload=item.payload,
                sequence=item.sequence,
                is_store=item.is_store,
                user=_user(item.sender),
                timestamp=item.timestamp,
                packet_id=item.packet_id,
                biz_type=item.biz_type or None,
            )
            for item in items
        )
        self._send_uc(
            codec_uc.UCMessageList(group=group, messages=messages, max_sequence=max_sequence)
        )

    def uc_pong(self) -> None:
        """Answer ``UCPinged`` with an empty PONG (the SDK ignores it, 6.12)."""
        self._require_bound("uc_pong")
        self._send_uc(codec_uc.UCPong())

    def uc_dismiss(self, topic_id: int) -> None:
        """Tell this client that an unlimited group is gone (DISMISS, 6.12)."""
        self._require_bound("uc_dismiss")
        self._send_uc(codec_uc.UCDismiss(group=self._group(topic_id)))

    # ------------------------------------------------------------------ ending

    def kick(self, err_type: str = "", err_reason: str = "", err_desc: str = "") -> None:
        """Send KICK (payload XMMsgBindResp, 6.13) and ask to close."""
        if self._state is ServerState.CLOSED:
            return
        header = Header(
            chid=MIMC_CHID,
            uuid=self._uuid,
            server=DEFAULT_SERVER,
            resource=self._resource,
            cmd=Cmd.KICK,
            id=self._ids(),
        )
        reply = codec.BindResponse(
            result=False,
            error_type=err_type or None,
            error_reason=err_reason or None,
            error_desc=err_desc or None,
        )
        self._send(header, codec.encode_message(reply))
        self.close()

    def close(self) -> None:
        """Ask the driver to close the connection (after flushing ``data_to_send``)."""
        self._state = ServerState.CLOSED
        self._close_requested = True

    # ------------------------------------------------------------------ frame handlers

    def _on_conn(self, frame: Frame) -> None:
        try:
            codec.decode_message(codec.ConnRequest, frame.payload)
        except PacketError as exc:
            self._violation("bad-conn", exc.detail)
            return
        self._challenge = self._challenges()
        # 6.1 step 2: our reply echoes the client's header id and sets chid 9.
        header = Header(
            chid=MIMC_CHID,
            server=frame.header.server or DEFAULT_SERVER,
            cmd=Cmd.CONN,
            id=frame.header.id,
        )
        reply = codec.ConnResponse(challenge=self._challenge, host=self._host)
        self._send(header, codec.encode_message(reply))
        self._state = ServerState.AWAIT_BIND

    def _on_bind(self, frame: Frame) -> None:
        try:
            request = codec.decode_message(codec.BindRequest, frame.payload)
        except PacketError as exc:
            self._violation("bad-bind", exc.detail)
            return
        header = frame.header
        self._bind_header, self._bind_request = header, request
        self._state = ServerState.BINDING
        self._events.append(
            BindRequested(
                uuid=header.uuid or 0,
                resource=header.resource or "",
                token=request.token or "",
                chid=header.chid or 0,
            )
        )

    def _on_unbind(self, frame: Frame) -> None:
        # 6.13: the compatible answer to UBND is to close the connection.
        self._events.append(UnbindRequested())
        self.close()

    def _on_secmsg(self, frame: Frame) -> None:
        self._on_secmsg_fields((frame.header.id or "", frame.header.cipher or 0, frame.payload))

    def _on_secmsg_fields(self, parts: tuple[str, int, bytes]) -> None:
        """A SECMSG as its header's id and cipher and its payload."""
        assert self._cipher is not None
        header_id, cipher, payload = parts
        if cipher == CIPHER_RC4:  # 5, 10.3: decrypt only when the header says so
            payload = self._cipher(header_id, payload)
        elif cipher:
            raise PacketError("unsupported-cipher", f"cipher {cipher}")
        # The hot path: a well-formed P2P or P2T message is read without dataclasses; anything
        # else (or anything unusual) through the generic decoder, which gives the exact error.
        fields = codec.decode_message_packet(payload)
        if fields is not None:
            self._on_message(fields)
            return
        packet = codec.decode_packet(payload)
        packet_id = _pid(packet.packet_id)
        body = packet.body
        match body:
            case codec.MIMCP2PMessage() | codec.MIMCP2TMessage():
                message = codec.message_fields(packet)
                assert message is not None
                self._on_message(message)
            case codec.MIMCSequenceAck():
                self._events.append(SequenceAcked(sequence=body.sequence or 0))  # 6.9
            case codec.PullMessageRequest():
                self._events.append(PullRequested(packet_id=self._need_id(packet_id)))  # 6.11
            case codec_uc.UCPacket():
                self._on_uc(body, packet_id)
            case _:
                raise PacketError(
                    "unexpected-type", f"type {packet.type} from a client", packet.packet_id
                )

    def _on_message(self, fields: codec.MessageFields) -> None:
        """A P2P or P2T message from the client (6.6, 6.7), as ``codec.MessageFields``."""
        ptype, raw_id, package, sender, to, payload, is_store, biz_type = fields
        packet_id = _pid(raw_id)
        if sender is not None:
            self._check_sender_fields(*sender, packet_id=packet_id)
        if ptype == _P2P:
            app_id, account, _uuid, resource = cast(codec.UserFields, to or _NO_USER)
            self._events.append(
                _make_p2p_received(
                    self._need_id(packet_id),
                    package or "",
                    self._peer(),
                    account or "",
                    app_id if app_id is not None else self._app_id or 0,
                    payload or b"",
                    is_store is not False,  # web default: store (6.6)
                    biz_type or "",
                    resource or "",
                )
            )
        else:
            topic_id = cast(codec.GroupFields, to)[1] if to is not None else None
            self._events.append(
                _make_p2t_received(
                    self._need_id(packet_id),
                    package or "",
                    self._peer(),
                    topic_id or 0,
                    payload or b"",
                    is_store is not False,
                    biz_type or "",
                )
            )

    def _on_uc(self, uc: codec_uc.UCPacket, outer_id: PacketId | None) -> None:
        packet_id = _pid(uc.packet_id) or outer_id
        self._check_sender(uc.user, packet_id)
        body = uc.body
        match body:
            case codec_uc.UCJoin():
                self._events.append(
                    UCJoinRequested(packet_id=self._need_id(packet_id), topic_id=_topic(body.group))
                )
            case codec_uc.UCQuit():
                self._events.append(
                    UCQuitRequested(packet_id=self._need_id(packet_id), topic_id=_topic(body.group))
                )
            case codec_uc.UCMessageBody():
                self._events.append(
                    UCMessageReceived(
                        packet_id=self._need_id(packet_id),
                        message_id=PacketId(body.packet_id or packet_id or ""),
                        sender=self._peer(),
                        topic_id=_topic(body.group),
                        payload=body.payload or b"",
                        is_store=bool(body.is_store),
                        biz_type=body.biz_type or "",
                    )
                )
            case codec_uc.UCSequenceAck():
                self._events.append(
                    UCSequenceAcked(topic_id=_topic(body.group), sequence=body.sequence or 0)
                )
            case codec_uc.UCPing():
                # 10.10: the list may repeat or name left topics; the business logic copes.
                topics = tuple(g.topic_id for g in body.groups if g.topic_id is not None)
                self._events.append(UCPinged(topic_ids=topics))
            case _:
                raise PacketError("unexpected-type", f"UC type {uc.type} from a client", packet_id)

    # ------------------------------------------------------------------ helpers

    def _pending_bind(self, command: str) -> tuple[Header, codec.BindRequest]:
        if (
            self._state is not ServerState.BINDING
            or self._bind_header is None
            or self._bind_request is None
        ):
            raise LocalProtocolError(f"cannot {command} while {self._state.name}")
        return self._bind_header, self._bind_request

    def _require_bound(self, command: str) -> None:
        if self._state is not ServerState.BOUND:
            raise LocalProtocolError(f"cannot {command} while {self._state.name}")

    def _check_sender(self, user: WireUser | None, packet_id: PacketId | None) -> None:
        """Refuse a packet whose sender is not the bound user (uuid, resource, account)."""
        if user is not None:
            self._check_sender_fields(
                user.app_id, user.app_account, user.uuid, user.resource, packet_id=packet_id
            )

    def _check_sender_fields(
        self,
        _app_id: int | None,
        account: str | None,
        uuid: int | None,
        resource: str | None,
        *,
        packet_id: PacketId | None,
    ) -> None:
        if self._app_account is None and account:
            self._app_account = account  # learnt once, then enforced
        mismatch = (
            (uuid is not None and uuid != self._uuid)
            or (resource is not None and resource != self._resource)
            or (account is not None and account != self._app_account)
        )
        if mismatch:
            raise PacketError(
                "sender-mismatch",
                f"sender {account}/{uuid}/{resource} is not the bound user",
                packet_id,
            )

    @staticmethod
    def _need_id(packet_id: PacketId | None) -> PacketId:
        if not packet_id:
            raise PacketError("missing-packet-id", "the packet carries no packet id")
        return packet_id

    def _peer(self) -> Peer:
        peer = self._peer_cache
        if peer is None or peer.app_account != (self._app_account or ""):
            peer = self._peer_cache = Peer(
                app_id=self._app_id or 0,
                app_account=self._app_account or "",
                uuid=self._uuid or 0,
                resource=self._resource or "",
            )
        return peer

    def _me(self) -> WireUser:
        # 6.12: s2c UC packets name the receiving user with uuid and resource.
        return WireUser(
            app_id=self._app_id,
            app_account=self._app_account,
            uuid=self._uuid,
            resource=self._resource,
        )

    def _group(self, topic_id: int) -> MIMCGroup:
        return MIMCGroup(app_id=self._app_id, topic_id=topic_id)

    def _delivery_body(self, item: Delivery) -> bytes:
        """The encoded MIMCP2PMessage / MIMCP2TMessage of a COMPOUND entry (6.6, 6.7)."""
        if item.kind is DeliveryKind.P2T:
            if self._group_bodies is not None:
                return self._group_bodies.encoded(self._app_id, item)
            return codec.encode_message(_group_body(self._app_id, item))
        # codec.encode_message(self._p2p_body(item)), from the fields and the memoised users.
        users = self._users
        sender = users.get(item.sender)
        if sender is None:
            sender = self._remember(item.sender, codec.encode_message(_user(item.sender)))
        key = (item.to_account, item.to_uuid, item.to_resource)
        to = users.get(key)
        if to is None:
            to = self._remember(key, codec.encode_message(self._p2p_to(item)))
        return codec_wire.encode_p2p_message(
            sender, to, item.payload, item.is_store, item.biz_type or None
        )

    def _remember(self, key: object, user: bytes) -> bytes:
        if len(self._users) >= _USERS_LIMIT:
            self._users.clear()
        self._users[key] = user
        return user

    def _p2p_to(self, item: Delivery) -> WireUser:
        return WireUser(
            app_id=self._app_id,
            app_account=item.to_account,
            uuid=item.to_uuid or None,  # 6.6 step 2: "optionally with uuids filled"
            resource=item.to_resource or None,
        )

    def _send(self, header: Header, payload: bytes = b"") -> None:
        self._out.append(serialize_frame(Frame(header=header, payload=payload)))

    def _reply_bind(self, header: Header, reply: codec.BindResponse) -> None:
        # 6.3: our reply reuses the request header (the SDK ignores it).
        self._send(header, codec.encode_message(reply))

    def _send_secmsg(self, body: codec.PacketBody, packet_id: str | None = None) -> None:
        assert self._cipher is not None
        assert self._secmsg_header is not None
        plain = codec.encode_packet_of(
            body,
            packet_id=packet_id or self._ids(),
            package=self._package,
            timestamp=self._clock_ms(),
        )
        header_id = self._ids()
        # 5: every s2c SECMSG payload is RC4 with key = security key + "_" + header id.
        payload = self._cipher(header_id, plain)
        self._out.append(frame_bytes(self._secmsg_header.encode(header_id), payload))

    def _send_packet(self, packet_type: int, body: bytes) -> None:
        """``_send_secmsg(OpaqueBody(type=packet_type, payload=body))``: the same frame, with
        the packet written by the session's template instead of a protobuf message."""
        assert self._cipher is not None
        assert self._secmsg_header is not None
        assert self._packet_template is not None
        plain = self._packet_template.encode(self._ids(), packet_type, body, self._clock_ms())
        header_id = self._ids()
        payload = self._cipher(header_id, plain)  # 5: RC4, key = security key + "_" + id
        self._out.append(frame_bytes(self._secmsg_header.encode(header_id), payload))

    def _send_uc(self, body: codec_uc.UCBody) -> None:
        packet_id = self._ids()  # the UCPacket and its MIMCPacket share one id (6.12)
        uc = codec_uc.UCPacket(body=body, user=self._me(), packet_id=packet_id)
        self._send_secmsg(uc, packet_id)

    def _violation(self, reason: str, detail: str) -> None:
        # STYLE.md 3: record it, tell the business logic, close; the peer learns nothing.
        self._events.append(ProtocolFailure(reason=reason, detail=detail))
        self.close()


def delivery_of(
    sent: P2PReceived | P2TReceived,
    *,
    sequence: int,
    timestamp: int,
    sender: Peer | None = None,
    package: str | None = None,
    to_uuid: int = 0,
) -> Delivery:
    """The COMPOUND entry that hands ``sent`` to one receiver (docs/protocol.md 6.6, 6.7).

    The one place a :class:`Delivery` is built, for a message just received, one read back from
    storage, or one a backend pushes as an account: each describes it as the packet its sender
    sent. ``sequence`` is in the receiver's sequence space (6.15) and ``timestamp`` the server's
    time of the message. ``sender`` and ``package`` override the packet's claims; a server passes
    the identity the connection bound with, never what the packet says. ``to_uuid`` names the
    P2P recipient's uuid (the packet carries only the account).
    """
    if isinstance(sent, P2TReceived):
        kind, topic_id, to_account, to_resource = DeliveryKind.P2T, sent.topic_id, "", ""
        to_uuid = 0
    else:
        kind, topic_id, to_account, to_resource = (
            DeliveryKind.P2P,
            0,
            sent.to_account,
            sent.to_resource,
        )
    return _make_delivery(
        kind,
        sent.packet_id,
        sent.package if package is None else package,
        sequence,
        timestamp,
        sent.sender if sender is None else sender,
        sent.payload,
        sent.is_store,
        sent.biz_type,
        to_account,
        to_uuid,
        to_resource,
        topic_id,
    )


# The message path builds its events and deliveries with positional constructors (codec_base):
# the same objects as the keyword calls, without a frozen __init__'s object.__setattr__ per field.
_make_p2p_received: Final = constructor(
    P2PReceived,
    (
        "packet_id",
        "package",
        "sender",
        "to_account",
        "to_app_id",
        "payload",
        "is_store",
        "biz_type",
        "to_resource",
    ),
)
_make_p2t_received: Final = constructor(
    P2TReceived,
    ("packet_id", "package", "sender", "topic_id", "payload", "is_store", "biz_type"),
)
_make_delivery: Final = constructor(
    Delivery,
    (
        "kind",
        "packet_id",
        "package",
        "sequence",
        "timestamp",
        "sender",
        "payload",
        "is_store",
        "biz_type",
        "to_account",
        "to_uuid",
        "to_resource",
        "topic_id",
    ),
)


def _pid(packet_id: str | None) -> PacketId | None:
    return PacketId(packet_id) if packet_id is not None else None


def _topic(group: MIMCGroup | None) -> int:
    return (group.topic_id or 0) if group is not None else 0


def _group_body(app_id: int | None, item: Delivery) -> codec.MIMCP2TMessage:
    # 6.7: the group message as the member of app ``app_id`` receives it.
    return codec.MIMCP2TMessage(
        sender=_user(item.sender),
        to=MIMCGroup(app_id=app_id, topic_id=item.topic_id),
        payload=item.payload,
        is_store=item.is_store,
        biz_type=item.biz_type or None,
    )


_P2P: Final = int(codec.PacketType.P2P_MESSAGE)
_P2T: Final = int(codec.PacketType.P2T_MESSAGE)
_COMPOUND: Final = int(codec.PacketType.COMPOUND)
_PACKET_ACK: Final = int(codec.PacketType.PACKET_ACK)
_NORMAL: Final = int(codec.PushStatus.NORMAL)
_USERS_LIMIT: Final = 1024
_NO_USER: Final[codec.UserFields] = (None, None, None, None)


def _user(peer: Peer) -> WireUser:
    return WireUser(
        app_id=peer.app_id,
        app_account=peer.app_account or None,
        uuid=peer.uuid or None,
        resource=peer.resource or None,
    )


_Handler = Callable[[ServerSession, Frame], None]
_secmsg_fields: Final = ServerSession._on_secmsg_fields

# Which c2s command each state accepts (docs/protocol.md 3, 6); PING is accepted everywhere.
# Anything else is a ProtocolFailure and the session closes.
_TRANSITIONS: Final[dict[tuple[ServerState, str | None], _Handler]] = {
    (ServerState.AWAIT_CONN, Cmd.CONN): ServerSession._on_conn,
    (ServerState.AWAIT_BIND, Cmd.BIND): ServerSession._on_bind,
    (ServerState.BOUND, Cmd.SECMSG): ServerSession._on_secmsg,
    (ServerState.AWAIT_BIND, Cmd.UBND): ServerSession._on_unbind,
    (ServerState.BINDING, Cmd.UBND): ServerSession._on_unbind,
    (ServerState.BOUND, Cmd.UBND): ServerSession._on_unbind,
}
