"""Payload encoding and size limits, checked at the call before anything is queued.

The web SDK counts JS string length (UTF-16 code units), not bytes (docs/protocol.md 6.16, 10.18):
15360 for P2P and P2T, 10240 for unlimited groups. ``str`` payloads are checked that way, then
encoded as real UTF-8 (emoji included, unlike the web SDK, 10.7). ``bytes`` payloads are
limited to three times those numbers in bytes, the most a text of the limit can take in UTF-8.
"""

from __future__ import annotations

from collections import deque

from .errors import PayloadTooLarge

__all__ = [
    "P2P_LIMIT",
    "UC_LIMIT",
    "SequenceWindow",
    "encode_payload",
]

P2P_LIMIT = 15360
"""Most UTF-16 code units in a P2P or P2T text payload (SDK 1.0.2 and later)."""

UC_LIMIT = 10240
"""Most UTF-16 code units in an unlimited-group text payload."""


def encode_payload(payload: str | bytes | bytearray | memoryview, limit: int) -> bytes:
    """Return the wire bytes of ``payload`` or raise ``PayloadTooLarge`` (nothing is sent).

    Args:
        payload: text (sent as UTF-8) or raw bytes.
        limit: the limit in UTF-16 code units for text; bytes may be ``3 * limit`` long.

    Raises:
        PayloadTooLarge: over the limit.
        TypeError: neither text nor bytes.
    """
    if isinstance(payload, str):
        data = payload.encode("utf-8")
        # Every code point outside the BMP is two UTF-16 units and four UTF-8 bytes; others
        # are one unit. Count without building the UTF-16 string for the common ASCII case.
        units = len(payload) if len(data) == len(payload) else len(payload.encode("utf-16-le")) // 2
        if units > limit:
            raise PayloadTooLarge(units, limit, "UTF-16 code units")
        return data
    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
        if len(data) > 3 * limit:
            raise PayloadTooLarge(len(data), 3 * limit, "bytes")
        return data
    raise TypeError(f"payload must be str or bytes, not {type(payload).__name__}")


class SequenceWindow:
    """A bounded set of recently seen sequences (dedup with fixed memory).

    The web SDK's seen-set grows forever (docs/protocol.md 10.6). This one remembers the last
    ``size`` sequences in arrival order; older ones are forgotten. The facade keeps one per
    ``MIMCUser`` so a redelivery after a reconnect is still recognised.
    """

    __slots__ = ("_order", "_seen", "size")

    def __init__(self, size: int = 65536) -> None:
        if size < 1:
            raise ValueError("the window must hold at least one sequence")
        self.size = size
        self._seen: set[int] = set()
        self._order: deque[int] = deque()

    def add(self, sequence: int) -> bool:
        """Remember ``sequence``; return False if it was already in the window (a duplicate)."""
        seen = self._seen
        if sequence in seen:
            return False
        seen.add(sequence)
        order = self._order
        order.append(sequence)
        if len(order) > self.size:
            seen.discard(order.popleft())
        return True

    def __contains__(self, sequence: object) -> bool:
        return sequence in self._seen

    def __len__(self) -> int:
        return len(self._order)
