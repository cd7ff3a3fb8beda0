"""The table-driven protobuf <-> dataclass mapping shared by ``codec`` and ``codec_uc``.

Every wire message has a frozen dataclass whose fields mirror the proto2 fields one for one.
An optional field *absent* on the wire is ``None``; a field present with its zero value keeps
it (``""``, ``0``, ``False``). That keeps presence exact, so frames we rebuild are byte-identical
to the web SDK's (jspb writes ``kick`` and ``os`` present-but-empty and leaves an undefined
``bizType`` out, docs/protocol.md 4.2, 6.6, 10.1-10.2).

A dataclass field declares its protobuf name with ``pb("appId")`` (and the nested dataclass
for a sub-message). Classes whose protobuf has a ``type`` + ``payload`` pair (MIMCPacket,
UCPacket) register their own fill/read functions and expose one typed ``body`` instead.

Only the codec modules import ``_pb``; decoding raises ``PacketError`` and nothing else.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Final, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from mimc_rx.errors import PacketError
from mimc_rx.protocol._pb import mimc_pb2 as _mimc

__all__ = [
    "FROZEN",
    "MIMCGroup",
    "OpaqueBody",
    "WireUser",
    "constructor",
    "decode_message",
    "decoder",
    "encode_message",
    "encoder",
    "fill_fields",
    "pb",
    "read_fields",
    "register",
    "scalar",
]

FROZEN: Final[dict[str, bool]] = {"frozen": True, "slots": True, "kw_only": True}
"""The dataclass options of every message (STYLE.md 6)."""

_T = TypeVar("_T")

Filler = Callable[[Any, Any], None]
Reader = Callable[[Any, bool], Any]


@dataclass(frozen=True, slots=True)
class _Codec:
    pb_class: type[Message]
    fill: Filler | None
    read: Reader | None


_CODECS: dict[type, _Codec] = {}


def register(
    cls: type, pb_class: type[Message], *, fill: Filler | None = None, read: Reader | None = None
) -> None:
    """Map dataclass ``cls`` to ``pb_class``; ``fill``/``read`` override the field table."""
    _CODECS[cls] = _Codec(pb_class, fill, read)
    for table in (_FILLERS, _READERS, _ENCODERS, _DECODERS):
        table.pop(cls, None)


def pb(name: str, sub: type | None = None, *, repeated: bool = False, default: Any = None) -> Any:
    """Declare a dataclass field mapped to protobuf field ``name``.

    ``sub`` is the dataclass of a nested message, or ``bytes`` for a bytes field.
    """
    meta = {"pb": name, "sub": sub, "repeated": repeated}
    if repeated:
        return field(default=(), metadata=meta)
    return field(default=default, metadata=meta)


def scalar(value: Any, name: str) -> Any:
    """Check a scalar read from a message (upb returns bytes for a non-UTF-8 proto2 string)."""
    if isinstance(value, bytes):
        raise PacketError("bad-utf8", f"field {name} is not valid UTF-8")
    return value


# How a dataclass field maps to its protobuf field; see ``_plan``.
_SCALAR, _BYTES, _MESSAGE, _REPEATED = range(4)

_PLANS: dict[type, tuple[tuple[str, str, int, Any], ...]] = {}


def _plan(cls: type) -> tuple[tuple[str, str, int, Any], ...]:
    """``(attribute, protobuf name, kind, sub)`` for every ``pb()`` field of ``cls``, cached."""
    plan = _PLANS.get(cls)
    if plan is None:
        entries = []
        for f in fields(cls):
            meta = f.metadata
            if "pb" not in meta:
                continue
            sub = meta["sub"]
            if meta["repeated"]:
                kind = _REPEATED
            elif sub is bytes:
                kind = _BYTES
            elif sub is not None:
                kind = _MESSAGE
            else:
                kind = _SCALAR
            entries.append((f.name, meta["pb"], kind, sub))
        plan = _PLANS[cls] = tuple(entries)
    return plan


# ----------------------------------------------------------------------- specialised functions
#
# The field plan of a class is fixed, so instead of walking it for every message, each class
# gets its own fill / read function, generated from the plan the first time the class is used
# and kept in the tables below. The generated code does what a hand-written pair would: one
# attribute access per field, no per-call introspection, and a keyword call of the dataclass.
#
# Reading relies on a proto2 fact to save most ``HasField`` calls: a field whose value differs
# from its declared default is present. Only a field that reads as its default (absent, or
# present with the default value) needs ``HasField`` to tell the two apart (presence stays
# exact, see the module docstring).


def _attr(name: str) -> str:
    """``m.name``, or ``getattr(m, 'name')`` for protobuf names that are Python keywords."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"m.{name}"
    return f"getattr(m, {name!r})"


