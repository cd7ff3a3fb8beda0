"""A blocking wrapper for plain scripts: the event loop runs in a background thread.

``MIMCUser`` is asyncio-native and must stay so for Jupyter, where a loop is already running.
A script without a loop uses ``SyncMIMCUser`` instead: it starts one daemon thread running an
event loop (``LoopThread``), creates the ``MIMCUser`` on it, and turns every call into a
blocking one with ``asyncio.run_coroutine_threadsafe``. Observables are the same objects as the
async user's; their subscribers are called on the loop thread, so keep them short and
thread-safe (appending to a list or putting into a ``queue.Queue`` is fine).

Example::

    with SyncMIMCUser("alice", app_id=APP, token_fetcher=fetch, url=URL) as alice:
        alice.p2p_messages.subscribe(print)
        pid = alice.send_message("bob", "hi")
        print(alice.ack(pid))
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from reactivex import Observable

from .errors import LoginError
from .protocol.events import (
    P2PMessage,
    P2TMessage,
    PacketId,
    PullNotification,
    ServerAck,
    StatusChange,
    UCDismissed,
    UCJoinResult,
    UCMessage,
    UCQuitResult,
)
from .streams import Disconnected
from .user import DEFAULT_ACK_TIMEOUT, MIMCUser

__all__ = ["LoopThread", "SyncMIMCUser"]

_T = TypeVar("_T")


class LoopThread:
    """An asyncio event loop running forever in a daemon thread, until ``stop()``."""

    def __init__(self, name: str = "mimc-rx loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        """Run a coroutine on the loop and block until it finishes (or ``timeout``).

        Raises:
            RuntimeError: called from the loop thread itself (it would deadlock); the
                coroutine is closed first, so no "never awaited" warning follows.
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run() called from its own loop thread would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Call a plain function on the loop thread and return its result (or raise its error).

        Called from the loop thread itself (a subscriber, which runs there), ``fn`` runs
        directly: that is where it would run anyway, and waiting for the loop would deadlock.
        """
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)

        async def invoke() -> _T:
            return fn(*args, **kwargs)

        return self.run(invoke())

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and join the thread; pending tasks are cancelled."""
        if not self.loop.is_running():
            return

        async def cancel_all() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all(), timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        self.loop.close()


