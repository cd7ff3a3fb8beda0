"""Messages from clients: P2P, P2T and unlimited-group packets checked and queued as intents.

What needs no storage is checked here, at once: sizes (``max_payload``, ``max_uc_payload``,
docs/protocol.md 6.16), field lengths (``max_field_bytes``) and the recipient's app. A refused
P2P/P2T packet gets a PACKET_ACK with an ``errorMsg`` (4.3), queued in order with the tick's
writes; a refused UC message is dropped and logged (6.12 defines no reply). What passes becomes
an intent for the tick (:mod:`mimc_rx.server.hub.tick`), where the group and its membership
are checked inside the transaction. UC JOIN and QUIT are reads and writes of their own, taken
under the tick's lock.
"""

from __future__ import annotations

import logging
from typing import Final

from mimc_rx.protocol.codec_base import constructor
from mimc_rx.protocol.events import P2PReceived, P2TReceived, UCMessageReceived
from mimc_rx.server.broker import Signal, SignalKind
from mimc_rx.server.config import AppConfig, ServerConfig
from mimc_rx.server.hub.outbox import Outbox, guarded
from mimc_rx.server.hub.registry import ClientLink, Registry
from mimc_rx.server.hub.routing import ERR_NO_TOPIC
from mimc_rx.server.hub.signals import Relay, Signals
from mimc_rx.server.hub.tick import TickPipeline
from mimc_rx.server.relay import DISMISS
from mimc_rx.server.storage import UCTopic
from mimc_rx.server.storage.interface import P2PWrite, P2TWrite, Storage, UCWrite
from mimc_rx.server.validation import utf8_longer_than

__all__ = ["ERR_MALFORMED", "Messages"]

log = logging.getLogger(__name__)

# errorMsg texts of refused packets (PACKET_ACK, docs/protocol.md 4.3). Short and free of detail.
ERR_TOO_LARGE = "payload too large"
ERR_NO_RECIPIENT = "invalid recipient"
ERR_OTHER_APP = "recipient belongs to another app"
ERR_MALFORMED = "malformed packet"
ERR_LONG_PACKET_ID = "packetId too long"
ERR_LONG_BIZ_TYPE = "bizType too long"
ERR_LONG_ACCOUNT = "toAccount too long"
ERR_LONG_RESOURCE = "toResource too long"

# UC JOIN_RESP / QUIT_RESP codes; 0 is success (docs/protocol.md 4.4).
UC_OK = 0
UC_NOT_FOUND = 404

# The P2P intent of every message, built positionally (codec_base.constructor): the same value
# as the keyword call, without a frozen __init__'s object.__setattr__ per field.
_make_p2p_write: Final = constructor(
    P2PWrite,
    (
        "app",
        "packet_id",
        "sender",
        "from_resource",
        "to_account",
        "payload",
        "biz_type",
        "to_resource",
        "ts",
        "persist",
    ),
)


