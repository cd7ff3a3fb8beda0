"""BIND (docs/protocol.md 6.3): the token, the signature, the one connection per resource, and
the backlog read before the answer.

The backlog at BIND is read before the BIND answer, so what the client sends after it is live;
while that read is in flight the connection's feed is ``pending`` (:mod:`.feed`), and a live
stored message held back meanwhile makes the read start again. A backlog above
``backlog_limit`` is announced with a pull notification instead (6.10). A second BIND of the
same ``(uuid, resource)`` kicks the older connection (6.13), here or, through the broker's
presence, on another process.
"""

from __future__ import annotations

import logging

from mimc_rx.protocol.events import BindRequested
from mimc_rx.server.auth import TokenService, TokenStatus
from mimc_rx.server.broker import Broker
from mimc_rx.server.config import AppConfig, ServerConfig
from mimc_rx.server.hub.backlog import Backlog
from mimc_rx.server.hub.outbox import Outbox
from mimc_rx.server.hub.registry import ClientLink, Registry
from mimc_rx.server.storage.interface import Storage
from mimc_rx.server.validation import utf8_longer_than

__all__ = ["Login"]

log = logging.getLogger(__name__)


class Login:
    """Answers BIND requests."""

    def __init__(
        self,
        *,
        storage: Storage,
        apps: dict[int, AppConfig],
        config: ServerConfig,
        tokens: TokenService,
        broker: Broker,
        registry: Registry,
        backlog: Backlog,
        outbox: Outbox,
    ) -> None:
        self.storage = storage
        self.apps = apps
        self.config = config
        self.tokens = tokens
        self.broker = broker
        self.registry = registry
        self.backlog = backlog
        self.outbox = outbox

    def on_bind(self, conn: ClientLink, event: BindRequested) -> None:
        """A BIND: refused at once when the resource is too long, else read in order."""
        if utf8_longer_than(event.resource, self.config.max_field_bytes):
            # The resource names a cursor row; the SDKs use a few dozen bytes.
            conn.session.reject_bind("auto", "invalid-resource", "the resource is too long")
            log.info("%s: BIND refused, resource of %d characters", conn, len(event.resource))
            return
        self.backlog.in_order(conn, self._bind(conn, event))

    async def _bind(self, conn: ClientLink, event: BindRequested) -> None:
        session = conn.session
        status, user = await self.tokens.resolve(event.token)
        if conn not in self.registry.connections:
            return  # gone while the token was looked up
        # docs/protocol.md 4.2: the TCP SDKs refetch a token on "token-expired" / "invalid-token".
        if status is TokenStatus.EXPIRED:
            session.reject_bind("token-expired", "token-expired", "the token has expired")
            log.info("%s: BIND refused, expired token", conn)
            return
        if user is None or status is not TokenStatus.VALID:
            session.reject_bind("auto", "invalid-token", "unknown token")
            log.info("%s: BIND refused, unknown token", conn)
            return
        app = self.apps.get(user.app_id)
        if user.uuid != event.uuid or app is None:
            session.reject_bind("auto", "invalid-token", "the token does not match the user")
            log.info("%s: BIND refused, token of uuid %s used by %s", conn, user.uuid, event.uuid)
            return
        # The backlog at login is read before the BIND answer: what the client sends after it
        # is live. Messages committed from here on are read again below (catch_up).
        storage, backlog = self.storage, self.backlog
        uuid, resource, limit = user.uuid, event.resource, self.config.backlog_limit
        cursor = await storage.open_cursor(uuid, resource)
        count, low, high = await storage.backlog_summary(uuid, cursor)
        messages = await storage.backlog(uuid, cursor, count) if 0 < count <= limit else []
        if conn not in self.registry.connections:
            return
        if not session.accept_bind(
            user.security_key, app_id=app.app_id, package=app.package, app_account=user.account
        ):
            log.info("%s: BIND refused, signature mismatch", conn)
            return
        conn.bound(user, app, resource)
        older = self.registry.bind(conn, uuid, resource)
        if older is not None:
            # Same (uuid, resource) logged in again: the newer connection wins (issue 3).
            log.info("%s: kicked by a newer login of the same resource", older)
            older.kick("kick", "same-resource-login", "the same resource logged in elsewhere")
        log.info("%s: bound as %s/%s", conn, user.account, resource)
        feed = backlog.open(conn, cursor)
        self.outbox.touch(conn)  # the BIND answer, then the backlog
        if count > limit:
            # docs/protocol.md 6.10: too many to push; the client pulls or uses history.
            backlog.notify(conn, feed, low, high)
        else:
            backlog.push_stored(conn, feed, messages)
        await self.broker.claim(uuid, resource)  # kicks a holder on another node
        if count <= limit and backlog.feeds.get(conn) is feed:
            await backlog.catch_up(conn, feed)
