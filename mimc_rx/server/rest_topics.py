"""Normal groups: the topic REST API of docs/protocol.md 8.3.

Any member may see a group and invite; only the owner may kick, update or dismiss it; the owner
cannot leave (code 500, "quit topic fail", as in the manual) but can hand ownership over with an
update. A group holds at most ``ServerConfig.max_group_members`` members (500), owner included.
Accounts that never logged in are created on the fly, as for P2P recipients.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mimc_rx.server.auth import Caller
from mimc_rx.server.hub import Hub
from mimc_rx.server.rest_common import caller, hub_of, json_body, success
from mimc_rx.server.storage import Topic
from mimc_rx.server.validation import ApiError, parse_text

__all__ = ["routes", "topic_info", "topic_with_members"]


async def topic_info(hub: Hub, topic: Topic) -> dict[str, Any]:
    """The ``topicInfo`` object (ids as strings)."""
    owner = await hub.storage.user(topic.owner_uuid)
    return {
        "topicId": str(topic.topic_id),
        "ownerUuid": str(topic.owner_uuid),
        "ownerAccount": owner.account if owner else "",
        "topicName": topic.name,
        "bulletin": topic.bulletin,
    }


async def topic_with_members(hub: Hub, topic: Topic) -> dict[str, Any]:
    """``{topicInfo, members: [{uuid, account}]}``, the answer of most calls."""
    users = await hub.storage.users(topic.members)
    return {
        "topicInfo": await topic_info(hub, topic),
        "members": [
            {"uuid": str(uuid), "account": users[uuid].account}
            for uuid in topic.members
            if uuid in users
        ],
    }


def _accounts(hub: Hub, value: object) -> list[str]:
    # "a,b,c" in the manual; a JSON list is accepted too.
    if value is None or value == "":
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise ApiError(400, "accounts must be a comma-separated string")
    limit = hub.config.max_field_bytes
    accounts = (parse_text(a.strip(), "each account", max_bytes=limit) for a in items if a.strip())
    return list(dict.fromkeys(accounts))


def _text(hub: Hub, value: object, name: str) -> str:
    return parse_text(value, name, max_bytes=hub.config.max_text_bytes, required=False)


async def _caller_in_app(request: Request) -> Caller:
    who = await caller(request)
    if str(request.path_params["app_id"]) != str(who.app.app_id):
        raise ApiError(403, "appId does not match the credentials")
    return who


async def _topic(
    request: Request, who: Caller, *, member: bool = True, owner: bool = False
) -> Topic:
    hub = hub_of(request)
    topic = await hub.storage.topic(request.path_params["topic_id"])
    if topic is None or topic.app_id != who.app.app_id:
        raise ApiError(404, "topic not found")
    if owner and topic.owner_uuid != who.user.uuid:
        raise ApiError(403, "only the owner may do this")
    if member and who.user.uuid not in topic.members:
        raise ApiError(403, "not a member of the topic")
    return topic


def _check_limit(hub: Hub, count: int) -> None:
    limit = hub.config.max_group_members
    if count > limit:
        raise ApiError(400, f"too many members (limit {limit})")


async def _create(request: Request) -> Response:
    who = await _caller_in_app(request)
    hub = hub_of(request)
    body = await json_body(request)
    name = _text(hub, body.get("topicName", ""), "topicName")
    accounts = [a for a in _accounts(hub, body.get("accounts")) if a != who.user.account]
    _check_limit(hub, 1 + len(accounts))
    storage = hub.storage
    members = [(await storage.ensure_user(who.app.app_id, a)).uuid for a in accounts]
    topic = await storage.create_topic(
        app_id=who.app.app_id,
        name=name,
        owner=who.user.uuid,
        members=members,
        now_ms=hub.config.now_ms(),
    )
    return success(await topic_with_members(hub, topic))


async def _get(request: Request) -> Response:
    who = await _caller_in_app(request)
    return success(await topic_with_members(hub_of(request), await _topic(request, who)))


async def _mine(request: Request) -> Response:
    who = await _caller_in_app(request)
    hub = hub_of(request)
    return success([await topic_info(hub, t) for t in await hub.storage.topics_of(who.user.uuid)])


async def _invite(request: Request) -> Response:
    who = await _caller_in_app(request)
    hub = hub_of(request)
    topic = await _topic(request, who)
    accounts = _accounts(hub, (await json_body(request)).get("accounts"))
    if not accounts:
        raise ApiError(400, "accounts is required")
    storage = hub.storage
    # Count before creating anyone: a refused invite must leave no new users behind.
    members = set(topic.members)
    joining = set()
    for account in accounts:
        known = await storage.find_user(who.app.app_id, account)
        if known is None or known.uuid not in members:
            joining.add(account)
    _check_limit(hub, len(members) + len(joining))
    uuids = [(await storage.ensure_user(who.app.app_id, a)).uuid for a in accounts]
    await storage.add_members(topic.topic_id, uuids, now_ms=hub.config.now_ms())
    return success(await _fresh(hub, topic))


async def _leave(request: Request) -> Response:
    who = await _caller_in_app(request)
    hub = hub_of(request)
    topic = await _topic(request, who)
    if topic.owner_uuid == who.user.uuid:
        raise ApiError(500, "quit topic fail")
    await hub.storage.remove_members(topic.topic_id, [who.user.uuid])
    return success(None)


async def _kick(request: Request) -> Response:
    who = await _caller_in_app(request)
    hub = hub_of(request)
    topic = await _topic(request, who, owner=True)
    accounts = _accounts(hub, request.query_params.get("accounts"))
    if not accounts:
        raise ApiError(400, "accounts is required")
    users = [await hub.storage.find_user(who.app.app_id, a) for a in accounts]
    uuids = [u.uuid for u in users if u is not None]
    if topic.owner_uuid in uuids:
        raise ApiError(400, "the owner cannot be kicked")
    await hub.storage.remove_members(topic.topic_id, uuids)
    return success(await _fresh(hub, topic))


async def _update(request: Request) -> Response:
    who = await _caller_in_app(request)
    hub = hub_of(request)
    topic = await _topic(request, who, owner=True)
    body = await json_body(request)
    name, bulletin, owner_account = (
        None if body.get(key) is None else _text(hub, body.get(key), key)
        for key in ("topicName", "bulletin", "ownerAccount")
    )
    new_owner: int | None = None
    if owner_account:
        user = await hub.storage.find_user(who.app.app_id, owner_account)
        if user is None or user.uuid not in topic.members:
            raise ApiError(400, "the new owner must be a member")
        new_owner = user.uuid
    updated = await hub.storage.update_topic(
        topic.topic_id, name=name, bulletin=bulletin, owner=new_owner
    )
    return success(await topic_with_members(hub, updated or topic))


async def _dismiss(request: Request) -> Response:
    who = await _caller_in_app(request)
    hub = hub_of(request)
    await hub.storage.delete_topic((await _topic(request, who, owner=True)).topic_id)
    return success(None)


async def _fresh(hub: Hub, topic: Topic) -> dict[str, Any]:
    # The group as stored after a change (the storage hands out snapshots).
    return await topic_with_members(hub, await hub.storage.topic(topic.topic_id) or topic)


def routes() -> list[BaseRoute]:
    """The routes of this API (literal paths before parameterised ones)."""
    base = "/api/topic/{app_id:int}"
    one = base + "/{topic_id:int}"
    return [
        Route(base, _create, methods=["POST"]),
        Route(base + "/account", _mine, methods=["GET"]),
        Route(one, _get, methods=["GET"]),
        Route(one, _update, methods=["PUT"]),
        Route(one, _dismiss, methods=["DELETE"]),
        Route(one + "/accounts", _invite, methods=["POST"]),
        Route(one + "/accounts", _kick, methods=["DELETE"]),
        Route(one + "/account", _leave, methods=["DELETE"]),
    ]
