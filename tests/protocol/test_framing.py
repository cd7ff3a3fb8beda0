"""The web frame (docs/protocol.md 2): every captured frame, a table of built frames, and errors."""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimc_rx.errors import FrameError, LocalProtocolError
from mimc_rx.protocol.codec import Header, HeaderTemplate, encode_header
from mimc_rx.protocol.framing import (
    FRAME_ERROR_REASONS,
    MIN_FRAME_SIZE,
    Frame,
    adler32,
    frame_bytes,
    parse_frame,
    serialize_frame,
)

from .vectors import all_examples, load

EXAMPLES = all_examples()
IDS = [f"{name}[{i}]" for name, i, _ in EXAMPLES]


@pytest.mark.parametrize(("name", "index", "example"), EXAMPLES, ids=IDS)
def test_captured_frame_parses_to_recorded_fields(
    name: str, index: int, example: dict[str, Any]
) -> None:
    raw = bytes.fromhex(example["hex"])
    decoded = example["decoded"]
    frame = parse_frame(raw)
    assert len(raw) == example["length"]
    assert (frame.magic, frame.version) == (decoded["magic"], decoded["version"])
    assert (frame.header_type, frame.payload_type) == (
        decoded["header_type"],
        decoded["payload_type"],
    )
    assert encode_header(frame.header).hex() == decoded["header_hex"]
    assert len(encode_header(frame.header)) == decoded["header_len"]
    assert frame.payload.hex() == decoded["payload_hex"]
    assert len(frame.payload) == decoded["payload_len"]
    assert adler32(raw[:-4]) == decoded["checksum"]
    assert decoded["checksum_ok"] is True
    recorded = {k: (str(v) if k == "uuid" else v) for k, v in decoded["header"].items()}
    ours = {
        k: (str(v) if k == "uuid" else v)
        for k, v in (
            ("chid", frame.header.chid),
            ("uuid", frame.header.uuid),
            ("server", frame.header.server),
            ("resource", frame.header.resource),
            ("cmd", frame.header.cmd),
            ("id", frame.header.id),
            ("cipher", frame.header.cipher),
        )
        if v is not None
    }
    assert ours == recorded


@pytest.mark.parametrize(("name", "index", "example"), EXAMPLES, ids=IDS)
def test_captured_frame_serializes_back_byte_for_byte(
    name: str, index: int, example: dict[str, Any]
) -> None:
    raw = bytes.fromhex(example["hex"])
    assert serialize_frame(parse_frame(raw)) == raw
    frame = parse_frame(raw)
    rebuilt = serialize_frame(Frame(header=frame.header, payload=frame.payload))  # defaults
    assert rebuilt == raw


def test_adler32_primitives() -> None:
    cases = load("primitives")["adler32"]
    for case in cases:
        if case["input_hex"].startswith("bytes(range(256))"):
            data = bytes(range(256)) * 30
        else:
            data = bytes.fromhex(case["input_hex"])
        assert adler32(data) == case["adler32"] == zlib.adler32(data)


# One table drives both directions: (header, payload) -> exact bytes -> same frame back.
TABLE = [
    (
        Header(server="xiaomi.com", cmd="CONN", id="w1"),
        b"",
        "c2fe000400030002001600000000" + "1a0a7869616f6d692e636f6d2a04434f4e4e3a027731",
    ),
    (Header(), b"", "c2fe000400030002000000000000"),
    (Header(cmd="PING"), b"\x01\x02", "c2fe0004000300020006000000022a0450494e470102"),
    (Header(chid=9, cipher=1), b"x", "c2fe0004000300020004000000010809480178"),
]


@pytest.mark.parametrize(("header", "payload", "prefix_hex"), TABLE)
def test_table_parse_and_serialize(header: Header, payload: bytes, prefix_hex: str) -> None:
    body = bytes.fromhex(prefix_hex)
    raw = body + adler32(body).to_bytes(4, "big")
    assert serialize_frame(Frame(header=header, payload=payload)) == raw
    assert parse_frame(raw) == Frame(header=header, payload=payload)


def test_lenient_about_magic_version_and_types_like_the_sdk() -> None:
    frame = Frame(header=Header(cmd="PING"), magic=0x1234, version=5, header_type=9, payload_type=7)
    assert parse_frame(serialize_frame(frame)) == frame


