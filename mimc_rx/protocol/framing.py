"""The web ("V5") frame of docs/protocol.md 2: parse and serialize, Adler-32 included.

One websocket binary message carries exactly one frame::

    offset 0   u16 magic 0xC2FE     offset 8   u16 header length H
    offset 2   u16 version 4        offset 10  u32 payload length P
    offset 4   u16 header type 3    offset 14  H bytes ClientHeader, then P bytes payload
    offset 6   u16 payload type 2   offset 14+H+P  u32 Adler-32 of every byte before it

All integers are big-endian. Like web SDK 1.0.3 we accept any magic, version and types (they
are kept in the ``Frame`` so a parsed frame serializes back to the same bytes), but the
lengths must match the message exactly and the checksum must be right. ``parse_frame`` raises
only ``FrameError``, whose ``reason`` is one of ``FRAME_ERROR_REASONS``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from mimc_rx.errors import FrameError, LocalProtocolError
from mimc_rx.protocol.codec import Header, decode_header, encode_header

__all__ = [
    "FRAME_ERROR_REASONS",
    "HEADER_TYPE_PROTOBUF",
    "MAGIC",
    "MIN_FRAME_SIZE",
    "PAYLOAD_TYPE_PROTOBUF",
    "WEB_VERSION",
    "Frame",
    "Header",
    "adler32",
    "frame_bytes",
    "parse_frame",
    "serialize_frame",
    "split_frame",
]

MAGIC: Final = 0xC2FE
WEB_VERSION: Final = 4  # the SDK calls it "packet V5" but writes 4 (docs/protocol.md 2.1)
HEADER_TYPE_PROTOBUF: Final = 3
PAYLOAD_TYPE_PROTOBUF: Final = 2

_PREFIX: Final = struct.Struct(">HHHHHI")  # magic, version, header type, payload type, H, P
_CHECKSUM: Final = struct.Struct(">I")
MIN_FRAME_SIZE: Final = _PREFIX.size + _CHECKSUM.size  # 18: empty header and payload

FRAME_ERROR_REASONS: Final = frozenset(
    {"too-short", "truncated", "length-mismatch", "bad-checksum", "bad-header"}
)
"""Every ``FrameError.reason`` that ``parse_frame`` can raise."""


def adler32(data: bytes) -> int:
    """The zlib Adler-32 (start 1, modulus 65521) that ends every frame (docs/protocol.md 2.1)."""
    return zlib.adler32(data) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One web frame: a typed ClientHeader and the raw (possibly RC4-encrypted) payload."""

    header: Header
    payload: bytes = b""
    magic: int = MAGIC
    version: int = WEB_VERSION
    header_type: int = HEADER_TYPE_PROTOBUF
    payload_type: int = PAYLOAD_TYPE_PROTOBUF


def serialize_frame(frame: Frame) -> bytes:
    """Build the bytes of ``frame``, checksum included.

    Raises:
        LocalProtocolError: the header or payload does not fit its length field.
    """
    header = encode_header(frame.header)
    if len(header) > 0xFFFF:
        raise LocalProtocolError(f"header of {len(header)} bytes does not fit a u16 length")
    if len(frame.payload) > 0xFFFFFFFF:
        raise LocalProtocolError(f"payload of {len(frame.payload)} bytes is too long")
    try:
        prefix = _PREFIX.pack(
            frame.magic,
            frame.version,
            frame.header_type,
            frame.payload_type,
            len(header),
            len(frame.payload),
        )
    except struct.error as exc:
        raise LocalProtocolError(f"frame prefix field out of range: {exc}") from exc
    body = prefix + header + frame.payload
    return body + _CHECKSUM.pack(adler32(body))


_WEB_PREFIX: Final = struct.Struct(">HHHHHI").pack(
    MAGIC, WEB_VERSION, HEADER_TYPE_PROTOBUF, PAYLOAD_TYPE_PROTOBUF, 0, 0
)[:8]
_LENGTHS: Final = struct.Struct(">HI")


def frame_bytes(header: bytes, payload: bytes = b"") -> bytes:
    """The bytes of a web frame with the default magic/version/types, from an encoded header.

    The same bytes as ``serialize_frame(Frame(header=decode_header(header), payload=payload))``
    for the sessions' hot path, which encodes headers with a ``HeaderTemplate``.

    Raises:
        LocalProtocolError: the header or payload does not fit its length field.
    """
    if len(header) > 0xFFFF or len(payload) > 0xFFFFFFFF:
        raise LocalProtocolError(f"header ({len(header)} B) or payload too long for a frame")
    body = b"".join((_WEB_PREFIX, _LENGTHS.pack(len(header), len(payload)), header, payload))
    return body + _CHECKSUM.pack(zlib.adler32(body))


def parse_frame(data: bytes) -> Frame:
    """Parse one websocket message into a ``Frame``.

    Raises:
        FrameError: ``too-short`` (under 18 bytes), ``truncated`` (shorter than its lengths
            say), ``length-mismatch`` (longer), ``bad-checksum``, or ``bad-header``.
    """
    magic, version, header_type, payload_type, header, payload = split_frame(data)
    return Frame(
        header=decode_header(header),
        payload=payload,
        magic=magic,
        version=version,
        header_type=header_type,
        payload_type=payload_type,
    )


def split_frame(data: bytes) -> tuple[int, int, int, int, bytes, bytes]:
    """``(magic, version, header_type, payload_type, header, payload)`` of one websocket
    message, lengths and checksum checked, the header still encoded: ``parse_frame`` without
    the header's decoding, for a session that reads only a few header fields
    (``codec.decode_header_fields``).

    Raises:
        FrameError: ``parse_frame``'s reasons but ``bad-header``.
    """
    if data.__class__ is not bytes:
        data = bytes(data)
    if len(data) < MIN_FRAME_SIZE:
        raise FrameError("too-short", f"{len(data)} bytes, a frame has at least {MIN_FRAME_SIZE}")
    magic, version, header_type, payload_type, hlen, plen = _PREFIX.unpack_from(data)
    expected = MIN_FRAME_SIZE + hlen + plen
    if len(data) < expected:
        raise FrameError("truncated", f"{len(data)} bytes, the lengths say {expected}")
    if len(data) > expected:
        raise FrameError("length-mismatch", f"{len(data)} bytes, the lengths say {expected}")
    end = expected - _CHECKSUM.size
    (checksum,) = _CHECKSUM.unpack_from(data, end)
    # docs/protocol.md 2.1: Adler-32 over every byte before the checksum; the SDK drops a mismatch.
    if zlib.adler32(memoryview(data)[:end]) != checksum:
        raise FrameError("bad-checksum", f"checksum {checksum:#010x} does not match the frame")
    start = _PREFIX.size
    return (
        magic,
        version,
        header_type,
        payload_type,
        data[start : start + hlen],
        data[start + hlen : end],
    )
