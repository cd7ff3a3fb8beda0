"""The token service's answer (docs/protocol.md 8.1), parsed and checked as web SDK 1.0.3 does.

``parse_token_answer`` accepts what a token fetcher hands back, already parsed (a mapping) or
raw (JSON as ``str``/``bytes``), and either returns a ``TokenInfo`` or raises ``TokenError``
whose three fields are those the web SDK gives its status callback (6.1 step 5):

* ``code != 200``: ``("get token failed", "token info code:<code>", "token info message:<msg>")``
* another account: ``("", "account not same", ...)``; another app: ``("", "appid not same", ...)``
* anything malformed (bad JSON, missing or mistyped fields), which the SDK would trip over:
  ``("get token failed", "token info malformed", <what>)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mimc_rx.errors import TokenError
from mimc_rx.protocol.codec import MIMC_CHID
from mimc_rx.protocol.crypto import decode_security_key

__all__ = ["TokenInfo", "parse_token_answer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    """The ``data`` of a successful token answer, typed (docs/protocol.md 8.1)."""

    app_id: int
    app_package: str
    app_account: str
    chid: int
    uuid: int
    security_key_b64: str
    token: str
    fe_domain_name: str = ""


_REQUIRED = ("appId", "appAccount", "miUserId", "miUserSecurityKey", "token")
"""The fields of ``data`` a login cannot do without (docs/protocol.md 8.1)."""


def _malformed(what: str) -> TokenError:
    return TokenError("get token failed", "token info malformed", what)


def _int(value: Any, name: str) -> int:
    # 64-bit ids should be JSON strings (8); numbers are accepted too.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _malformed(f"{name} is not a decimal id")
    try:
        return int(value)
    except ValueError:
        raise _malformed(f"{name} is not a decimal id") from None


def _str(data: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _malformed(f"{name} is missing or not a string")
    return value


def parse_token_answer(
    answer: Mapping[str, Any] | str | bytes | bytearray, *, app_id: int, app_account: str
) -> TokenInfo:
    """Parse and check a token answer for ``app_account`` of ``app_id`` (docs/protocol.md 6.1).

    Raises:
        TokenError: the answer is a failure, belongs to someone else, or is malformed.
    """
    if isinstance(answer, bytes | bytearray | str):
        try:
            answer = json.loads(answer)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8
            raise _malformed(f"not JSON: {exc}") from exc
    if not isinstance(answer, Mapping):
        raise _malformed("the answer is not a JSON object")
    code, message = answer.get("code"), answer.get("message")
    if isinstance(code, bool) or code not in (200, "200"):
        raise TokenError(
            "get token failed", f"token info code:{code}", f"token info message:{message}"
        )
    data = answer.get("data")
    if not isinstance(data, Mapping):
        raise _malformed("data is not an object")
    # A missing field is named as such: checked before the comparisons below, which would
    # otherwise report a token answer without appAccount as "account not same".
    for name in _REQUIRED:
        if data.get(name) in (None, ""):
            raise _malformed(f"the answer's data has no {name} field")
    account = data.get("appAccount")
    if account != app_account:
        raise TokenError("", "account not same", f"token for {account!r}, user is {app_account!r}")
    token_app = data.get("appId")
    if isinstance(token_app, bool) or str(token_app) != str(app_id):
        raise TokenError("", "appid not same", f"token for app {token_app!r}, user app is {app_id}")
    key = _str(data, "miUserSecurityKey")
    try:
        decode_security_key(key)
    except ValueError as exc:
        raise _malformed(str(exc)) from exc
    chid = data.get("miChid", MIMC_CHID)
    return TokenInfo(
        app_id=app_id,
        app_package=_str(data, "appPackage", required=False),
        app_account=app_account,
        chid=_int(chid, "miChid"),
        uuid=_int(data.get("miUserId"), "miUserId"),
        security_key_b64=key,
        token=_str(data, "token"),
        fe_domain_name=_str(data, "feDomainName", required=False),
    )