GOOD = serialize_frame(Frame(header=Header(chid=9, cmd="SECMSG", id="abc"), payload=b"payload"))


def _with_checksum(body: bytes) -> bytes:
    return body + adler32(body).to_bytes(4, "big")


ERRORS = [
    (b"", "too-short"),
    (GOOD[:17], "too-short"),
    (GOOD[:-1], "truncated"),
    (GOOD + b"\x00", "length-mismatch"),
    (GOOD[:-1] + bytes([GOOD[-1] ^ 1]), "bad-checksum"),
    (GOOD[:20] + bytes([GOOD[20] ^ 0x40]) + GOOD[21:], "bad-checksum"),
    # a header that is not protobuf: field 0 is invalid
    (_with_checksum(bytes.fromhex("c2fe0004000300020002000000000000")), "bad-header"),
    # a header string field that is not UTF-8
    (
        _with_checksum(bytes.fromhex("c2fe000400030002000400000000") + b"\x2a\x02\xff\xfe"),
        "bad-header",
    ),
    # header length pointing past the end
    (_with_checksum(bytes.fromhex("c2fe00040003000200ff00000000")), "truncated"),
]


@pytest.mark.parametrize(("data", "reason"), ERRORS)
def test_errors_have_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(data)
    assert info.value.reason == reason
    assert reason in FRAME_ERROR_REASONS


def test_every_cut_of_a_frame_is_refused_not_misread() -> None:
    # One websocket message is one frame (docs/protocol.md 2): a piece of a frame is an error.
    for cut in range(len(GOOD)):
        with pytest.raises(FrameError) as info:
            parse_frame(GOOD[:cut])
        assert info.value.reason == ("too-short" if cut < MIN_FRAME_SIZE else "truncated")


def test_serialize_refuses_a_header_too_long_for_its_length_field() -> None:
    with pytest.raises(LocalProtocolError):
        serialize_frame(Frame(header=Header(err_str="x" * 70000)))


def _try_parse(data: bytes) -> tuple[Frame | None, str]:
    try:
        return parse_frame(data), ""
    except FrameError as exc:  # only FrameError may come out
        return None, exc.reason


@given(st.binary(max_size=300))
def test_random_bytes_give_a_frame_or_a_documented_frame_error(data: bytes) -> None:
    frame, reason = _try_parse(data)
    if frame is None:
        assert reason in FRAME_ERROR_REASONS
    else:
        assert serialize_frame(frame) == data


@given(
    st.sampled_from([bytes.fromhex(e["hex"]) for _, _, e in EXAMPLES]),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
    st.booleans(),
)
def test_mutated_captured_frames_give_only_documented_errors(
    raw: bytes, flips: list[tuple[int, int]], fix_checksum: bool
) -> None:
    data = bytearray(raw)
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    if fix_checksum:  # reach the header parser too, not only the checksum check
        data[-4:] = adler32(bytes(data[:-4])).to_bytes(4, "big")
    frame, reason = _try_parse(bytes(data))
    if frame is None:
        assert reason in FRAME_ERROR_REASONS
    else:
        assert isinstance(frame.header, Header)


_opt_int = st.one_of(st.none(), st.integers(min_value=0, max_value=2**31 - 1))
_opt_text = st.one_of(st.none(), st.text(max_size=300))
headers = st.builds(
    Header,
    chid=_opt_int,
    uuid=st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1)),
    server=_opt_text,
    resource=_opt_text,
    cmd=_opt_text,
    subcmd=_opt_text,
    dir_flag=st.one_of(st.none(), st.integers(min_value=1, max_value=6)),
    cipher=_opt_int,
    err_code=_opt_int,
    err_str=_opt_text,
)


@given(headers, st.text(max_size=300), st.binary(max_size=64))
def test_header_template_and_frame_bytes_match_the_general_path(
    header: Header, header_id: str, payload: bytes
) -> None:
    # The sessions' fast path (template + frame_bytes) must give the general path's bytes.
    full = replace(header, id=header_id)
    encoded = HeaderTemplate(header).encode(header_id)
    assert encoded == encode_header(full)
    assert frame_bytes(encoded, payload) == serialize_frame(Frame(header=full, payload=payload))
