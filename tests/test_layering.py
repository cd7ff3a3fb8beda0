"""The layering rules of STYLE.md 2 and 9, kept honest by reading every import with ``ast``.

Each module of ``mimc_rx`` belongs to one layer, and each layer has an allow-list: the
third-party packages it may import and the ``mimc_rx`` modules it may reach. The standard
library is allowed everywhere except where a layer says otherwise (the protocol core does no
I/O). A new wrong arrow, a module in no layer, or an import circle anywhere fails a test.
Imports inside functions count too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mimc_rx"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "_pb" not in p.parts}


def is_module(name: str) -> bool:
    return name in SOURCES or name.startswith("mimc_rx.protocol._pb")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative ones resolved.

    ``from pkg import mod`` counts as an import of ``pkg.mod`` when that is a module.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            subs = {f"{base}.{alias.name}" for alias in node.names}
            found = {s for s in subs if is_module(s)}
            names.update(found)
            if len(found) < len(subs):
                names.add(base)
    return names


@dataclass(frozen=True)
class Layer:
    """Who may import what: ``reach`` are ``mimc_rx`` prefixes, ``third_party`` top-level names."""

    name: str
    modules: tuple[str, ...]
    third_party: frozenset[str] = frozenset()
    reach: tuple[str, ...] = ()
    no_io: bool = False


CORE = ("mimc_rx.errors", "mimc_rx.protocol")
DRIVER_MODULES = tuple(
    f"mimc_rx.client.{m}"
    for m in ("values", "seams", "transport", "reconnect", "http", "link", "attempt")
)
FACADE_MODULES = tuple(
    f"mimc_rx.client.{m}"
    for m in ("streams", "acks", "router", "supervisor", "lifecycle", "user", "sync", "aiter")
)

# First match wins: list the narrower prefixes first.
LAYERS = (
    Layer("errors", ("mimc_rx.errors",), no_io=True),
    # Which optional extra to install when a part is missing: asked by the server's command
    # line, the adapters and the widgets.
    Layer("extras", ("mimc_rx._extras",), reach=("mimc_rx.errors",), no_io=True),
    Layer(
        "protocol core",
        ("mimc_rx.protocol",),
        frozenset({"google", "arc4"}),
        CORE,
        no_io=True,
    ),
    Layer(
        "client driver",
        DRIVER_MODULES,
        frozenset({"websockets", "httpx"}),
        (*CORE, *DRIVER_MODULES),
    ),
    Layer(
        "client facade",
        (*FACADE_MODULES, "mimc_rx.client"),
        frozenset({"reactivex", "httpx"}),
        (*CORE, "mimc_rx.client"),
    ),
    Layer(
        "adapters",
        ("mimc_rx.frames", "mimc_rx.widgets", "mimc_rx.jupyter"),
        frozenset({"pandas", "pyarrow", "numpy", "matplotlib", "IPython", "ipywidgets"})
        | {"reactivex"},
        # The facade's public names only: the client package, never its modules.
        (
            "mimc_rx.errors",
            "mimc_rx._extras",
            "mimc_rx.protocol.events",
            "mimc_rx.frames",
            "mimc_rx.widgets",
            "mimc_rx.jupyter",
        ),
    ),
    Layer(
        "server",
        ("mimc_rx.server",),
        # psycopg and redis: the scale-out storage and broker (issue 14), imported only by
        # the modules that implement them.
        frozenset(
            {
                "starlette",
                "uvicorn",
                "h11",
                "websockets",
                "httpx",
                "psycopg",
                "psycopg_pool",
                "redis",
            }
        ),
        (*CORE, "mimc_rx.server"),
    ),
    Layer("testing", ("mimc_rx.testing",), frozenset({"websockets"}), ("mimc_rx",)),
    # The network lab drives the core over websockets (virtual users), the facade (lab users),
    # the testing proxy and server process; its tables and plots load lazily.
    Layer(
        "lab",
        ("mimc_rx.lab",),
        frozenset({"websockets", "httpx", "pandas", "numpy", "matplotlib", "hdrhistogram", "tqdm"}),
        ("mimc_rx",),
    ),
    Layer("application", ("mimc_rx", "mimc_rx.__main__", "mimc_rx.demo"), reach=("mimc_rx",)),
)
ADAPTER_CLIENT_NAMES = {"mimc_rx", "mimc_rx.client"}
"""What the adapters may take from the client: its public names (the package, not a module)."""

IO_MODULES = {
    "asyncio", "socket", "ssl", "selectors", "urllib", "http", "threading", "multiprocessing",
    "subprocess", "concurrent",
}  # fmt: skip


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(module: str) -> Layer | None:
    for layer in LAYERS:
        if any(within(module, prefix) for prefix in layer.modules):
            if layer.name == "application" and module not in layer.modules:
                continue
            return layer
    return None


def wrong_arrows(module: str, imports: set[str]) -> list[str]:
    layer = layer_of(module)
    assert layer is not None
    bad = []
    for name in sorted(imports):
        top = name.split(".")[0]
        if top == "mimc_rx":
            if within(module, name) and name != module:
                continue  # a module's own packages are imported with it anyway
            allowed = any(within(name, prefix) for prefix in layer.reach)
            if layer.name == "adapters":
                allowed = allowed or name in ADAPTER_CLIENT_NAMES
            if not allowed:
                bad.append(name)
        elif top in sys.stdlib_module_names or top == "__future__":
            if layer.no_io and top in IO_MODULES:
                bad.append(name)
        elif top not in layer.third_party:
            bad.append(name)
    return bad


GRAPH = {name: imported_modules(path) for name, path in SOURCES.items()}


def test_the_scan_sees_every_layer() -> None:
    assert {"mimc_rx.protocol.client", "mimc_rx.client.user", "mimc_rx.frames.timing"} <= set(
        SOURCES
    )
    assert "mimc_rx.client.transport" in GRAPH["mimc_rx.client.attempt"]
    assert "mimc_rx.protocol.codec" in GRAPH["mimc_rx.protocol.client"]  # from pkg import mod


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_every_module_is_in_a_layer(module: str) -> None:
    assert layer_of(module) is not None, f"{module} is in no layer of tests/test_layering.py"


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_imports_follow_the_layers(module: str) -> None:
    if layer_of(module) is None:
        pytest.skip("no layer (reported by test_every_module_is_in_a_layer)")
    layer = layer_of(module)
    assert layer is not None
    bad = wrong_arrows(module, GRAPH[module])
    assert not bad, f"{module} ({layer.name} layer) may not import {bad}"


def test_there_is_no_import_circle() -> None:
    internal = {
        m: {i for i in imports if i in SOURCES and not within(m, i)} for m, imports in GRAPH.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(internal[node]):
            if state.get(nxt) == 1:
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(internal):
        if node not in state:
            visit(node)
    assert circles == [], " ; ".join(" -> ".join(c) for c in circles)


def test_the_checker_would_catch_wrong_arrows(tmp_path: Path) -> None:
    assert wrong_arrows("mimc_rx.client.transport", {"reactivex"}) == ["reactivex"]
    assert wrong_arrows("mimc_rx.client.reconnect", {"mimc_rx.client.streams"})
    assert wrong_arrows("mimc_rx.protocol.client", {"asyncio"}) == ["asyncio"]
    assert wrong_arrows("mimc_rx.frames.schema", {"mimc_rx.client.values"})
    assert wrong_arrows("mimc_rx.server.hub", {"mimc_rx.client"})
    assert not wrong_arrows("mimc_rx.frames.schema", {"mimc_rx.client", "pandas"})
    fake = PACKAGE / "protocol" / "probe.py"
    assert not fake.exists()


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m.startswith("mimc_rx.protocol")))
def test_only_codec_modules_import_generated_code(module: str) -> None:
    uses_pb = any("_pb" in m.split(".") for m in GRAPH[module])
    codec = {"mimc_rx.protocol.codec", "mimc_rx.protocol.codec_base", "mimc_rx.protocol.codec_uc"}
    assert not uses_pb or module in codec, f"{module} imports _pb"


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools not installed"
)
def test_generated_protobuf_modules_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
