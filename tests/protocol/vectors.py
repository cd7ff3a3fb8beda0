"""Load the golden vectors (tests/vectors, copied from ../shared/protocol/vectors) and turn
our dataclasses into the vectors' JSON shape, so decoded fields can be compared whole."""

from __future__ import annotations

import base64
import json
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from mimc_rx.protocol import codec, codec_uc
from mimc_rx.protocol._pb import control_message_pb2, mimc_pb2
from mimc_rx.protocol.codec_base import OpaqueBody

VECTOR_DIR = Path(__file__).resolve().parent.parent / "vectors"
ALL_FILES = sorted(p.stem for p in VECTOR_DIR.glob("*.json"))

APP_ID = 1000000000000000001
PACKAGE = "com.example.fakeapp"
BOB_RESOURCE = "4b21b32b612e875213f1203aba026291"


@cache
def load(name: str) -> dict[str, Any]:
    with (VECTOR_DIR / f"{name}.json").open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def examples(name: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = load(name)["examples"]
    return result


def frame_bytes(name: str, index: int = 0) -> bytes:
    return bytes.fromhex(examples(name)[index]["hex"])


def all_examples() -> list[tuple[str, int, dict[str, Any]]]:
    """(file, index, example) for every captured frame."""
    return [
        (name, i, example)
        for name in ALL_FILES
        if "examples" in load(name)
        for i, example in enumerate(examples(name))
    ]


def token_answer(account: str) -> dict[str, Any]:
    """The recorded token service answer for ``account``."""
    for exchange in load("http_exchanges")["exchanges"]:
        if exchange["path"] == "/api/account/token":
            resp: dict[str, Any] = exchange["resp"]
            if resp["data"]["appAccount"] == account:
                return resp
    raise KeyError(account)


# ----------------------------------------------------------------------------- to JSON shape

_PB_CLASS: dict[type, Any] = {
    codec.Header: control_message_pb2.ClientHeader,
    codec.ConnRequest: control_message_pb2.XMMsgConn,
    codec.ConnResponse: control_message_pb2.XMMsgConnResp,
    codec.BindRequest: control_message_pb2.XMMsgBind,
    codec.BindResponse: control_message_pb2.XMMsgBindResp,
    codec.WireUser: mimc_pb2.MIMCUser,
    codec.MIMCGroup: mimc_pb2.MIMCGroup,
    codec.MIMCP2PMessage: mimc_pb2.MIMCP2PMessage,
    codec.MIMCP2TMessage: mimc_pb2.MIMCP2TMessage,
    codec.MIMCPacketAck: mimc_pb2.MIMCPacketAck,
    codec.MIMCSequenceAck: mimc_pb2.MIMCSequenceAck,
    codec.PullMessageRequest: mimc_pb2.PullMessageRequest,
    codec.MIMCPacketList: mimc_pb2.MIMCPacketList,
    codec_uc.UCJoin: mimc_pb2.UCJoin,
    codec_uc.UCJoinResp: mimc_pb2.UCJoinResp,
    codec_uc.UCQuit: mimc_pb2.UCQuit,
    codec_uc.UCQuitResp: mimc_pb2.UCQuitResp,
    codec_uc.UCPing: mimc_pb2.UCPing,
    codec_uc.UCSequenceAck: mimc_pb2.UCSequenceAck,
    codec_uc.UCMessageBody: mimc_pb2.UCMessage,
    codec_uc.UCMessageList: mimc_pb2.UCMessageList,
    codec_uc.UCDismiss: mimc_pb2.UCDismiss,
}
_LONG = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64}


def to_record(obj: Any) -> Any:
    """Our dataclass in the vectors' ``payload_decoded`` shape: proto field names, 64-bit
    integers as decimal strings, enums by name, bytes as base64, absent fields left out."""
    if isinstance(obj, codec.MIMCPacket):
        rec = _plain(
            packetId=obj.packet_id,
            package=obj.package,
            sequence=_s(obj.sequence),
            type=codec.PacketType(obj.type).name if obj.type is not None else None,
            payload=_b64(_body_bytes(obj.body)),
            timestamp=_s(obj.timestamp),
        )
        if not isinstance(obj.body, OpaqueBody):
            rec["payload_decoded"] = to_record(obj.body)
        return rec
    if isinstance(obj, codec_uc.UCPacket):
        rec = _plain(
            user=to_record(obj.user) if obj.user is not None else None,
            type=codec_uc.UCType(obj.type).name if obj.type is not None else None,
            payload=_b64(_body_bytes(obj.body)),
            packetId=obj.packet_id,
        )
        if not isinstance(obj.body, OpaqueBody | codec_uc.UCPong):
            rec["payload_decoded"] = to_record(obj.body)
        return rec
    descriptor = _PB_CLASS[type(obj)].DESCRIPTOR
    rec = {}
    for f in fields(obj):
        name = f.metadata["pb"]
        value = getattr(obj, f.name)
        fd = descriptor.fields_by_name[name]
        if value is None or (f.metadata["repeated"] and not value):
            continue
        if f.metadata["repeated"]:
            rec[name] = [to_record(v) for v in value]
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            rec[name] = to_record(value)
        elif fd.type == FieldDescriptor.TYPE_BYTES:
            rec[name] = _b64(value)
        elif fd.type == FieldDescriptor.TYPE_ENUM:
            rec[name] = fd.enum_type.values_by_number[value].name
        elif fd.type in _LONG:
            rec[name] = str(value)
        else:
            rec[name] = value
    return rec


def normalize_recorded(rec: Any) -> Any:
    """The recorded shape minus what is not a protobuf field (``payload_utf8``, empty lists)."""
    if isinstance(rec, dict):
        return {k: normalize_recorded(v) for k, v in rec.items() if k != "payload_utf8" and v != []}
    if isinstance(rec, list):
        return [normalize_recorded(v) for v in rec]
    return rec


def _body_bytes(body: Any) -> bytes | None:
    if isinstance(body, OpaqueBody):
        return body.payload
    if isinstance(body, codec_uc.UCPong):
        return body.data
    return codec.encode_message(body)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _s(value: int | None) -> str | None:
    return None if value is None else str(value)


def _plain(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
