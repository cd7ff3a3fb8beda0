"""MIMCUser over the real protocol core (ClientSession + ServerSession in MemoryHub), no sockets."""

from __future__ import annotations

from mimc_rx.client.reconnect import Backoff
from mimc_rx.client.streams import first_value
from mimc_rx.client.values import Disconnected, DisconnectReason
from mimc_rx.protocol.events import Delivery, DeliveryKind, P2PMessage, Peer, StatusChange
from mimc_rx.testing.loopback import LoopbackNet

from .conftest import TIMEOUT, eventually


async def test_login_send_ack_deliver_through_the_real_core() -> None:
    net = LoopbackNet()
    alice, bob = net.user("alice"), net.user("bob")
    assert await alice.login() == StatusChange(online=True)
    assert await bob.login() == StatusChange(online=True)
    arrival = first_value(bob.p2p_messages, timeout=TIMEOUT)
    pid = alice.send_message("bob", "over the core 😀")
    ack = await alice.ack(pid, timeout=TIMEOUT)
    message = await arrival
    assert (ack.packet_id, message.packet_id, message.text) == (pid, pid, "over the core 😀")
    assert message.sequence == ack.sequence
    await alice.logout()
    await bob.logout()


async def test_redelivery_after_reconnect_is_emitted_once() -> None:
    net = LoopbackNet()
    alice, bob = net.user("alice"), net.user("bob", reconnect=Backoff(initial=0.01, jitter=0.0))
    got: list[P2PMessage] = []
    drops: list[Disconnected] = []
    bob.p2p_messages.subscribe(got.append)
    bob.disconnects.subscribe(drops.append)
    await alice.login()
    await bob.login()
    await alice.ack(alice.send_message("bob", "one"), timeout=TIMEOUT)
    await eventually(lambda: len(got) == 1)
    old = net.transports[-1]
    old.drop()
    await eventually(lambda: drops)
    assert drops[0].reason is DisconnectReason.CONNECTION_LOST
    await eventually(lambda: bob.is_logged_in)
    # The server redelivers the first message on the new session: that session's core has
    # never seen its sequence, the user's window has.
    first = got[0]
    redelivery = Delivery(
        kind=DeliveryKind.P2P,
        packet_id=first.packet_id,
        package=net.hub.package,
        sequence=first.sequence,
        timestamp=first.timestamp,
        sender=Peer(app_id=net.hub.app_id, app_account="alice", resource=first.from_resource),
        payload=first.payload,
        to_account="bob",
    )
    net.transports[-1].pair.server.deliver([redelivery], max_sequence=first.sequence)
    net.schedule()
    await eventually(lambda: bob.counts["duplicates"] == 1)
    await alice.ack(alice.send_message("bob", "two"), timeout=TIMEOUT)
    await eventually(lambda: len(got) == 2)
    assert [m.text for m in got] == ["one", "two"]
    await alice.logout()
    await bob.logout()