def _compile(name: str, lines: list[str], namespace: dict[str, Any]) -> Any:
    exec("\n".join(lines), namespace)  # our own source, built from the field plan
    return namespace[name]


class _Table(dict[type, Any]):
    """A per-class cache of generated functions, built on first use by ``build``."""

    def __init__(self, build: Callable[[type], Any]) -> None:
        super().__init__()
        self._build = build

    def __missing__(self, cls: type) -> Any:
        function = self[cls] = self._build(cls)
        return function


def _build_filler(cls: type) -> Filler:
    codec = _CODECS[cls]
    if codec.fill is not None:
        return codec.fill
    namespace: dict[str, Any] = {"FILL": _FILLERS}
    lines = ["def fill(m, o):"]
    for attr, name, kind, _sub in _plan(cls):
        target = _attr(name)
        if kind == _REPEATED:
            lines += [
                f"    t = {target}",
                f"    for item in o.{attr}:",
                "        FILL[type(item)](t.add(), item)",
            ]
            continue
        lines += [f"    v = o.{attr}", "    if v is not None:"]
        if kind == _MESSAGE:
            # SetInParent: present even when every field of the child is absent.
            lines += [
                f"        c = {target}",
                "        c.SetInParent()",
                "        FILL[type(v)](c, v)",
            ]
        elif name.isidentifier() and not keyword.iskeyword(name):
            lines.append(f"        m.{name} = v")
        else:
            lines.append(f"        setattr(m, {name!r}, v)")
    if len(lines) == 1:
        lines.append("    pass")
    filler: Filler = _compile("fill", lines, namespace)
    return filler


def _build_reader(cls: type) -> Reader:
    codec = _CODECS[cls]
    if codec.read is not None:
        return codec.read
    descriptor = codec.pb_class.DESCRIPTOR
    namespace: dict[str, Any] = {"cls": cls, "READ": _READERS, "bad_utf8": _bad_utf8}
    lines = ["def read(m, strict):", "    has = m.HasField"]
    plan = _plan(cls)
    for i, (_name, name, kind, sub) in enumerate(plan):
        source, var = _attr(name), f"a{i}"
        if kind == _REPEATED:
            namespace[f"R{i}"] = _READERS[sub]
            lines.append(f"    {var} = tuple([R{i}(x, False) for x in {source}])")
        elif kind == _MESSAGE:
            namespace[f"R{i}"] = _READERS[sub]
            lines.append(f"    {var} = R{i}({source}, True) if has({name!r}) else None")
        else:
            fd = descriptor.fields_by_name[name]
            namespace[f"D{i}"] = default = fd.default_value
            differs = "v" if not default else f"v != D{i}"
            lines += [f"    v = {source}", f"    if {differs}:"]
            if fd.type == FieldDescriptor.TYPE_STRING:
                # upb hands back bytes for a proto2 string that is not valid UTF-8.
                lines.append(f"        if v.__class__ is bytes: bad_utf8({name!r})")
            lines += [
                f"        {var} = v",
                "    else:",
                f"        {var} = v if has({name!r}) else None",
            ]
    namespace["make"] = constructor(cls, tuple(attr for attr, *_ in plan))
    lines.append(f"    return make({', '.join(f'a{i}' for i in range(len(plan)))})")
    reader: Reader = _compile("read", lines, namespace)
    return reader


