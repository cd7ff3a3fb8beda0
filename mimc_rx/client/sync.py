"""A blocking wrapper for plain scripts: the event loop runs in a background thread.

``MIMCUser`` is asyncio-native and must stay so for Jupyter, where a loop is already running.
A script without a loop uses ``SyncMIMCUser`` instead: it starts one daemon thread running an
event loop (``LoopThread``), creates the ``MIMCUser`` on it, and turns every call into a
blocking one with ``asyncio.run_coroutine_threadsafe``. Observables are the same objects as the
async user's; their subscribers are called on the loop thread, so keep them short and
thread-safe (appending to a list or putting into a ``queue.Queue`` is fine).

The blocking members are not written by hand: ``TWINNED`` lists the public members of
``MIMCUser`` that ``SyncMIMCUser`` offers, and each forward is made from the original by its kind
(a property is read as it is, a coroutine method blocks until it is done, a plain method runs on
the loop thread). A test fails when ``MIMCUser`` gains a public member missing from the list.

Example::

    with SyncMIMCUser("alice", app_id=APP, token_fetcher=fetch, url=URL) as alice:
        alice.p2p_messages.subscribe(print)
        pid = alice.send_message("bob", "hi")
        print(alice.ack(pid))
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

from mimc_rx.errors import LoginError
from mimc_rx.protocol.events import StatusChange

from .user import MIMCUser

__all__ = ["TWINNED", "LoopThread", "SyncMIMCUser"]

_T = TypeVar("_T")

_IN_A_LOOP = (
    "SyncMIMCUser blocks its thread, and this thread runs an asyncio event loop (Jupyter's, "
    "or your program's): anything on that loop, a LocalServer started there included, would "
    "stall until the call times out. Use MIMCUser with await instead: "
    "user = MIMCUser(...); await user.login()"
)


def _loop_running_here() -> bool:
    """True when the calling thread is running an asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


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
        if _loop_running_here():
            coro.close()
            raise RuntimeError(_IN_A_LOOP)
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


TWINNED: Final = (
    # streams
    "status",
    "server_acks",
    "p2p_messages",
    "group_messages",
    "uc_messages",
    "uc_join_results",
    "uc_quit_results",
    "uc_dismissals",
    "pull_notifications",
    "disconnects",
    "reconnects",
    "sent_messages",
    "events",
    # accessors
    "app_account",
    "app_id",
    "resource",
    "uuid",
    "token",
    "is_connected",
    "is_logged_in",
    "current_status",
    "url",
    "api_url",
    "login_timeout",
    "transport_options",
    "reconnect_policy",
    "auto_pull",
    "counts",
    # login / logout (``close`` is the twin's own: it also stops the loop thread)
    "login",
    "logout",
    # commands
    "send_message",
    "send_group_message",
    "send_unlimited_group_message",
    "join_unlimited_group",
    "quit_unlimited_group",
    "pull",
    # acks
    "ack_observable",
    "ack",
    "next_message",
    # REST
    "create_group",
    "group_names",
    "dismiss_group",
    "topics_api",
    "create_unlimited_group",
    "dismiss_unlimited_group",
    "unlimited_groups",
)
"""The public members of ``MIMCUser`` that ``SyncMIMCUser`` forwards, in the facade's order."""


class SyncMIMCUser:
    """A blocking ``MIMCUser`` for scripts; takes the same arguments as ``MIMCUser``.

    Every member named in ``TWINNED`` behaves as the ``MIMCUser`` member of that name, except
    that coroutines block until they are done. Observables are the async user's own objects.

    Args:
        app_account: the account name.
        loop_thread: an existing ``LoopThread`` to share (several users, one thread); by
            default each ``SyncMIMCUser`` starts and owns one.
        **kwargs: passed to ``MIMCUser``.
    """

    def __init__(
        self, app_account: str, *, loop_thread: LoopThread | None = None, **kwargs: Any
    ) -> None:
        if _loop_running_here():
            raise RuntimeError(_IN_A_LOOP)
        self._owns_thread = loop_thread is None
        self.runner = loop_thread or LoopThread()
        try:
            self.user: MIMCUser = self.runner.call(MIMCUser, app_account, **kwargs)
        except BaseException:
            if self._owns_thread:
                self.runner.stop()  # nobody else can stop the thread we just started
            raise

    if TYPE_CHECKING:
        # The forwards are made below the class from ``TWINNED``; for the type checker they
        # are what ``MIMCUser`` says, without the awaiting.
        def __getattr__(self, name: str) -> Any: ...

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

    def close(self) -> None:
        """Log out and stop the loop thread if this object owns it."""
        try:
            self._run(self.user.close())
        finally:
            if self._owns_thread:
                self.runner.stop()

    def __enter__(self) -> Self:
        status: StatusChange = self.login()
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

    def __repr__(self) -> str:
        return f"<SyncMIMCUser {self.user!r}>"


def _twin(name: str) -> Any:
    """The blocking forward of ``MIMCUser.<name>``, made by the kind of that member."""
    original = getattr(MIMCUser, name)
    if isinstance(original, property):

        def read(self: SyncMIMCUser) -> Any:
            return getattr(self.user, name)

        read.__doc__ = original.__doc__
        return property(read)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        def block(self: SyncMIMCUser, *args: Any, **kwargs: Any) -> Any:
            return self._run(getattr(self.user, name)(*args, **kwargs))

        return block

    @functools.wraps(original)
    def call(self: SyncMIMCUser, *args: Any, **kwargs: Any) -> Any:
        # On the loop thread: the facade's state belongs to its loop.
        return self.runner.call(getattr(self.user, name), *args, **kwargs)

    return call


for _name in TWINNED:
    setattr(SyncMIMCUser, _name, _twin(_name))
del _name