class Messages:
    """The handlers of message packets and unlimited-group requests."""

    def __init__(
        self,
        storage: Storage,
        config: ServerConfig,
        registry: Registry,
        outbox: Outbox,
        pipeline: TickPipeline,
        signals: Signals,
    ) -> None:
        self.storage = storage
        self.config = config
        self.registry = registry
        self.outbox = outbox
        self.pipeline = pipeline
        self.signals = signals

    # ------------------------------------------------------------------ P2P and P2T (6.6, 6.7)

    def on_p2p(self, conn: ClientLink, event: P2PReceived) -> None:
        """A one-to-one message: refused at once, or queued for the tick."""
        user, app = conn.user, conn.app
        now_ms = self.pipeline.now_ms()
        if user is None or app is None:
            return
        error = self._p2p_error(event, app)
        if error:
            self.pipeline.ack(conn, event.packet_id, 0, now_ms, error)
            return
        intent = _make_p2p_write(
            app,
            event.packet_id,
            user,
            conn.resource,
            event.to_account,
            event.payload,
            event.biz_type,
            event.to_resource,
            now_ms,
            event.is_store,
        )
        self.pipeline.write(conn, event, intent)

    def _p2p_error(self, event: P2PReceived, app: AppConfig) -> str:
        limit = self.config.max_field_bytes
        if len(event.payload) > self.config.max_payload:
            return ERR_TOO_LARGE
        if not event.to_account:
            return ERR_NO_RECIPIENT
        if event.to_app_id not in (0, app.app_id):
            return ERR_OTHER_APP
        if utf8_longer_than(event.to_account, limit):
            return ERR_LONG_ACCOUNT
        if utf8_longer_than(event.to_resource, limit):
            return ERR_LONG_RESOURCE
        return self._field_error(event.packet_id, event.biz_type)

    def _field_error(self, packet_id: str, biz_type: str) -> str:
        # Everything stored is bounded (ServerConfig.max_field_bytes); the SDKs send a few
        # dozen bytes in these fields.
        limit = self.config.max_field_bytes
        if utf8_longer_than(packet_id, limit):
            return ERR_LONG_PACKET_ID
        if utf8_longer_than(biz_type, limit):
            return ERR_LONG_BIZ_TYPE
        return ""

    def on_p2t(self, conn: ClientLink, event: P2TReceived) -> None:
        """A group message: refused at once, or queued for the tick."""
        user, app = conn.user, conn.app
        now_ms = self.pipeline.now_ms()
        if user is None or app is None:
            return
        error = ""
        if len(event.payload) > self.config.max_payload:
            error = ERR_TOO_LARGE
        error = error or self._field_error(event.packet_id, event.biz_type)
        if error:
            self.pipeline.ack(conn, event.packet_id, 0, now_ms, error)
            return
        # The topic and the membership are checked in the tick (P2TWritten.refusal).
        intent = P2TWrite(
            app=app,
            packet_id=event.packet_id,
            sender=user,
            from_resource=conn.resource,
            topic_id=event.topic_id,
            payload=event.payload,
            biz_type=event.biz_type,
            ts=now_ms,
            persist=event.is_store,
        )
        self.pipeline.write(conn, event, intent)

    # ------------------------------------------------------------------ unlimited groups (6.12)

    def on_uc_message(self, conn: ClientLink, event: UCMessageReceived) -> None:
        """An unlimited-group message: dropped when refused, else queued (no ack, 6.12)."""
        user, app = conn.user, conn.app
        if user is None or app is None:
            return
        if len(event.payload) > self.config.max_uc_payload:
            log.info("%s: UC message of %d bytes refused (too large)", conn, len(event.payload))
            return
        error = self._field_error(event.message_id, event.biz_type)
        if error:
            log.info("%s: UC message refused (%s)", conn, error)
            return
        intent = UCWrite(
            app_id=app.app_id,
            sender_uuid=user.uuid,
            topic_id=event.topic_id,
            ts=self.pipeline.now_ms(),
        )
        self.pipeline.write_unacked(conn, event, intent)

    async def _uc_topic(self, conn: ClientLink, topic_id: int) -> UCTopic | None:
        topic = await self.storage.uc_topic(topic_id)
        if topic is None or conn.app is None or topic.app_id != conn.app.app_id:
            return None
        return topic

    async def uc_join(self, conn: ClientLink, topic_id: int) -> None:
        """UC JOIN: answered 0 or 404 (4.4)."""
        # Under the tick's lock, so no tick is between its write and its routing: a message
        # written after this commit reaches the new member, and the JOIN_RESP goes out after
        # it. The JOIN waits behind its connection's earlier reads (the login's), so another
        # connection's message that arrived later may be written first and miss the member:
        # the membership counts from the JOIN_RESP (docs/server.md, unlimited groups).
        async with self.pipeline.write_lock:
            topic = await self._uc_topic(conn, topic_id)
            if topic is None or conn.user is None:
                conn.session.uc_join_result(topic_id, code=UC_NOT_FOUND, message=ERR_NO_TOPIC)
                return
            await self.storage.uc_join(topic_id, conn.user.uuid)
        conn.session.uc_join_result(topic_id, code=UC_OK, message="success")

    async def uc_quit(self, conn: ClientLink, topic_id: int) -> None:
        """UC QUIT: answered 0 or 404 (4.4)."""
        async with self.pipeline.write_lock:
            topic = await self._uc_topic(conn, topic_id)
            if topic is None or conn.user is None:
                conn.session.uc_quit_result(topic_id, code=UC_NOT_FOUND, message=ERR_NO_TOPIC)
                return
            await self.storage.uc_quit(topic_id, conn.user.uuid)
        conn.session.uc_quit_result(topic_id, code=UC_OK, message="success")

    async def dismiss_uc_topic(self, topic_id: int) -> None:
        """Dismiss an unlimited group and push DISMISS to its online members (6.12)."""
        members = await self.storage.delete_uc_topic(topic_id)
        for member in members:
            for target in self.registry.sessions_of(member):
                if target.can_send:
                    guarded(target, target.session.uc_dismiss, topic_id)
                    self.outbox.touch(target)
        if members and not self.signals.single_node():
            relay = Relay()
            signal = Signal(kind=SignalKind.FANOUT, topic_id=topic_id, body=DISMISS)
            relay.bodies.append((signal, members))
            await self.signals.send(relay)
        await self.pipeline.flush()
