"""The two cryptographic pieces of the web protocol, as pure functions.

* The SECMSG payload cipher (docs/protocol.md 5): RC4 with the key
  ``base64decode(miUserSecurityKey) + b"_" + ClientHeader.id`` of the same frame, a fresh
  state per frame, no bytes dropped. RC4 is symmetric, so one function does both ways. The
  cipher runs in the ``arc4`` C extension (a fresh state costs a few µs there, against about
  ten through pycryptodome's cffi layer); a key longer than 256 bytes is cut to 256, which
  RC4's key schedule treats identically (it never reads past byte 256), so a peer's long
  header id is no reason to fail. Sessions keep a ``PayloadCipher``: the security key is
  decoded once per session, the per-frame part of the key (the header id) stays per frame.
* The BIND signature (docs/protocol.md 6.3): base64 of SHA-1 over
  ``METHOD&name=value&...&<security key as base64 text>``, parameters sorted by name.
  Verification compares in constant time and treats an empty or absent ``kick`` as ``"0"``,
  because the web SDK signs ``kick=0`` but serializes the field empty (10.1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

from arc4 import ARC4

__all__ = [
    "BIND_METHOD",
    "PayloadCipher",
    "bind_signature",
    "bind_signature_params",
    "decode_security_key",
    "payload_key",
    "rc4",
    "rc4_payload",
    "sign",
    "signature_base_string",
    "verify_bind_signature",
]

BIND_METHOD: Final = "XIAOMI-PASS"
_MAX_RC4_KEY: Final = 256


def decode_security_key(security_key_b64: str) -> bytes:
    """Decode ``miUserSecurityKey`` (standard base64, padding optional).

    Raises:
        ValueError: the text is not base64.
    """
    text = security_key_b64.strip()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"security key is not base64: {exc}") from exc


def payload_key(security_key_b64: str, header_id: str) -> bytes:
    """The RC4 key of one SECMSG frame (docs/protocol.md 5), at most 256 bytes."""
    key = decode_security_key(security_key_b64) + b"_" + header_id.encode("utf-8")
    return key[:_MAX_RC4_KEY]


def rc4(key: bytes, data: bytes) -> bytes:
    """RC4-encrypt (or decrypt) ``data`` with a fresh state for ``key`` (1 byte or more)."""
    if not key:
        raise ValueError("RC4 needs a key of at least one byte")
    return ARC4(bytes(key[:_MAX_RC4_KEY])).encrypt(bytes(data))


def rc4_payload(security_key_b64: str, header_id: str, payload: bytes) -> bytes:
    """Encrypt or decrypt a SECMSG payload of the frame whose header id is ``header_id``."""
    return rc4(payload_key(security_key_b64, header_id), payload)


class PayloadCipher:
    """The SECMSG payload cipher of one session (docs/protocol.md 5), key decoded once.

    ``cipher(header_id, payload)`` equals ``rc4_payload(security_key_b64, header_id, payload)``:
    a fresh RC4 state per frame with key ``base64decode(key) + b"_" + header id``.

    Raises:
        ValueError: (at construction) the security key is not base64.
    """

    __slots__ = ("_prefix",)

    def __init__(self, security_key_b64: str) -> None:
        self._prefix = decode_security_key(security_key_b64) + b"_"

    def __call__(self, header_id: str, payload: bytes) -> bytes:
        key = self._prefix + header_id.encode("utf-8")
        return ARC4(key[:_MAX_RC4_KEY]).encrypt(payload)


def signature_base_string(method: str, params: Mapping[str, str], security_key_b64: str) -> str:
    """``METHOD&k1=v1&k2=v2&...&KEYB64`` with the names in ascending order (6.3 step 2)."""
    pairs = "".join(f"{name}={params[name]}&" for name in sorted(params))
    return f"{method.upper()}&{pairs}{security_key_b64}"


def sign(method: str, params: Mapping[str, str], security_key_b64: str) -> str:
    """The signature: standard base64 (padded) of SHA-1 over the UTF-8 base string (6.3)."""
    base = signature_base_string(method, params, security_key_b64).encode("utf-8")
    return base64.b64encode(hashlib.sha1(base).digest()).decode("ascii")


def bind_signature_params(
    *,
    challenge: str,
    chid: int | str,
    uuid: int | str,
    resource: str,
    header_id: str,
    token: str,
    kick: str | None = "0",
    client_attrs: str | None = "",
    cloud_attrs: str | None = "",
    server: str = "xiaomi.com",
) -> dict[str, str]:
    """The nine signed parameters of a BIND (docs/protocol.md 6.3 step 1).

    ``kick`` empty or ``None`` means ``"0"`` (10.1); absent attrs mean ``""``.
    """
    return {
        "challenge": challenge,
        "chid": str(chid),
        "client_attrs": client_attrs or "",
        "cloud_attrs": cloud_attrs or "",
        "from": f"{uuid}@{server}/{resource}",
        "id": header_id,
        "kick": kick or "0",
        "to": server,
        "token": token,
    }


def bind_signature(
    *,
    security_key_b64: str,
    challenge: str,
    chid: int | str,
    uuid: int | str,
    resource: str,
    header_id: str,
    token: str,
    method: str = BIND_METHOD,
    kick: str | None = "0",
    client_attrs: str | None = "",
    cloud_attrs: str | None = "",
    server: str = "xiaomi.com",
) -> str:
    """The ``sig`` of a BIND frame, as the client computes it (docs/protocol.md 6.3)."""
    params = bind_signature_params(
        challenge=challenge,
        chid=chid,
        uuid=uuid,
        resource=resource,
        header_id=header_id,
        token=token,
        kick=kick,
        client_attrs=client_attrs,
        cloud_attrs=cloud_attrs,
        server=server,
    )
    return sign(method, params, security_key_b64)


def verify_bind_signature(
    sig: str | None,
    *,
    security_key_b64: str,
    challenge: str,
    chid: int | str,
    uuid: int | str,
    resource: str,
    header_id: str,
    token: str,
    method: str = BIND_METHOD,
    kick: str | None = None,
    client_attrs: str | None = None,
    cloud_attrs: str | None = None,
    server: str = "xiaomi.com",
) -> bool:
    """Check a BIND ``sig`` in constant time, with the empty-kick-means-"0" rule (6.3, 10.1).

    The web SDK hashes ``charCode & 0xFF`` of each character where Go/C++ hash UTF-8; both
    agree on ASCII. For a non-ASCII base string both encodings are tried.
    """
    if not sig:
        return False
    params = bind_signature_params(
        challenge=challenge,
        chid=chid,
        uuid=uuid,
        resource=resource,
        header_id=header_id,
        token=token,
        kick=kick,
        client_attrs=client_attrs,
        cloud_attrs=cloud_attrs,
        server=server,
    )
    base = signature_base_string(method, params, security_key_b64)
    candidates = [base.encode("utf-8")]
    if not base.isascii():
        candidates.append(bytes(ord(ch) & 0xFF for ch in base))
    given = sig.encode("utf-8", errors="replace")
    ok = False
    for raw in candidates:
        expected = base64.b64encode(hashlib.sha1(raw).digest())
        ok |= hmac.compare_digest(expected, given)
    return ok
