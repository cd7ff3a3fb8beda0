"""The official web SDK's login flow across processes: token from #0, websocket to #1.

The app backend asks the token service of one process (the captured request body of the web SDK
1.0.3's token callback, tests/vectors), the browser's websocket lands on another process; that
process must verify the token issued by the first (tokens live in the shared database). CONN
and BIND are the protocol core's, which the golden vectors check byte for byte against the
SDK's frames; every answer is judged by ``tests/server/sdk_model.SdkUser``, the model of what
the SDK does with a frame, and its fields compared with the frame of the same kind the SDK
accepted in the capture (``check_shape``). Then a message from a ``MIMCUser`` on #0 reaches the
SDK on #1, and the same account and resource logging in on #0 kicks the SDK's connection on #1
with the KICK the SDK understands.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from mimc_rx.protocol.client import ClientSession
from mimc_rx.testing.process import ServerProcess
from tests.server.capture import APP, exchanges
from tests.server.replay import check_shape
from tests.server.sdk_model import Call, SdkUser
from tests.server.sdk_wire import SdkConnection, web_ids

from .conftest import TIMEOUT, StartCluster, offline, online, user

ACCOUNT = "sdk-alice"


async def _token(node: ServerProcess) -> dict[str, Any]:
    """The SDK's token callback: the captured request body, for our account, to ``node``."""
    body = {**json.loads(exchanges("/api/account/token")[0]["req_body"]), "appAccount": ACCOUNT}
    async with httpx.AsyncClient(base_url=node.http_url, timeout=TIMEOUT) as http:
        answer: dict[str, Any] = (await http.post("/api/account/token", json=body)).json()
    assert answer["code"] == 200, answer
    return answer


async def _sdk_login(
    token_node: ServerProcess, ws_node: ServerProcess, resource: str
) -> tuple[SdkConnection, ClientSession, str]:
    """CONN and BIND as the SDK does them; the SDK model must report ``statusChange(true)``."""
    answer = await _token(token_node)
    data = answer["data"]
    key = data["miUserSecurityKey"]
    model = SdkUser(uuid=data["miUserId"], resource=resource, security_key=key)
    session = ClientSession(APP.app_id, ACCOUNT, resource)
    conn = SdkConnection(ws_node.ws_url, model)
    await conn.open()
    session.login(answer, now=time.monotonic())
    (conn_frame,) = session.data_to_send()
    reply = await conn.request(conn_frame)
    assert (reply.cmd, reply.replies) == ("CONN", [("BIND",)])
    check_shape(reply, "s2c_conn_resp", key)
    session.receive_data(reply.raw, now=time.monotonic())
    (bind_frame,) = session.data_to_send()
    status = await conn.request(bind_frame)
    assert status.calls == [Call("statusChange", [True, "", "", ""])], status
    check_shape(status, "s2c_bind_resp_ok", key)
    session.receive_data(status.raw, now=time.monotonic())
    return conn, session, key


async def test_the_sdk_logs_in_on_one_process_with_a_token_from_another(
    cluster: StartCluster,
) -> None:
    nodes = await cluster(2, apps=[APP])
    resource = web_ids()
    conn, session, key = await _sdk_login(nodes[0], nodes[1], resource)

    bob = user(nodes[0], "bob")
    await online(bob)
    bob.send_message(ACCOUNT, "to the SDK on #1", biz_type="TEXT")
    seen = await conn.receive()
    check_shape(seen, "s2c_secmsg_compound_p2p", key)
    (call,) = seen.calls
    assert call.handler == "p2p"
    (message,) = call.args
    assert {k: message[k] for k in ("fromAccount", "payload", "bizType", "toAccount")} == {
        "fromAccount": "bob",
        "payload": "to the SDK on #1",
        "bizType": "TEXT",
        "toAccount": ACCOUNT,
    }
    assert seen.replies == [("SEQUENCE_ACK", message["sequence"])]
    session.receive_data(seen.raw, now=time.monotonic())
    for frame in session.data_to_send():  # the SEQUENCE_ACK the SDK sends
        await conn.send(frame)

    # The same account and resource logs in on #0: #1 kicks the SDK's connection.
    newer, _, _ = await _sdk_login(nodes[0], nodes[0], resource)
    kicked = await conn.closed_by_server()
    assert [s.cmd for s in kicked] == ["KICK"], kicked
    assert kicked[0].calls == [Call("disconnect", [])]
    check_shape(kicked[0], "s2c_kick", key)
    await newer.close()
    await offline(bob)