def constructor(cls: type[_T], names: tuple[str, ...]) -> Callable[..., _T]:
    """A positional constructor of frozen slotted dataclass ``cls`` for fields ``names``.

    The frozen ``__init__`` sets each field through ``object.__setattr__``, which costs twice
    what writing the slot directly does; decoding builds several objects per packet, so the
    codec uses this instead. It is the plain keyword call whenever bypassing ``__init__``
    could change the result: a ``__post_init__``, or fields outside ``names``.
    """
    if hasattr(cls, "__post_init__") or {f.name for f in fields(cls)} != set(names):  # type: ignore[arg-type]

        def keywords(*args: Any) -> _T:
            return cls(**dict(zip(names, args, strict=True)))

        return keywords
    namespace: dict[str, Any] = {"cls": cls, "new": object.__new__}
    params = ", ".join(f"a{i}" for i in range(len(names)))
    lines = [f"def make({params}):", "    o = new(cls)"]
    for i, name in enumerate(names):
        namespace[f"S{i}"] = cls.__dict__[name].__set__  # the slot's member descriptor
        lines.append(f"    S{i}(o, a{i})")
    lines.append("    return o")
    make: Callable[..., _T] = _compile("make", lines, namespace)
    return make


def _build_encoder(cls: type) -> Callable[[Any], bytes]:
    pb_class, fill = _CODECS[cls].pb_class, _FILLERS[cls]

    def encode(obj: Any) -> bytes:
        msg = pb_class()
        fill(msg, obj)
        # Partial: proto2 `required` (UCPacket) is not enforced by the web SDK either.
        return msg.SerializePartialToString()

    return encode


def _build_decoder(cls: type) -> Callable[[bytes], Any]:
    pb_class, read = _CODECS[cls].pb_class, _READERS[cls]

    def decode(data: bytes) -> Any:
        msg = pb_class()
        try:
            msg.ParseFromString(data)
            return read(msg, True)
        except PacketError:
            raise
        except Exception as exc:  # DecodeError, RecursionError...: never leak them (STYLE.md 3)
            raise PacketError("bad-protobuf", f"{cls.__name__}: {exc}") from exc

    return decode


def _bad_utf8(name: str) -> None:
    raise PacketError("bad-utf8", f"field {name} is not valid UTF-8")


_FILLERS: Final[_Table] = _Table(_build_filler)
_READERS: Final[_Table] = _Table(_build_reader)
_ENCODERS: Final[_Table] = _Table(_build_encoder)
_DECODERS: Final[_Table] = _Table(_build_decoder)


def fill_fields(msg: Any, obj: Any) -> None:
    """Copy the present (non-``None``) fields of dataclass ``obj`` into protobuf ``msg``."""
    _FILLERS[type(obj)](msg, obj)


def read_fields(msg: Any, cls: type[_T]) -> _T:
    """Build dataclass ``cls`` from protobuf ``msg``, absent fields as ``None``."""
    result: _T = _READERS[cls](msg, True)
    return result


def encoder(cls: type) -> Callable[[Any], bytes]:
    """The encode function of a registered class (what ``encode_message`` calls)."""
    function: Callable[[Any], bytes] = _ENCODERS[cls]
    return function


def decoder(cls: type[_T]) -> Callable[[bytes], _T]:
    """The decode function of a registered class (what ``decode_message`` calls)."""
    function: Callable[[bytes], _T] = _DECODERS[cls]
    return function


def encode_message(obj: Any) -> bytes:
    """Serialize any registered message dataclass to protobuf bytes (fields in number order)."""
    result: bytes = _ENCODERS[type(obj)](obj)
    return result


def decode_message(cls: type[_T], data: bytes) -> _T:
    """Parse protobuf bytes into dataclass ``cls``; raises ``PacketError`` on junk, only that."""
    result: _T = _DECODERS[cls](data)
    return result


# --------------------------------------------------------------------------- shared messages


@dataclass(**FROZEN)
class WireUser:
    """The wire MIMCUser message (docs/protocol.md 4.3); each field may be absent."""

    app_id: int | None = pb("appId")
    app_account: str | None = pb("appAccount")
    uuid: int | None = pb("uuid")
    resource: str | None = pb("resource")


@dataclass(**FROZEN)
class MIMCGroup:
    """A group: MIMCGroup for P2T and UCGroup for unlimited groups (same shape, 4.3)."""

    app_id: int | None = pb("appId")
    topic_id: int | None = pb("topicId")


@dataclass(**FROZEN)
class OpaqueBody:
    """A packet body we do not interpret, or could not decode (then ``error`` says why).

    ``type`` is the raw type number (``None`` when absent or not a known enum value).
    """

    type: int | None = None
    payload: bytes | None = None
    error: str = ""


register(WireUser, _mimc.MIMCUser)
register(MIMCGroup, _mimc.MIMCGroup)
