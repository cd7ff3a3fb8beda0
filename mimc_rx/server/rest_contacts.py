"""Recent contacts: ``/api/contact`` (docs/protocol.md 8.5).

The list an app fetches on a new device, or after a pull notification (6.10) together with the
history API (8.4), to learn which conversations moved. One entry per conversation, newest first:

``{userType: "USER" | "TOPIC", id, name, timestamp, lastMessage: {fromUuid, fromAccount, payload,
sequence, bizType, packetId}}``

``id`` is the peer's uuid or the topic id, ``name`` the peer's account or the topic name (empty
once the group is dismissed), ``timestamp`` the last message's time in ms; every 64-bit number is
a decimal string. ``payload`` is base64 and ``sequence`` is in the caller's own sequence space,
as in history; ``bizType`` and ``packetId`` are additions of ours, as in history.

Only stored (``isStore``) messages count, from the last ``ServerConfig.contact_max_age`` (30
days, as the manual's "recent month"). Deleting a session (``DELETE /api/contact/p2p/session
?member=ACCOUNT`` or ``/api/contact/p2t/session?topicId=ID``) hides it until its next message
and answers the remaining list, as the manual says; deleting a session that is not listed is not
an error. Messages stay in history either way. Callers authenticate with the ``token`` header
(or the app-credential headers, as for groups).
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mimc_rx.server.auth import Caller
from mimc_rx.server.hub import Hub
from mimc_rx.server.rest_common import caller, hub_of, success
from mimc_rx.server.storage import Contact, MessageKind
from mimc_rx.server.validation import ApiError, parse_id

__all__ = ["contact_list", "routes"]


async def _entry(hub: Hub, contact: Contact) -> dict[str, Any]:
    last = contact.last
    if contact.kind is MessageKind.P2T:
        topic = await hub.storage.topic(contact.peer)
        user_type, name = "TOPIC", topic.name if topic is not None else ""
    else:
        peer = await hub.storage.user(contact.peer)
        user_type, name = "USER", peer.account if peer is not None else ""
    return {
        "userType": user_type,
        "id": str(contact.peer),
        "name": name,
        "timestamp": str(last.ts),
        "lastMessage": {
            "fromUuid": str(last.from_uuid),
            "fromAccount": last.from_account,
            "payload": base64.b64encode(last.payload).decode("ascii"),
            "sequence": str(last.seq),
            "bizType": last.biz_type,
            "packetId": last.packet_id,
        },
    }


async def contact_list(hub: Hub, who: Caller) -> list[dict[str, Any]]:
    """The recent contacts of ``who``, newest first, as the API answers them."""
    since = hub.config.now_ms() - int(hub.config.contact_max_age * 1000)
    contacts = await hub.storage.recent_contacts(who.user.uuid, since_ts=since)
    return [await _entry(hub, c) for c in contacts]


async def _list(request: Request) -> Response:
    return success(await contact_list(hub_of(request), await caller(request)))


async def _delete_p2p(request: Request) -> Response:
    who = await caller(request)
    hub = hub_of(request)
    member = request.query_params.get("member", "")
    if not member:
        raise ApiError(400, "the member parameter is required")
    peer = await hub.storage.find_user(who.app.app_id, member)
    if peer is not None:
        await hub.storage.hide_contact(who.user.uuid, MessageKind.P2P, peer.uuid)
    return success(await contact_list(hub, who))


async def _delete_p2t(request: Request) -> Response:
    who = await caller(request)
    hub = hub_of(request)
    topic_id = parse_id(request.query_params.get("topicId", ""), "the topicId parameter")
    await hub.storage.hide_contact(who.user.uuid, MessageKind.P2T, topic_id)
    return success(await contact_list(hub, who))


def routes() -> list[BaseRoute]:
    """The routes of this API, with and without a trailing slash (the manual writes both)."""
    result: list[BaseRoute] = []
    for path, endpoint, method in (
        ("/api/contact", _list, "GET"),
        ("/api/contact/p2p/session", _delete_p2p, "DELETE"),
        ("/api/contact/p2t/session", _delete_p2t, "DELETE"),
    ):
        result.append(Route(path, endpoint, methods=[method]))
        result.append(Route(path + "/", endpoint, methods=[method]))
    return result
