"""Unlimited groups over HTTP: ``/api/uctopic`` (protocol.md 8.2), as the web SDK 1.0.3 calls it.

Creating a group makes the caller its owner and first member (the SDK sends a UC JOIN right after,
which is then a no-op). Dismissing is for the owner only and pushes DISMISS to online members.
Joining, quitting and messaging happen on the websocket (6.12, :mod:`mimc_rx.server.hub`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mimc_rx.server.auth import Caller
from mimc_rx.server.rest_common import caller, hub_of, json_body, success
from mimc_rx.server.storage import UCTopic
from mimc_rx.server.validation import ApiError, parse_id, parse_text

__all__ = ["routes"]


async def _topic_from_header(request: Request, who: Caller) -> UCTopic:
    topic_id = parse_id(request.headers.get("topicId", ""), "the topicId header")
    topic = await hub_of(request).storage.uc_topic(topic_id)
    if topic is None or topic.app_id != who.app.app_id:
        raise ApiError(404, "topic not found")
    return topic


async def _joined(request: Request) -> Response:
    who = await caller(request)
    topics = await hub_of(request).storage.uc_topics_of(who.user.uuid)
    return success([str(t.topic_id) for t in topics])


async def _create(request: Request) -> Response:
    who = await caller(request)
    hub = hub_of(request)
    name = parse_text(
        (await json_body(request)).get("topicName", ""),
        "topicName",
        max_bytes=hub.config.max_text_bytes,
        required=False,
    )
    topic = await hub.storage.create_uc_topic(
        app_id=who.app.app_id, name=name, owner=who.user.uuid, now_ms=hub.config.now_ms()
    )
    return success(
        {
            "topicId": str(topic.topic_id),
            "topicName": topic.name,
            "ownerUuid": str(who.user.uuid),
            "ownerAccount": who.user.account,
        }
    )


async def _dismiss(request: Request) -> Response:
    who = await caller(request)
    topic = await _topic_from_header(request, who)
    if topic.owner_uuid != who.user.uuid:
        raise ApiError(403, "only the owner may dismiss the topic")
    await hub_of(request).dismiss_uc_topic(topic.topic_id)
    return success(None)


async def _members(request: Request) -> Response:
    who = await caller(request)
    topic = await _topic_from_header(request, who)
    users = await hub_of(request).storage.users(topic.members)
    members = [users[u] for u in topic.members if u in users]
    # "appAccout" is the web demo's spelling (docs/protocol.md 8.2); the correct one is added too.
    return success(
        {
            "members": [
                {"appAccout": u.account, "appAccount": u.account, "appId": str(u.app_id)}
                for u in members
            ]
        }
    )


def routes() -> list[BaseRoute]:
    """The routes of this API."""
    return [
        Route("/api/uctopic/topics", _joined, methods=["GET"]),
        Route("/api/uctopic/userlist", _members, methods=["GET"]),
        Route("/api/uctopic", _create, methods=["POST"]),
        Route("/api/uctopic", _dismiss, methods=["DELETE"]),
    ]
