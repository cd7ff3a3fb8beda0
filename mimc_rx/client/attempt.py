"""``Connector``: the parts of one login attempt, each step on its own.

An attempt is three steps, and each can fail in its own way:

1. ``fetch_token()``: call the application's token fetcher (sync ones run in a worker thread,
   so a blocking HTTP call never freezes a notebook) within the login timeout;
2. ``start_session()``: build a fresh protocol core with the user's ``SessionMemory`` and
   hand it the answer; the core checks it (docs/protocol.md 6.1 step 5) and queues CONN;
3. ``open_transport()``: open the websocket that will carry the session.

A step that fails returns the offline ``StatusChange`` that says why, in the web SDK's words
where there are some; nothing here raises for a failed login. The lifecycle
(``mimc_rx.client.lifecycle``) strings the steps together and waits for the BIND result.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from mimc_rx.errors import ConnectionClosed, TokenError
from mimc_rx.protocol.client import ClientSession
from mimc_rx.protocol.events import ClientEvent, StatusChange
from mimc_rx.protocol.memory import SessionMemory

from .seams import EventSink, TokenAnswer, TokenFetcher, Transport, TransportFactory, UserSession
from .transport import WebSocketTransport, describe_exception
from .values import DisconnectReason, TransportOptions, offline_status

__all__ = ["Connector", "default_session_factory", "default_transport_factory"]

log = logging.getLogger(__name__)


def default_session_factory(
    app_id: int,
    app_account: str,
    resource: str,
    *,
    memory: SessionMemory,
    auto_pull: bool,
) -> ClientSession:
    """The real protocol core, ``mimc_rx.protocol.client.ClientSession`` (a ``SessionFactory``)."""
    return ClientSession(app_id, app_account, resource, memory=memory, auto_pull=auto_pull)


def default_transport_factory(
    session: UserSession, url: str, on_events: EventSink, options: TransportOptions
) -> WebSocketTransport:
    """A real websocket, ``WebSocketTransport`` (a ``TransportFactory``)."""
    return WebSocketTransport(session, url, on_events, options=options)


class Connector:
    """Makes a token, a logged-in session and an open transport for one attempt.

    Args:
        token_fetcher: see ``MIMCUser``; called once per attempt.
        new_session: builds a fresh protocol core (bound to the user's memory).
        transport_factory: builds the transport around a session.
        url: the websocket URL.
        transport_options: websocket settings.
        login_timeout: seconds a whole attempt may take, token fetch included.
    """

    def __init__(
        self,
        *,
        token_fetcher: TokenFetcher,
        new_session: Callable[[], UserSession],
        transport_factory: TransportFactory,
        url: str,
        transport_options: TransportOptions,
        login_timeout: float,
    ) -> None:
        self._fetch = token_fetcher
        self._new_session = new_session
        self._transport_factory = transport_factory
        self.url = url
        self.transport_options = transport_options
        self.login_timeout = login_timeout

    async def fetch_token(self) -> TokenAnswer | StatusChange:
        """The token service's answer, or the offline status saying why there is none."""
        try:
            return await asyncio.wait_for(self._call_fetcher(), self.login_timeout)
        except TokenError as exc:
            return offline_status(exc.err_type, exc.err_reason, exc.err_desc)
        except Exception as exc:
            log.warning("token fetcher failed: %s", describe_exception(exc))
            return offline_status(
                "get token failed", "token fetcher raised", describe_exception(exc)
            )

    async def _call_fetcher(self) -> TokenAnswer:
        fetch = self._fetch
        if inspect.iscoroutinefunction(fetch) or inspect.iscoroutinefunction(
            getattr(fetch, "__call__", None)  # noqa: B004 - async callable objects
        ):
            result: Any = await fetch()  # type: ignore[misc]
        else:
            # A sync fetcher may block on HTTP (the web demo's is a blocking XHR): keep it off
            # the loop so a notebook stays responsive.
            result = await asyncio.to_thread(fetch)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]

    def start_session(
        self, answer: TokenAnswer, now: float
    ) -> tuple[UserSession, list[ClientEvent], StatusChange | None]:
        """A new core logged in with ``answer``: the session, its first events, and a refusal.

        The refusal is the offline status the core emitted when it refused the answer
        (6.1 step 5); then no connection is needed.
        """
        session = self._new_session()
        session.login(answer, now=now)
        events = session.events_received()
        refusal = next(
            (e for e in events if isinstance(e, StatusChange) and not e.online),
            None,
        )
        return session, events, refusal

    async def open_transport(
        self, session: UserSession, on_events: EventSink
    ) -> Transport | StatusChange:
        """The open transport carrying ``session``, or the offline status saying why not."""
        transport = self._transport_factory(session, self.url, on_events, self.transport_options)
        try:
            await transport.open()
        except ConnectionClosed as exc:
            return offline_status(
                "connect failed", DisconnectReason.CONNECT_FAILED.value, exc.reason
            )
        return transport
