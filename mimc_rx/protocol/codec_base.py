"""The table-driven protobuf <-> dataclass mapping shared by ``codec`` and ``codec_uc``.

Every wire message has a frozen dataclass whose fields mirror the proto2 fields one for one.
An optional field *absent* on the wire is ``None``; a field present with its zero value keeps
it (``""``, ``0``, ``False``). That keeps presence exact, so frames we rebuild are byte-identical
to the web SDK's (jspb writes ``kick`` and ``os`` present-but-empty and leaves an undefined
``bizType`` out, PROTOCOL.md 4.2, 6.6, 10.1-10.2).

A dataclass field declares its protobuf name with ``pb("appId")`` (and the nested dataclass
for a sub-message). Classes whose protobuf has a ``type`` + ``payload`` pair (MIMCPacket,
UCPacket) register their own fill/read functions and expose one typed ``body`` instead.

Only the codec modules import ``_pb``; decoding raises ``PacketError`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, Final, TypeVar

from google.protobuf.message import Message

from mimc_rx.errors import PacketError
from mimc_rx.protocol._pb import mimc_pb2 as _mimc

__all__ = [
    "FROZEN",
    "MIMCGroup",
    "MIMCUser",
    "OpaqueBody",
    "decode_message",
    "encode_message",
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
    """``(attribute, protobuf name, kind, sub)`` for every ``pb()`` field of ``cls``, cached.

    Reading ``dataclasses.fields()`` and their metadata on every message cost more than the
    protobuf parsing itself; the mapping is fixed per class, so it is computed once.
    """
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


def fill_fields(msg: Any, obj: Any) -> None:
    """Copy the present (non-``None``) fields of dataclass ``obj`` into protobuf ``msg``."""
    for attr, name, kind, _sub in _plan(type(obj)):
        value = getattr(obj, attr)
        if kind == _REPEATED:
            target = getattr(msg, name)
            for item in value:
                _fill_any(target.add(), item)
        elif value is None:
            continue
        elif kind == _MESSAGE:
            child = getattr(msg, name)
            child.SetInParent()  # present even when every field of the child is absent
            _fill_any(child, value)
        elif isinstance(value, IntEnum):
            setattr(msg, name, int(value))
        else:
            setattr(msg, name, value)


def read_fields(msg: Any, cls: type[_T]) -> _T:
    """Build dataclass ``cls`` from protobuf ``msg``, absent fields as ``None``."""
    kwargs: dict[str, Any] = {}
    has = msg.HasField
    for attr, name, kind, sub in _plan(cls):
        if kind == _REPEATED:
            kwargs[attr] = tuple(_read_any(item, sub, strict=False) for item in getattr(msg, name))
        elif not has(name):
            kwargs[attr] = None
        elif kind == _SCALAR:
            value = getattr(msg, name)
            if isinstance(value, bytes):  # as scalar(): upb's bytes for a non-UTF-8 string
                raise PacketError("bad-utf8", f"field {name} is not valid UTF-8")
            kwargs[attr] = value
        elif kind == _BYTES:
            kwargs[attr] = bytes(getattr(msg, name))
        else:
            kwargs[attr] = _read_any(getattr(msg, name), sub, strict=True)
    return cls(**kwargs)


def _fill_any(msg: Any, obj: Any) -> None:
    codec = _CODECS[type(obj)]
    (codec.fill or fill_fields)(msg, obj)


def _read_any(msg: Any, cls: type[_T], *, strict: bool) -> _T:
    codec = _CODECS[cls]
    if codec.read is not None:
        result: _T = codec.read(msg, strict)
        return result
    return read_fields(msg, cls)


def encode_message(obj: Any) -> bytes:
    """Serialize any registered message dataclass to protobuf bytes (fields in number order)."""
    msg = _CODECS[type(obj)].pb_class()
    _fill_any(msg, obj)
    # Partial: proto2 `required` (UCPacket) is not enforced by the web SDK either.
    return msg.SerializePartialToString()


def decode_message(cls: type[_T], data: bytes) -> _T:
    """Parse protobuf bytes into dataclass ``cls``; raises ``PacketError`` on junk, only that."""
    msg = _CODECS[cls].pb_class()
    try:
        msg.ParseFromString(data)
        return _read_any(msg, cls, strict=True)
    except PacketError:
        raise
    except Exception as exc:  # DecodeError, RecursionError...: never leak them (STYLE.md 3)
        raise PacketError("bad-protobuf", f"{cls.__name__}: {exc}") from exc


# --------------------------------------------------------------------------- shared messages


@dataclass(**FROZEN)
class MIMCUser:
    """A user (PROTOCOL.md 4.3): appId, appAccount, uuid, resource, each may be absent."""

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


register(MIMCUser, _mimc.MIMCUser)
register(MIMCGroup, _mimc.MIMCGroup)
