"""Message history: the p2p / p2t query APIs of docs/protocol.md 8.4.

Only stored (``isStore``) messages have history. A caller sees only conversations they are part
of: for P2P the token's account must be ``fromAccount`` or ``toAccount`` (the answer holds both
directions of that conversation); for P2T ``account`` must be the token's account and the answer
holds the group's messages the caller sent or received. Sequences are in the caller's own
sequence space (6.15), the same numbers their client saw. Times are milliseconds since the epoch;
ranges are half-open ``[from, to)``; a time range may span at most 24 hours.

Answer ``data``: ``{appId, [topicId], messages: [{sequence, payload (base64), ts, fromAccount,
[toAccount], bizType, packetId}], row, timestamp}``, oldest first; ``timestamp`` is the earliest
``ts`` of the page (to page backwards with ``queryOnCount``), null when the page is empty.
Sequences and timestamps are decimal strings, like every 64-bit number of the APIs.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mimc_rx.server.auth import Caller
from mimc_rx.server.rest_common import caller, hub_of, json_body, success
from mimc_rx.server.storage import StoredMessage
from mimc_rx.server.validation import ApiError, parse_id

__all__ = ["MAX_TIME_RANGE_MS", "routes"]

Endpoint = Callable[[Request], Awaitable[Response]]

MAX_TIME_RANGE_MS = 24 * 3600 * 1000
"""The widest time range one query may ask for (docs/protocol.md 8.4)."""


def _int(body: dict[str, Any], name: str) -> int:
    return parse_id(body.get(name), name)


def _check_app(body: dict[str, Any], who: Caller) -> None:
    if parse_id(body.get("appId"), "appId") != who.app.app_id:
        raise ApiError(403, "appId does not match the credentials")


def _range_args(mode: str, body: dict[str, Any], max_count: int) -> dict[str, Any]:
    if mode == "time":
        start, stop = _int(body, "utcFromTime"), _int(body, "utcToTime")
        if stop <= start:
            raise ApiError(400, "utcToTime must be after utcFromTime")
        if stop - start > MAX_TIME_RANGE_MS:
            raise ApiError(400, "the time range may span at most 24 hours")
        return {"from_ts": start, "to_ts": stop, "limit": max_count}
    if mode == "count":
        count = _int(body, "count")
        if not 0 < count <= max_count:
            raise ApiError(400, f"count must be between 1 and {max_count}")
        return {"to_ts": _int(body, "utcToTime"), "limit": count, "newest": True}
    start, stop = _int(body, "startSeq"), _int(body, "stopSeq")
    return {"start_seq": start, "stop_seq": stop, "limit": max_count}


def _page(messages: list[StoredMessage], *, p2p: bool) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for m in messages:
        item: dict[str, Any] = {
            "sequence": str(m.seq),
            "payload": base64.b64encode(m.payload).decode("ascii"),
            "ts": str(m.ts),
            "fromAccount": m.from_account,
            "bizType": m.biz_type,
            "packetId": m.packet_id,
        }
        if p2p:
            item["toAccount"] = m.to_account
        items.append(item)
    return {
        "messages": items,
        "row": len(items),
        "timestamp": str(min(m.ts for m in messages)) if messages else None,
    }


def _p2p(mode: str) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        who = await caller(request)
        hub = hub_of(request)
        body = await json_body(request)
        _check_app(body, who)
        from_account, to_account = body.get("fromAccount"), body.get("toAccount")
        if not isinstance(from_account, str) or not isinstance(to_account, str):
            raise ApiError(400, "fromAccount and toAccount are required")
        me = who.user.account
        if me not in (from_account, to_account):
            raise ApiError(403, "you may only read your own conversations")
        args = _range_args(mode, body, hub.config.history_max_count)
        other = await hub.storage.find_user(
            who.app.app_id, to_account if me == from_account else from_account
        )
        messages = (
            []
            if other is None
            else await hub.storage.history(who.user.uuid, other=other.uuid, **args)
        )
        return success({"appId": str(who.app.app_id), **_page(messages, p2p=True)})

    return endpoint


def _p2t(mode: str) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        who = await caller(request)
        hub = hub_of(request)
        body = await json_body(request)
        _check_app(body, who)
        if body.get("account") != who.user.account:
            raise ApiError(403, "account must be the token's account")
        topic_id = _int(body, "topicId")
        args = _range_args(mode, body, hub.config.history_max_count)
        messages = await hub.storage.history(who.user.uuid, topic_id=topic_id, **args)
        return success(
            {"appId": str(who.app.app_id), "topicId": str(topic_id), **_page(messages, p2p=False)}
        )

    return endpoint


def routes() -> list[BaseRoute]:
    """The routes of this API, each with and without a trailing slash (the manual mixes both)."""
    table = {
        "/api/msg/p2p/query": _p2p("time"),
        "/api/msg/p2p/queryOnTime": _p2p("time"),
        "/api/msg/p2p/queryOnCount": _p2p("count"),
        "/api/msg/p2p/queryOnSequence": _p2p("sequence"),
        "/api/msg/p2t/query": _p2t("time"),
        "/api/msg/p2t/queryOnTime": _p2t("time"),
        "/api/msg/p2t/queryOnCount": _p2t("count"),
        "/api/msg/p2t/queryOnSequence": _p2t("sequence"),
    }
    result: list[BaseRoute] = []
    for path, endpoint in table.items():
        result.append(Route(path, endpoint, methods=["POST"]))
        result.append(Route(path + "/", endpoint, methods=["POST"]))
    return result
