"""RC4 payload cipher (docs/protocol.md 5) and the BIND signature (6.3) against the vectors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimc_rx.protocol import crypto
from mimc_rx.protocol.framing import parse_frame

from .vectors import all_examples, examples, load

ENCRYPTED = [(n, i, e) for n, i, e in all_examples() if "encryption" in e]


def test_rc4_primitive() -> None:
    v = load("primitives")["rc4"]
    key = crypto.payload_key(v["security_key_b64"], v["header_id"])
    assert key.hex() == v["key_hex"]
    plain = bytes.fromhex(v["plaintext_hex"])
    cipher = crypto.rc4_payload(v["security_key_b64"], v["header_id"], plain)
    assert cipher.hex() == v["ciphertext_hex"]
    assert crypto.rc4(key, cipher) == plain


@pytest.mark.parametrize(
    ("name", "index", "example"), ENCRYPTED, ids=[f"{n}[{i}]" for n, i, _ in ENCRYPTED]
)
def test_every_s2c_secmsg_encrypts_to_the_captured_payload(
    name: str, index: int, example: dict[str, Any]
) -> None:
    enc = example["encryption"]
    frame = parse_frame(bytes.fromhex(example["hex"]))
    assert frame.header.id == enc["header_id"]
    assert crypto.payload_key(enc["security_key_b64"], enc["header_id"]).hex() == enc["rc4_key_hex"]
    plain = bytes.fromhex(enc["plaintext_hex"])
    assert crypto.rc4_payload(enc["security_key_b64"], enc["header_id"], plain) == frame.payload
    assert crypto.rc4_payload(enc["security_key_b64"], enc["header_id"], frame.payload) == plain


def test_keys_over_256_bytes_act_as_their_first_256() -> None:
    long_id = "x" * 400
    key = crypto.payload_key("RkFLRUtFWS1hbGljZTAwMA==", long_id)
    assert len(key) == 256
    data = b"some payload" * 5
    full_key = b"FAKEKEY-alice000_" + long_id.encode()
    assert crypto.rc4(full_key, data) == crypto.rc4(full_key[:256], data)
    assert crypto.rc4_payload("RkFLRUtFWS1hbGljZTAwMA==", long_id, data) == crypto.rc4(key, data)


def test_rc4_refuses_an_empty_key() -> None:
    with pytest.raises(ValueError, match="key"):
        crypto.rc4(b"", b"data")


@pytest.mark.parametrize("bad", ["not base64!", "a", "=abc"])
def test_bad_security_keys_are_value_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        crypto.decode_security_key(bad)


def test_unpadded_security_key_is_accepted() -> None:
    assert crypto.decode_security_key("RkFLRUtFWS1hbGljZTAwMA") == b"FAKEKEY-alice000"


def test_signature_primitive() -> None:
    v = load("primitives")["bind_sig"]
    assert (
        crypto.signature_base_string(v["method"], v["params"], v["security_key_b64"])
        == v["base_string"]
    )
    assert crypto.sign(v["method"], v["params"], v["security_key_b64"]) == v["sig"]


@pytest.mark.parametrize("index", range(len(examples("c2s_bind"))))
def test_captured_bind_signatures(index: int) -> None:
    example = examples("c2s_bind")[index]
    sig = example["signature"]
    header = example["decoded"]["header"]
    key = sig["security_key_b64_appended"]
    params = crypto.bind_signature_params(
        challenge=example["context"]["challenge"],
        chid=header["chid"],
        uuid=header["uuid"],
        resource=header["resource"],
        header_id=header["id"],
        token=example["decoded"]["payload_decoded"]["token"],
        kick=example["decoded"]["payload_decoded"]["kick"],  # "" on the wire, signed as "0"
    )
    assert params == sig["params_in_order"]
    assert list(params) == list(sig["params_in_order"])  # ascending order of names
    assert crypto.signature_base_string("XIAOMI-PASS", params, key) == sig["base_string"]
    expected = crypto.bind_signature(
        security_key_b64=key,
        challenge=params["challenge"],
        chid=header["chid"],
        uuid=header["uuid"],
        resource=header["resource"],
        header_id=header["id"],
        token=params["token"],
    )
    assert expected == sig["expected_sig"]
    verified = crypto.verify_bind_signature(
        sig["sig_on_wire"],
        security_key_b64=key,
        challenge=params["challenge"],
        chid=header["chid"],
        uuid=header["uuid"],
        resource=header["resource"],
        header_id=header["id"],
        token=params["token"],
        kick="",
    )
    assert verified is sig["verified"]  # eve signed with a tampered key: False


BASE: dict[str, Any] = {
    "security_key_b64": "RkFLRUtFWS1hbGljZTAwMA==",
    "challenge": "c",
    "chid": 9,
    "uuid": 1,
    "resource": "r",
    "header_id": "h",
    "token": "t",
}


@pytest.mark.parametrize("kick", [None, "", "0"])
def test_verify_treats_empty_or_absent_kick_as_zero(kick: str | None) -> None:
    sig = crypto.bind_signature(**BASE)
    assert crypto.verify_bind_signature(sig, kick=kick, **BASE)


@pytest.mark.parametrize(
    "change",
    [{"kick": "1"}, {"token": "u"}, {"challenge": "d"}, {"header_id": "i"}, {"client_attrs": "x"}],
)
def test_verify_fails_when_anything_signed_changes(change: dict[str, Any]) -> None:
    sig = crypto.bind_signature(**BASE)
    assert not crypto.verify_bind_signature(sig, **{**BASE, **change})


@pytest.mark.parametrize("sig", [None, "", "garbage", "QpaCaf2wMz1agtpGkKB7WDjImBc=", "é"])
def test_verify_rejects_junk_signatures(sig: str | None) -> None:
    assert not crypto.verify_bind_signature(sig, **BASE)


def test_non_ascii_signatures_verify_in_both_encodings() -> None:
    args = {**BASE, "resource": "résumé"}
    params = crypto.bind_signature_params(
        **{k: v for k, v in args.items() if k != "security_key_b64"}
    )
    base = crypto.signature_base_string("XIAOMI-PASS", params, args["security_key_b64"])
    import base64
    import hashlib

    web_style = base64.b64encode(hashlib.sha1(bytes(ord(c) & 0xFF for c in base)).digest())
    assert crypto.verify_bind_signature(web_style.decode(), **args)
    assert crypto.verify_bind_signature(crypto.bind_signature(**args), **args)


@given(st.binary(min_size=1, max_size=64), st.binary(max_size=512))
def test_rc4_is_its_own_inverse(key: bytes, data: bytes) -> None:
    assert crypto.rc4(key, crypto.rc4(key, data)) == data
