"""Two processes on one port (``serve --reuse-port``): the kernel spreads the connections.

The clients know one address only. Which process holds whom is the kernel's choice, so every
message may or may not cross processes; all of them must arrive, and both processes must really
have served some of the connections (else this would test one server).
"""

from __future__ import annotations

import psutil  # type: ignore[import-untyped]

from mimc_rx.protocol.events import P2PMessage

from .conftest import StartCluster, eventually, offline, online, user

USERS = 10


def _client_connections(pid: int, port: int) -> int:
    """Established TCP connections accepted by ``pid`` on ``port``."""
    return sum(
        1
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
    )


async def test_one_port_two_processes_every_message_arrives(cluster: StartCluster) -> None:
    nodes = await cluster(2, shared_port=True)
    assert nodes[0].port == nodes[1].port
    accounts = [f"u{i}" for i in range(USERS)]
    users = [user(nodes[0], a) for a in accounts]  # one URL for all: nodes[0]'s is nodes[1]'s
    got: dict[str, list[P2PMessage]] = {a: [] for a in accounts}
    for u in users:
        u.p2p_messages.subscribe(got[u.app_account].append)
    await online(*users)
    held = [_client_connections(p.pid or 0, nodes[0].port) for p in nodes]
    assert sum(held) >= USERS, held
    # Each process holds some (all on one has a chance of 2 in 2**USERS).
    assert all(held), f"connections per process: {held}"
    for i, u in enumerate(users):
        for j in range(USERS):
            if j != i:
                u.send_message(accounts[j], f"{i}->{j}")
    await eventually(lambda: all(len(m) == USERS - 1 for m in got.values()))
    for j, a in enumerate(accounts):
        assert sorted(m.text for m in got[a]) == sorted(f"{i}->{j}" for i in range(USERS) if i != j)
    await offline(*users)
