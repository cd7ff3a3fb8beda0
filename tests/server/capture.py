"""The official web SDK 1.0.3 capture (tests/vectors, protocol.md 11) as the replay tests use it.

Frames are found by their number in the capture (``frame_n``), which is the order in which the
capture server saw them. The fake app, accounts, keys, tokens and challenges come from the
capture's own records (the token answers in ``http_exchanges.json`` and the ``context`` blocks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from mimc_rx.server import AppConfig

__all__ = [
    "APP",
    "Identity",
    "example",
    "exchanges",
    "first_example",
    "frame",
    "identity",
    "s2c_examples",
]

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


@cache
def _files() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(VECTORS.glob("*.json")):
        with path.open(encoding="utf-8") as f:
            out[path.stem] = json.load(f)
    return out


@cache
def _by_frame() -> dict[int, tuple[str, dict[str, Any]]]:
    return {
        ex["frame_n"]: (name, ex)
        for name, data in _files().items()
        for ex in data.get("examples", ())
    }


def example(frame_n: int, kind: str | None = None) -> dict[str, Any]:
    """The captured frame number ``frame_n`` (its file must be ``kind`` when given)."""
    name, ex = _by_frame()[frame_n]
    assert kind is None or name == kind, f"frame {frame_n} is a {name}, not a {kind}"
    return ex


def frame(frame_n: int, kind: str | None = None) -> bytes:
    """The bytes of captured frame ``frame_n``."""
    return bytes.fromhex(example(frame_n, kind)["hex"])


def first_example(kind: str) -> dict[str, Any]:
    """The first example of a vector file (``s2c_secmsg_packet_ack``...)."""
    result: dict[str, Any] = _files()[kind]["examples"][0]
    return result


def s2c_examples() -> list[tuple[str, dict[str, Any]]]:
    """(file, example) of every captured s2c frame."""
    return [
        (name, ex)
        for name, data in _files().items()
        if name.startswith("s2c_")
        for ex in data["examples"]
    ]


def exchanges(path: str) -> list[dict[str, Any]]:
    """The recorded HTTP exchanges with this path, in order."""
    return [x for x in _files()["http_exchanges"]["exchanges"] if x["path"] == path]


def _token_request() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(exchanges("/api/account/token")[0]["req_body"])
    return result


APP = AppConfig(
    app_id=int(_token_request()["appId"]),
    app_key=_token_request()["appKey"],
    app_secret=_token_request()["appSecret"],
    package=exchanges("/api/account/token")[0]["resp"]["data"]["appPackage"],
)
"""The capture's fake app, with the credentials its token requests carried."""


@dataclass(frozen=True)
class Identity:
    """One captured account: its token answer and its connection's CONN and BIND frames."""

    account: str
    token_answer: dict[str, Any]  # the whole recorded answer: {"code", "message", "data"}
    resource: str
    challenge: str
    conn_frame: int
    bind_frame: int

    @property
    def data(self) -> dict[str, Any]:
        result: dict[str, Any] = self.token_answer["data"]
        return result

    @property
    def uuid(self) -> int:
        return int(self.data["miUserId"])

    @property
    def security_key(self) -> str:
        return str(self.data["miUserSecurityKey"])

    @property
    def token(self) -> str:
        return str(self.data["token"])


@cache
def identity(account: str) -> Identity:
    """The captured identity of ``account`` (alice, bob or eve)."""
    answer = next(
        x["resp"]
        for x in exchanges("/api/account/token")
        if x["resp"]["data"]["appAccount"] == account
    )
    token = answer["data"]["token"]
    binds = _files()["c2s_bind"]["examples"]
    bind = next(b for b in binds if b["decoded"]["payload_decoded"]["token"] == token)
    conns = _files()["c2s_conn"]["examples"]
    conn = next(c for c in conns if c["connection"] == bind["connection"])
    return Identity(
        account=account,
        token_answer=answer,
        resource=bind["decoded"]["header"]["resource"],
        challenge=bind["context"]["challenge"],
        conn_frame=conn["frame_n"],
        bind_frame=bind["frame_n"],
    )