class SyncMIMCUser:
    """A blocking ``MIMCUser`` for scripts; takes the same arguments as ``MIMCUser``.

    Args:
        app_account: the account name.
        loop_thread: an existing ``LoopThread`` to share (several users, one thread); by
            default each ``SyncMIMCUser`` starts and owns one.
        **kwargs: passed to ``MIMCUser``.
    """

    def __init__(
        self, app_account: str, *, loop_thread: LoopThread | None = None, **kwargs: Any
    ) -> None:
        self._owns_thread = loop_thread is None
        self.runner = loop_thread or LoopThread()
        try:
            self.user: MIMCUser = self.runner.call(MIMCUser, app_account, **kwargs)
        except BaseException:
            if self._owns_thread:
                self.runner.stop()  # nobody else can stop the thread we just started
            raise

    def _run(self, awaitable: Awaitable[_T], timeout: float | None = None) -> _T:
        async def wrapper() -> _T:
            return await awaitable

        try:
            return self.runner.run(wrapper(), timeout)
        except BaseException:
            # Refused before it ran (called from the loop thread): no "never awaited" warning.
            if inspect.iscoroutine(awaitable) and (
                inspect.getcoroutinestate(awaitable) == inspect.CORO_CREATED
            ):
                awaitable.close()
            raise

    # lifecycle --------------------------------------------------------------

    def login(self) -> StatusChange:
        """Log in and block until the BIND result (see ``MIMCUser.login``)."""
        return self._run(self.user.login())

    def logout(self) -> None:
        """Log out and block until the connection is closed."""
        self._run(self.user.logout())

    def close(self) -> None:
        """Log out and stop the loop thread if this object owns it."""
        try:
            self._run(self.user.close())
        finally:
            if self._owns_thread:
                self.runner.stop()

    def __enter__(self) -> Self:
        status = self.login()
        if not status.online:
            self.close()
            raise LoginError(status.err_type, status.err_reason, status.err_desc)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # commands ---------------------------------------------------------------

    def send_message(
        self, to_account: str, payload: str | bytes, *, is_store: bool = True, biz_type: str = ""
    ) -> PacketId:
        """Send a one-to-one message; returns the packet id."""
        return self.runner.call(
            self.user.send_message, to_account, payload, is_store=is_store, biz_type=biz_type
        )

    def send_group_message(
        self,
        topic_id: int | str,
        payload: str | bytes,
        *,
        is_store: bool = True,
        biz_type: str = "",
    ) -> PacketId:
        """Send a group message; returns the packet id."""
        return self.runner.call(
            self.user.send_group_message, topic_id, payload, is_store=is_store, biz_type=biz_type
        )

    def send_unlimited_group_message(
        self,
        topic_id: int | str,
        payload: str | bytes,
        *,
        is_store: bool = False,
        biz_type: str = "",
    ) -> PacketId:
        """Send to an unlimited group; returns the UC packet id."""
        return self.runner.call(
            self.user.send_unlimited_group_message,
            topic_id,
            payload,
            is_store=is_store,
            biz_type=biz_type,
        )

    def join_unlimited_group(self, topic_id: int | str) -> PacketId:
        """Ask to join an unlimited group."""
        return self.runner.call(self.user.join_unlimited_group, topic_id)

    def quit_unlimited_group(self, topic_id: int | str) -> PacketId:
        """Ask to leave an unlimited group."""
        return self.runner.call(self.user.quit_unlimited_group, topic_id)

    def pull(self) -> PacketId:
        """Ask the server for pending messages."""
        return self.runner.call(self.user.pull)

    def ack(self, packet_id: str, timeout: float | None = DEFAULT_ACK_TIMEOUT) -> ServerAck:
        """Block until the server acks ``packet_id``; ``SendTimeout`` after ``timeout`` s."""
        return self._run(self.user.ack(packet_id, timeout))

    def create_unlimited_group(self, topic_name: str, *, join: bool = True) -> int:
        """Create an unlimited group over REST; returns its id."""
        return self._run(self.user.create_unlimited_group(topic_name, join=join))

    def dismiss_unlimited_group(self, topic_id: int | str) -> None:
        """Dismiss an unlimited group we own."""
        self._run(self.user.dismiss_unlimited_group(topic_id))

    # streams and accessors (the async user's own objects) --------------------

    @property
    def status(self) -> Observable[StatusChange]:
        return self.user.status

    @property
    def server_acks(self) -> Observable[ServerAck]:
        return self.user.server_acks

    @property
    def p2p_messages(self) -> Observable[P2PMessage]:
        return self.user.p2p_messages

    @property
    def group_messages(self) -> Observable[P2TMessage]:
        return self.user.group_messages

    @property
    def uc_messages(self) -> Observable[UCMessage]:
        return self.user.uc_messages

    @property
    def uc_join_results(self) -> Observable[UCJoinResult]:
        return self.user.uc_join_results

    @property
    def uc_quit_results(self) -> Observable[UCQuitResult]:
        return self.user.uc_quit_results

    @property
    def uc_dismissals(self) -> Observable[UCDismissed]:
        return self.user.uc_dismissals

    @property
    def pull_notifications(self) -> Observable[PullNotification]:
        return self.user.pull_notifications

    @property
    def disconnects(self) -> Observable[Disconnected]:
        return self.user.disconnects

    @property
    def is_logged_in(self) -> bool:
        return self.user.is_logged_in

    @property
    def is_connected(self) -> bool:
        return self.user.is_connected

    @property
    def uuid(self) -> int | None:
        return self.user.uuid

    @property
    def token(self) -> str | None:
        return self.user.token

    @property
    def app_account(self) -> str:
        return self.user.app_account

    def __repr__(self) -> str:
        return f"<SyncMIMCUser {self.user!r}>"
