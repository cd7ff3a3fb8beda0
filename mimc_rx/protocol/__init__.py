"""The sans-I/O MIMC protocol core: bytes and time in, bytes and events out.

``ClientSession`` and ``ServerSession`` are the two state machines (docs/sansio.md); the
event dataclasses they emit live in ``mimc_rx.protocol.events``. ``framing``, ``crypto`` and
``codec`` are the building blocks, importable on their own.
"""

from __future__ import annotations

from mimc_rx.protocol.client import ClientSession, ClientState
from mimc_rx.protocol.framing import Frame, Header, parse_frame, serialize_frame
from mimc_rx.protocol.ids import WebIdFactory
from mimc_rx.protocol.server import ServerSession, ServerState
from mimc_rx.protocol.token import TokenInfo, parse_token_answer

__all__ = [
    "ClientSession",
    "ClientState",
    "Frame",
    "Header",
    "ServerSession",
    "ServerState",
    "TokenInfo",
    "WebIdFactory",
    "parse_frame",
    "parse_token_answer",
    "serialize_frame",
]
