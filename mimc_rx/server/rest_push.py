"""The push API: ``/api/push/p2p/``, ``/p2p/more``, ``/p2t/``, ``/p2t/more`` (docs/protocol.md 8.5).

An app's backend sends a message as one of its accounts, authenticated by the app credentials in
the JSON body::

    {"appId", "appKey", "appSecret", "fromAccount", "fromResource",
     "toAccount" | "toAccounts": [...] | "topicId" | "topicIds": [...],
     "msg", "msgType": "base64" | ""}

``msgType "base64"`` means ``msg`` is the base64 text of the payload bytes; ``""`` (or absent)
means ``msg`` is text, sent as UTF-8. The single forms answer ``data: {"packetId"}``, the
``more`` forms ``data: {"packetIds": [...]}``, one id per entry of ``toAccounts`` / ``topicIds``
in their order. ``fromResource`` may be omitted (empty). ``bizType`` (a string) is accepted as an
addition of ours and delivered as the message's bizType.

The messages are delivered like ordinary ones (:mod:`mimc_rx.server.push`). Accounts that never
logged in are created, as the token service would; a group must exist in the app and
``fromAccount`` must be a member. The whole request is checked before anything is sent: one bad
recipient or group refuses it all (400 bad request, 401 credentials, 403 not a member, 404 unknown
group).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mimc_rx.server.config import AppConfig
from mimc_rx.server.hub import Hub
from mimc_rx.server.push import push_p2p, push_p2t
from mimc_rx.server.rest_common import hub_of, json_body, success
from mimc_rx.server.storage import Topic
from mimc_rx.server.validation import ApiError, parse_id, parse_text

__all__ = ["MAX_TARGETS", "routes"]

MAX_TARGETS = 1000
"""The most recipients (``toAccounts``) or groups (``topicIds``) one request may name."""

Endpoint = Callable[[Request], Awaitable[Response]]


def _string(hub: Hub, body: dict[str, Any], name: str, *, required: bool = True) -> str:
    default = None if required else ""
    return parse_text(
        body.get(name, default), name, max_bytes=hub.config.max_field_bytes, required=required
    )


def _payload(hub: Hub, body: dict[str, Any]) -> bytes:
    msg = body.get("msg")
    if not isinstance(msg, str):
        raise ApiError(400, "msg must be a string")
    msg_type = body.get("msgType") or ""
    if msg_type == "base64":
        try:
            payload = base64.b64decode(msg, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "msg is not valid base64") from None
    elif msg_type == "":
        payload = msg.encode("utf-8")
    else:
        raise ApiError(400, 'msgType must be "base64" or ""')
    if len(payload) > hub.config.max_payload:
        raise ApiError(400, "payload too large")
    return payload


def _targets(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list) or not value:
        raise ApiError(400, f"{name} must be a non-empty list")
    if len(value) > MAX_TARGETS:
        raise ApiError(400, f"{name} may name at most {MAX_TARGETS} entries")
    return value


async def _topic(hub: Hub, app: AppConfig, value: Any) -> Topic:
    topic_id = parse_id(value, "a topic id")
    topic = await hub.storage.topic(topic_id)
    if topic is None or topic.app_id != app.app_id:
        raise ApiError(404, f"topic {topic_id} not found")
    return topic


def _endpoint(*, group: bool, many: bool) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        hub = hub_of(request)
        body = await json_body(request)
        app = hub.tokens.app_for_credentials(body)
        from_account = _string(hub, body, "fromAccount")
        from_resource = _string(hub, body, "fromResource", required=False)
        biz_type = _string(hub, body, "bizType", required=False)
        payload = _payload(hub, body)
        storage = hub.storage
        if group:
            raw = _targets(body, "topicIds") if many else [body.get("topicId")]
            topics = [await _topic(hub, app, value) for value in raw]
            sender = await storage.find_user(app.app_id, from_account)  # a member exists already
            outside = [t.topic_id for t in topics if sender is None or sender.uuid not in t.members]
            if sender is None or outside:
                raise ApiError(403, f"fromAccount is not a member of topic {outside[0]}")
            ids = await push_p2t(
                hub,
                app=app,
                sender=sender,
                from_resource=from_resource,
                topics=topics,
                payload=payload,
                biz_type=biz_type,
            )
        else:
            if many:
                limit = hub.config.max_field_bytes
                accounts = [
                    parse_text(a, "each of toAccounts", max_bytes=limit)
                    for a in _targets(body, "toAccounts")
                ]
            else:
                accounts = [_string(hub, body, "toAccount")]
            sender = await storage.ensure_user(app.app_id, from_account)
            recipients = [await storage.ensure_user(app.app_id, a) for a in accounts]
            ids = await push_p2p(
                hub,
                app=app,
                sender=sender,
                from_resource=from_resource,
                recipients=recipients,
                payload=payload,
                biz_type=biz_type,
            )
        return success({"packetIds": ids} if many else {"packetId": ids[0]})

    return endpoint


def routes() -> list[BaseRoute]:
    """The routes of this API, each with and without a trailing slash."""
    table = {
        "/api/push/p2p": _endpoint(group=False, many=False),
        "/api/push/p2p/more": _endpoint(group=False, many=True),
        "/api/push/p2t": _endpoint(group=True, many=False),
        "/api/push/p2t/more": _endpoint(group=True, many=True),
    }
    result: list[BaseRoute] = []
    for path, endpoint in table.items():
        result.append(Route(path, endpoint, methods=["POST"]))
        result.append(Route(path + "/", endpoint, methods=["POST"]))
    return result
