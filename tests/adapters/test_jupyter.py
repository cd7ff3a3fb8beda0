"""``mimc_rx.jupyter`` without a kernel: keys, replacement, stopping, output and the magic.

A fake shell stands in for ipykernel's: it hands out the parent message of the "running cell"
the way ipykernel does, so the tests choose the cell id. The same helpers run in a real kernel
in ``test_jupyter_kernel.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from reactivex.subject import Subject

from mimc_rx import jupyter
from mimc_rx.protocol.events import P2PMessage, PacketId


class FakeKernel:
    def __init__(self) -> None:
        self.parent: dict[str, Any] = {}

    def get_parent(self, channel: str = "shell") -> dict[str, Any]:
        return self.parent


class FakeShell:
    def __init__(self) -> None:
        self.kernel = FakeKernel()
        self.magics: dict[str, Any] = {}
        self.runs = 0

    def run_cell(self, cell_id: str | None, code: str = "x = 1") -> None:
        self.runs += 1
        self.kernel.parent = {
            "header": {"msg_id": f"run-{self.runs}"},
            "metadata": {"cellId": cell_id} if cell_id else {},
            "content": {"code": code},
        }

    def register_magic_function(self, fn: Any, kind: str, name: str) -> None:
        self.magics[name] = fn


class Closable:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class AsyncServer:
    ws_url = "ws://127.0.0.1:1/"

    def __init__(self) -> None:
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> FakeShell:
    fake = FakeShell()
    monkeypatch.setattr(jupyter, "_ipython", lambda: fake)
    monkeypatch.setattr(jupyter, "_KEPT", {})
    return fake


def test_the_cell_key_is_the_cell_id_else_the_source(shell: FakeShell) -> None:
    shell.run_cell("abc")
    assert jupyter.cell_key() == "cell abc"
    shell.run_cell(None, "print(1)")
    first = jupyter.cell_key()
    assert first is not None
    assert first.startswith("source ")
    shell.run_cell(None, "print(2)")
    assert jupyter.cell_key() != first


def test_no_kernel_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jupyter, "_ipython", lambda: None)
    assert jupyter.cell_key() is None


def test_rerunning_a_cell_replaces_its_subscription(shell: FakeShell) -> None:
    subject: Subject[int] = Subject()
    got: list[str] = []
    shell.run_cell("cell-1")
    jupyter.subscribe(subject, lambda v: got.append(f"first {v}"), name=None)
    shell.run_cell("cell-1")  # the same cell again
    second = jupyter.subscribe(subject, lambda v: got.append(f"second {v}"))
    subject.on_next(1)
    assert got == ["second 1"]
    assert len(subject.observers) == 1
    shell.run_cell("cell-2")  # another cell keeps its own
    jupyter.subscribe(subject, lambda v: got.append(f"other {v}"))
    subject.on_next(2)
    assert got == ["second 1", "second 2", "other 2"]
    assert [k.count() for k in jupyter.kept()] == ["2 values", "1 values"]
    second.dispose()


def test_an_explicit_name_replaces_across_cells(shell: FakeShell) -> None:
    first, second = Closable(), Closable()
    shell.run_cell("a")
    jupyter.keep(first, name="thing")
    shell.run_cell("b")
    jupyter.keep(second, name="thing")
    assert (first.closed, second.closed) == (1, 0)
    assert [k.obj for k in jupyter.kept()] == [second]


async def test_a_replaced_server_is_stopped_on_the_loop(shell: FakeShell) -> None:
    old, new = AsyncServer(), AsyncServer()
    shell.run_cell("server-cell")
    jupyter.keep(old)
    shell.run_cell("server-cell")
    assert jupyter.keep(new) is new
    await asyncio.sleep(0.01)
    assert old.stopped
    assert not new.stopped
    assert [(k.name, k.kind) for k in jupyter.kept()] == [("server", "server")]


async def test_stop_stops_everything_or_one_name(shell: FakeShell) -> None:
    server, panel = AsyncServer(), Closable()
    shell.run_cell("x")
    jupyter.keep(server)
    jupyter.keep(panel, name="panel")
    assert await jupyter.stop("panel") == ["panel"]
    assert panel.closed == 1
    assert not server.stopped
    assert await jupyter.stop() == ["server"]
    assert server.stopped
    assert jupyter.kept() == []


async def test_the_magic_lists_and_stops(
    shell: FakeShell, capsys: pytest.CaptureFixture[str]
) -> None:
    jupyter.load_ipython_extension(shell)
    magic = shell.magics["mimc"]
    shell.run_cell("c")
    subject: Subject[int] = Subject()
    jupyter.subscribe(subject, name="echo")
    subject.on_next(1)
    listing = magic("")
    assert "echo" in repr(listing)
    assert "1 values" in repr(listing)
    assert "<table>" in listing._repr_html_()
    magic("stop echo")
    assert "stopping: echo" in capsys.readouterr().out
    await asyncio.sleep(0.01)
    assert not subject.observers
    assert "nothing kept" in repr(magic("list"))
    magic("stop")
    assert "nothing to stop" in capsys.readouterr().out


async def test_display_stream_renders_bounded_lines_in_place(
    shell: FakeShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[str] = []

    class Handle:
        def update(self, obj: Any) -> None:
            shown.append(obj.data)

    def display(obj: Any, display_id: bool = False) -> Handle:
        shown.append(obj.data)
        return Handle()

    import IPython.display

    monkeypatch.setattr(IPython.display, "display", display)
    subject: Subject[Any] = Subject()
    shell.run_cell("out")
    output = subject.pipe(jupyter.to_output(max_items=2, title="inbox"))
    assert "nothing yet" in shown[-1]
    message = P2PMessage(
        packet_id=PacketId("p"), sequence=1, timestamp=0, from_account="alice", to_account="bob",
        from_resource="r", to_resource="", payload=b"hi",
    )  # fmt: skip
    for _ in range(3):
        subject.on_next(message)
    await asyncio.sleep(0.01)
    assert len(shown) == 2  # the burst was one update
    assert "last 2 of 3 values" in shown[-1]
    assert "alice → bob: hi" in shown[-1]
    shell.run_cell("out")  # re-run: the old output stops listening
    jupyter.display_stream(subject, title="inbox")
    assert output.state == "stopped"
    assert len(subject.observers) == 1
