"""What a client-supplied value must be before the server uses it, and the refusal if it is not.

Every value a client sends over HTTP (a JSON field, a header, a query parameter) passes one of
these checks before it reaches the store or arithmetic: an id must be an integer in signed 64-bit
range (SQLite's and the protocol's), and a text field is bounded. A value that fails is an
:class:`ApiError` with code 400, answered in the JSON envelope, never an exception that escapes
as a 500 with a traceback in the log.

Only the standard library is imported here: the token service, the REST routes and the hub all
use these checks, so this module must depend on none of them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["INT64_MAX", "INT64_MIN", "ApiError", "parse_id", "parse_text", "utf8_longer_than"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""The range of every id and integer the APIs accept (SQLite INTEGER, protobuf int64)."""

_MAX_INT_TEXT = 21  # "-9223372036854775808" and a little slack; longer text is not an int64


class ApiError(Exception):
    """An HTTP API refusal, answered as ``{"code": code, "message": message, "data": null}``."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def parse_id(value: Any, name: str) -> int:
    """A client-supplied id or integer: a JSON int or a decimal string, in signed 64-bit range.

    Why: every id and time the APIs accept ends in SQLite (signed 64-bit) or in arithmetic. A
    bool, any float (``1.0`` as well as the infinity that ``1e400`` becomes in Python's JSON
    reader, and NaN), a 30-digit number or garbage must be a 400 refusal, never an
    ``OverflowError`` answered as 500.

    Raises:
        ApiError: 400 naming ``name`` when the value is not such an integer.
    """
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and len(value.strip()) <= _MAX_INT_TEXT:
        try:
            number = int(value)
        except ValueError:
            number = None
    if number is None or not INT64_MIN <= number <= INT64_MAX:
        raise ApiError(400, f"{name} must be a 64-bit integer")
    return number


def utf8_longer_than(text: str, limit: int) -> bool:
    """True when ``text`` takes more than ``limit`` bytes in UTF-8.

    Cheap for the common short value: a string of at most ``limit // 4`` characters cannot
    exceed the limit, so it is not encoded.
    """
    if len(text) > limit:
        return True
    if len(text) <= limit // 4:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def parse_text(value: Any, name: str, *, max_bytes: int, required: bool = True) -> str:
    """A client-supplied text field the server stores (an account, a resource, a name...).

    Why: the store keeps what it is given, so every stored field is bounded
    (``ServerConfig.max_field_bytes`` / ``max_text_bytes``), and a JSON string holding a lone
    surrogate (``"\\ud800"`` is valid JSON) must be refused here rather than fail in SQLite.

    Raises:
        ApiError: 400 naming ``name`` when the value is not a string, is empty though
            ``required``, is not encodable as UTF-8, or is longer than ``max_bytes``.
    """
    if not isinstance(value, str) or (required and not value):
        what = "a non-empty string" if required else "a string"
        raise ApiError(400, f"{name} must be {what}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ApiError(400, f"{name} is not valid Unicode text") from None
    if size > max_bytes:
        raise ApiError(400, f"{name} may be at most {max_bytes} bytes")
    return value
