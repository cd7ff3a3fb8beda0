"""Notebook helpers: cells that can run again, stream output in the cell that asked, ``%mimc``.

People re-run cells. A cell that subscribes, opens a chat panel, starts a server or logs a user
in leaves the previous run's object alive when it runs again: two subscriptions answer every
message, two servers hold two ports. Here every object made through these helpers is *kept*
under a key, and keeping a new one under the same key stops the old one first:

* the key is the cell's id (JupyterLab and Notebook 7 send it with each execution, and
  ipykernel hands it on) plus a name for what is kept (``"server"``, ``"user alice"``,
  ``"panel alice"``, ``"subscription 1"``...);
* without a cell id (an older front end, nbclient), the cell's source stands in for it, so
  re-running the same unchanged cell still replaces;
* an explicit ``name=`` is a key of its own, valid across cells.

The helpers:

* :func:`keep` a server, a user, a panel or any disposable: ``server = keep(LocalServer())``;
* :func:`subscribe`: ``subscribe(bob.p2p_messages, answer)``, kept and counted;
* :func:`display_stream` (or ``stream.pipe(to_output())``): renders a stream into the output
  area of the cell that asked, newest last, bounded, updated in place. A subscriber's ``print``
  lands in whichever cell happens to be running when the value arrives; this does not;
* :func:`kept` lists what is alive; :func:`stop` stops one or all of it (awaitable);
* ``%load_ext mimc_rx`` registers the ``%mimc`` magic: ``%mimc`` lists, ``%mimc stop [name]``
  stops.

IPython is imported only when something is displayed or the magic is loaded.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import html
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reactivex import Observable
from reactivex.abc import DisposableBase

from mimc_rx.protocol.events import P2PMessage, P2TMessage, UCMessage

__all__ = [
    "Kept",
    "StreamOutput",
    "cell_key",
    "display_stream",
    "keep",
    "kept",
    "load_ipython_extension",
    "stop",
    "subscribe",
    "to_output",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


# --------------------------------------------------------------------------- the cell


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _parent() -> dict[str, Any] | None:
    """The execute request being handled (ipykernel keeps it as the shell's parent)."""
    shell = _ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent("shell")
    except TypeError:  # ipykernel < 6.20 takes no channel
        parent = kernel.get_parent()
    except Exception:
        return None
    return parent if isinstance(parent, dict) else None


def cell_key() -> str | None:
    """The running cell's identity: its id, else a digest of its source; None outside a kernel.

    The front end puts the cell's id in the execute request's metadata (``cellId``).
    """
    parent = _parent()
    if parent is None:
        return None
    cell_id = (parent.get("metadata") or {}).get("cellId")
    if cell_id:
        return f"cell {cell_id}"
    code = (parent.get("content") or {}).get("code")
    if code:
        return "source " + hashlib.sha1(code.encode(), usedforsecurity=False).hexdigest()[:12]
    return None


_RUN: dict[str, Any] = {"id": None, "ordinals": {}}
"""The execution being handled and how many objects of each kind it has kept so far."""


def _ordinal(kind: str) -> int:
    """1 for the first ``kind`` kept by this run of the cell, 2 for the second..."""
    parent = _parent() or {}
    run_id = (parent.get("header") or {}).get("msg_id")
    if run_id is None or run_id != _RUN["id"]:
        _RUN["id"] = run_id
        _RUN["ordinals"] = {}
    ordinals: dict[str, int] = _RUN["ordinals"]
    ordinals[kind] = ordinals.get(kind, 0) + 1
    return ordinals[kind]


# --------------------------------------------------------------------------- what is kept


@dataclass
class Kept:
    """One object kept alive by these helpers, and how to stop it."""

    name: str
    kind: str
    """``server``, ``user``, ``panel``, ``subscription``, ``output`` or ``object``."""
    obj: Any
    cell: str | None
    count: Callable[[], str] = field(default=lambda: "")
    """A short summary of what it has seen (messages, values)."""
    made_at: float = field(default_factory=time.time)

    def stop(self) -> Any:
        """Stop the object; returns an awaitable when stopping takes a while (a server)."""
        return _stop_object(self.obj)


_KEPT: dict[tuple[str | None, str], Kept] = {}
_LOCK = threading.RLock()
_TASKS: set[asyncio.Future[Any]] = set()


def _kind(obj: Any) -> str:
    if hasattr(obj, "ws_url") and hasattr(obj, "stop"):
        return "server"
    if hasattr(obj, "app_account") and hasattr(obj, "send_message"):
        return "user"
    if hasattr(obj, "model") and hasattr(obj, "widget"):
        return "panel"
    if isinstance(obj, StreamOutput):
        return "output"
    if isinstance(obj, DisposableBase) or hasattr(obj, "dispose"):
        return "subscription"
    return "object"


def _default_name(kind: str, obj: Any) -> str:
    if kind in ("user", "panel"):
        account = getattr(obj, "app_account", None) or getattr(
            getattr(obj, "model", None), "me", ""
        )
        return f"{kind} {account}"
    if kind == "server":
        return "server"
    return f"{kind} {_ordinal(kind)}"


def _count_of(kind: str, obj: Any) -> Callable[[], str]:
    if kind == "user":
        return lambda: "sent {sent}, received {received}".format(**obj.counts)
    if kind == "server":
        return lambda: str(getattr(obj, "ws_url", ""))
    if kind == "panel":
        return lambda: f"{len(obj.model.conversations)} conversations"
    if kind == "output":
        return lambda: f"{obj.seen} values"
    return lambda: ""


def _stop_object(obj: Any) -> Any:
    """Dispose, close or stop ``obj``, whichever it offers (a user is closed: logged out)."""
    for method in ("dispose", "close", "stop"):
        action = getattr(obj, method, None)
        if callable(action):
            return action()
    return None


def _schedule(result: Any, what: str) -> asyncio.Future[Any] | None:
    """Run an awaitable result of a stop on the running loop, and log if it fails."""
    if not inspect.isawaitable(result):
        return None
    try:
        future = asyncio.ensure_future(result)
    except RuntimeError:  # no running loop: run it here (a plain script)
        asyncio.run(_as_coroutine(result))
        return None

    def done(task: asyncio.Future[Any]) -> None:
        _TASKS.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("stopping %s failed: %r", what, task.exception())

    _TASKS.add(future)
    future.add_done_callback(done)
    return future


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


def keep(obj: _T, name: str | None = None, *, count: Callable[[], str] | None = None) -> _T:
    """Keep ``obj`` alive under this cell (or ``name``), stopping what the last run kept there.

    Returns ``obj``, so it reads as an assignment: ``server = keep(LocalServer())``. A server
    is stopped with ``stop()``, a user with ``close()`` (logout), a panel with ``close()``, a
    subscription with ``dispose()``; an asynchronous stop runs on the notebook's loop.

    Args:
        obj: what to keep.
        name: the key; by default one made from the kind of object (``"user alice"``), under
            the current cell.
        count: a summary shown by ``%mimc`` (default: one suited to the kind).
    """
    kind = _kind(obj)
    label = name or _default_name(kind, obj)
    cell = None if name is not None else cell_key()
    entry = Kept(label, kind, obj, cell, count or _count_of(kind, obj))
    with _LOCK:
        old = _KEPT.pop((cell, label), None)
        _KEPT[(cell, label)] = entry
    if old is not None and old.obj is not obj:
        log.info("replacing %s kept by an earlier run of this cell", old.name)
        _schedule(old.stop(), old.name)
    return obj


def kept() -> list[Kept]:
    """What is alive, oldest first."""
    with _LOCK:
        return sorted(_KEPT.values(), key=lambda k: k.made_at)


async def stop(name: str | None = None) -> list[str]:
    """Stop what is kept (everything, or the entries named ``name``); their names.

    Subscriptions, outputs and panels go first, then users, then servers, so nothing is
    left talking to a stopped server.
    """
    with _LOCK:
        chosen = [(key, k) for key, k in _KEPT.items() if name is None or k.name == name]
        for key, _k in chosen:
            del _KEPT[key]
    order = {"subscription": 0, "output": 0, "panel": 1, "object": 2, "user": 3, "server": 4}
    chosen.sort(key=lambda item: order[item[1].kind])
    for _key, entry in chosen:
        result = entry.stop()
        if inspect.isawaitable(result):
            try:
                await result
            except Exception as exc:
                log.warning("stopping %s failed: %r", entry.name, exc)
    return [entry.name for _key, entry in chosen]


def _stop_soon(name: str | None) -> list[str]:
    """``stop()`` from synchronous code (the magic): awaited on the loop after this cell."""
    with _LOCK:
        names = [k.name for k in _KEPT.values() if name is None or k.name == name]
    if names:
        _schedule(stop(name), name or "everything")
    return names


# --------------------------------------------------------------------------- subscribe


class _CountingSubscription(DisposableBase):
    """A subscription that counts the values it delivered (``%mimc`` shows the count)."""

    def __init__(self) -> None:
        self.seen = 0
        self.inner: DisposableBase | None = None
        self.disposed = False

    def dispose(self) -> None:
        self.disposed = True
        if self.inner is not None:
            self.inner.dispose()


def subscribe(
    source: Observable[_T],
    on_next: Callable[[_T], Any] | None = None,
    on_error: Callable[[Exception], Any] | None = None,
    on_completed: Callable[[], Any] | None = None,
    *,
    name: str | None = None,
) -> DisposableBase:
    """``source.subscribe(...)``, kept: re-running the cell replaces the subscription.

    Returns the subscription (``dispose()`` ends it). ``%mimc`` shows how many values it saw.
    """
    holder = _CountingSubscription()

    def counted(value: _T) -> None:
        holder.seen += 1
        if on_next is not None:
            on_next(value)

    holder.inner = source.subscribe(counted, on_error, on_completed)
    keep(holder, name, count=lambda: f"{holder.seen} values")
    return holder


# --------------------------------------------------------------------------- output


def _describe(value: Any) -> str:
    """One line for a value: messages as ``time sender -> target: text``, others by repr."""
    if isinstance(value, P2PMessage | P2TMessage | UCMessage):
        when = time.strftime("%H:%M:%S", time.localtime(value.timestamp / 1000))
        target = value.to_account if isinstance(value, P2PMessage) else f"#{value.topic_id}"
        return f"{when} {value.from_account} → {target}: {value.text}"
    return repr(value)


class StreamOutput(DisposableBase):
    """A stream rendered into one output area, newest last, at most ``max_items`` lines.

    Made by :func:`display_stream` or ``stream.pipe(to_output())``. The output is an IPython
    display with an id, updated in place (``update_display_data``), so it stays in the cell
    that asked whichever cell runs when a value arrives. Updates are sent from the asking
    cell's context (ipykernel keeps the parent message in a context variable), so they are
    attributed to that cell, not to the cell whose task happened to deliver the value (the
    login cell, for a user's stream). Bursts are coalesced into one update per turn of the
    event loop.

    Attributes:
        seen: values received in total.
        lines: the lines shown now, oldest first.
    """

    def __init__(
        self,
        source: Observable[Any],
        *,
        max_items: int = 20,
        title: str | None = None,
        fmt: Callable[[Any], str] = _describe,
    ) -> None:
        from IPython.display import HTML, display

        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.title = title or "stream"
        self.seen = 0
        self.lines: deque[str] = deque(maxlen=max_items)
        self.state = "running"
        self._fmt = fmt
        self._html: Any = HTML
        self._lock = threading.Lock()
        self._pending = False
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread = threading.current_thread()
        self._context = contextvars.copy_context()
        self._handle = display(HTML(self._render()), display_id=True)  # type: ignore[no-untyped-call]
        self._subscription = source.subscribe(self._on_next, self._on_error, self._on_completed)

    def _render(self) -> str:
        with self._lock:
            lines = list(self.lines)
            seen, state = self.seen, self.state
        shown = f"last {len(lines)} of {seen}" if seen > len(lines) else f"{seen}"
        body = "".join(f"<div>{html.escape(line)}</div>" for line in lines) or (
            "<div style='opacity:0.6'>nothing yet</div>"
        )
        return (
            '<div class="mimc-stream-output" style="font-family:var(--jp-code-font-family,'
            'monospace);font-size:var(--jp-code-font-size,13px);max-height:24em;overflow:auto;">'
            f"<div style='opacity:0.7'>{html.escape(self.title)}: {shown} values, {state}</div>"
            f"{body}</div>"
        )

    def _on_next(self, value: Any) -> None:
        line = self._fmt(value)
        with self._lock:
            self.seen += 1
            self.lines.append(line)
        self._update_soon()

    def _on_error(self, error: Exception) -> None:
        with self._lock:
            self.state = f"failed: {error!r}"
        self._update_soon()

    def _on_completed(self) -> None:
        with self._lock:
            self.state = "completed"
        self._update_soon()

    def _update_soon(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._update()
            return
        with self._lock:
            if self._pending:
                return
            self._pending = True
        if threading.current_thread() is self._thread:
            loop.call_soon(self._update, context=self._context)
        else:
            loop.call_soon_threadsafe(self._update, context=self._context)

    def _update(self) -> None:
        with self._lock:
            self._pending = False
        if self._handle is not None:
            self._handle.update(self._html(self._render()))

    def dispose(self) -> None:
        """Unsubscribe; the output keeps its lines and says ``stopped``."""
        self._subscription.dispose()
        with self._lock:
            if self.state == "running":
                self.state = "stopped"
        self._update()

    def __repr__(self) -> str:
        return f"<StreamOutput {self.title!r}: {self.seen} values, {self.state}>"

    def _ipython_display_(self) -> None:
        """Nothing more to show: the output is already on screen, where it was made."""


def display_stream(
    source: Observable[Any],
    *,
    max_items: int = 20,
    title: str | None = None,
    fmt: Callable[[Any], str] = _describe,
    name: str | None = None,
) -> StreamOutput:
    """Show ``source`` in this cell's output, newest last, at most ``max_items`` lines.

    Kept like :func:`keep`: re-running the cell replaces the previous output's subscription.
    Messages are shown as ``time sender → target: text``; pass ``fmt`` for anything else.
    """
    output = StreamOutput(source, max_items=max_items, title=title, fmt=fmt)
    keep(output, name or (f"output {title}" if title else None))
    return output


def to_output(
    *,
    max_items: int = 20,
    title: str | None = None,
    fmt: Callable[[Any], str] = _describe,
    name: str | None = None,
) -> Callable[[Observable[Any]], StreamOutput]:
    """The :func:`display_stream` of a pipe: ``stream.pipe(ops.filter(...), to_output())``."""

    def render(source: Observable[Any]) -> StreamOutput:
        return display_stream(source, max_items=max_items, title=title, fmt=fmt, name=name)

    return render


# --------------------------------------------------------------------------- the magic


class _Listing:
    """What ``%mimc`` shows: a table in a notebook, aligned text elsewhere."""

    def __init__(self, entries: list[Kept]) -> None:
        self.entries = entries

    def _rows(self) -> Iterator[tuple[str, str, str, str]]:
        for entry in self.entries:
            try:
                count = entry.count()
            except Exception as exc:  # a summary must never break the listing
                count = f"({type(exc).__name__})"
            cell = entry.cell or "(named)"
            yield entry.name, entry.kind, count, cell

    def __repr__(self) -> str:
        if not self.entries:
            return "nothing kept (keep(), subscribe(), display_stream() and ChatPanel add here)"
        return "\n".join(f"{n:<22} {k:<13} {c:<34} {cell}" for n, k, c, cell in self._rows())

    def _repr_html_(self) -> str:
        if not self.entries:
            return f"<p>{html.escape(repr(self))}</p>"
        head = "".join(f"<th>{h}</th>" for h in ("name", "kind", "count", "cell"))
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
            for row in self._rows()
        )
        return f"<table><tr>{head}</tr>{body}</table>"


def _mimc_magic(line: str) -> Any:
    """``%mimc``: list what is kept; ``%mimc stop [name]``: stop all of it, or one name."""
    words = line.split(maxsplit=1)
    if not words or words[0] == "list":
        return _Listing(kept())
    if words[0] == "stop":
        name = words[1].strip() if len(words) > 1 else None
        names = _stop_soon(name)
        if not names:
            print(f"nothing kept under {name!r}" if name else "nothing to stop")
        else:
            print("stopping: " + ", ".join(names))
        return None
    print("usage: %mimc [list] | %mimc stop [name]")
    return None


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%mimc`` (``%load_ext mimc_rx`` calls this)."""
    ipython.register_magic_function(_mimc_magic, "line", "mimc")
