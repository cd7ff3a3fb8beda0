"""Settings of the local server: the apps it serves and its limits.

An *app* is what the MIMC cloud calls an application: an id, a key, a secret and a package name.
The token service issues tokens only for configured apps (docs/protocol.md 8.1). With no app given,
the server serves :data:`DEMO_APP`, whose fake credentials are printed at start and written in
the README, so a newcomer can log in without configuring anything.

:class:`ServerConfig` gathers every tunable in one frozen value; the defaults suit both a
notebook and a benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "DEMO_APP",
    "AppConfig",
    "ServerConfig",
    "netloc",
    "parse_app_spec",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConfig:
    """One application the server accepts.

    Attributes:
        app_id: the numeric app id (shown to clients as a decimal string).
        app_key: the app key a backend presents to the token service.
        app_secret: the app secret a backend presents to the token service.
        package: the app package name (token ``appPackage``, MIMCPacket.package).
    """

    app_id: int
    app_key: str
    app_secret: str
    package: str = "com.example.mimc"

    def __post_init__(self) -> None:
        if not 0 < self.app_id < 2**63:
            raise ValueError(f"app id must be a positive 63-bit integer, not {self.app_id}")
        if not self.app_key or not self.app_secret:
            raise ValueError("app key and app secret must not be empty")

    def __repr__(self) -> str:
        # Never show the secret in logs or notebook output.
        return (
            f"AppConfig(app_id={self.app_id}, app_key={self.app_key!r}, "
            f"app_secret='***', package={self.package!r})"
        )


DEMO_APP = AppConfig(
    app_id=2882303761517000001,
    app_key="demo-app-key",
    app_secret="demo-app-secret",
    package="com.example.mimcrx.demo",
)
"""The built-in app served when no app is configured. Its credentials are public and fake."""


def netloc(host: str, port: int) -> str:
    """``host:port`` for a URL, an IPv6 host in brackets (``[::1]:8080``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_app_spec(spec: str) -> AppConfig:
    """Parse ``APP_ID:APP_KEY:APP_SECRET[:PACKAGE]`` (the ``--app`` option of ``serve``).

    Raises:
        ValueError: when the spec is malformed; the message says what is wrong.
    """
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"expected APP_ID:APP_KEY:APP_SECRET[:PACKAGE], got {spec!r}")
    try:
        app_id = int(parts[0])
    except ValueError:
        raise ValueError(f"APP_ID must be a decimal integer, got {parts[0]!r}") from None
    if len(parts) == 4 and parts[3]:
        return AppConfig(app_id=app_id, app_key=parts[1], app_secret=parts[2], package=parts[3])
    return AppConfig(app_id=app_id, app_key=parts[1], app_secret=parts[2])


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Every tunable of the local server.

    Attributes:
        token_ttl: seconds a token stays valid after it is issued.
        idle_timeout: seconds of silence after which a connection is dropped. The web SDK 1.0.3
            pings every 180 s (docs/protocol.md 6.5), so the default leaves a wide margin.
        max_payload: the largest P2P/P2T payload accepted, in bytes. The web SDK allows 15360
            UTF-16 units, i.e. up to 15360 * 3 UTF-8 bytes (6.16).
        max_uc_payload: the same for unlimited-group messages (10240 units, 6.16).
        backlog_limit: at login, a backlog with more messages than this is announced with a pull
            notification (6.10) instead of being pushed.
        compound_size: the most packets put in one COMPOUND list.
        max_compound_bytes: about the most payload bytes put in one COMPOUND (or UC
            MESSAGE_LIST) frame; a longer backlog is split over several frames, so no frame
            exceeds a client's message size limit (the SDKs refuse 1 MiB). One message always
            fits alone, whatever its size.
        pull_limit: the most messages one PULL delivers.
        max_tick_items: the most messages (and refusals) one tick writes and acks; the rest of
            a burst, such as one socket read of a flooding client, goes to the next tick, so
            each transaction stays bounded and other connections are served in between.
        max_group_members: the member limit of a normal group (8.3).
        history_max_count: the most messages one history query returns.
        contact_max_age: seconds of conversation the recent-contacts list covers (8.5; the
            manual says about a month).
        max_outbound_frames: a connection whose unsent frames exceed this is closed (a slow or
            stuck reader must not hold the server's memory); stored messages reach it later.
        max_outbound_bytes: the same limit counted in bytes (8 MiB): a few thousand large
            frames would otherwise hold tens of megabytes for one stalled client.
        send_timeout: seconds one websocket write may take before the connection is given up.
        max_request_body: the largest HTTP request body read, in bytes; a larger one is refused
            with ``code`` 413 in the JSON envelope.
        handshake_timeout: seconds a new TCP connection has to send a complete HTTP request
            head (an API call or the websocket upgrade), and an HTTP request to send its body;
            a connection that sends nothing, or headers that never end, is closed then.
        login_timeout: seconds an accepted websocket has to complete CONN and BIND (6.1-6.3);
            the SDKs log in right after connecting, so only a stuck or hostile client hits it.
        max_pending_connections: the most connections at once that have not yet sent a request
            head or, for websockets, bound a user; a newer one is closed at once, so
            unauthenticated clients cannot use up the server's file descriptors.
        max_field_bytes: the longest account, resource, packet id or ``bizType`` accepted, in
            UTF-8 bytes, on the websocket and in the HTTP APIs. The SDKs send a few dozen
            bytes; a longer value is refused (``errorMsg`` in the PACKET_ACK, code 400 over
            HTTP) instead of stored.
        max_text_bytes: the longest topic name or bulletin accepted, in UTF-8 bytes.
        dedup_retention: seconds the (sender, packet id) of a stored message is remembered: a
            stored message sent again under its packet id within that time (a client's outbox
            after a reconnect) gets its first ack and is not stored or delivered twice. Clients
            must give up resending well before (``MIMCUser``'s outbox: an hour).
        sync_full: use ``PRAGMA synchronous=FULL`` (survives power loss) instead of ``NORMAL``
            (survives a crash of the server process, the documented guarantee).
        storage_url: where the durable state lives: ``None`` (the server's own SQLite file,
            ``LocalServer(db_path=...)``; in memory without one), ``sqlite:///path`` or a plain
            path, or ``postgresql://...`` (several server processes may share it,
            docs/scale-out.md).
        broker_url: how server processes signal each other: ``None`` (one process,
            ``LocalBroker``) or ``redis://...`` (several processes, docs/scale-out.md).
        clock: wall clock in seconds since the epoch; tests inject a fake one to expire tokens.
        challenges: makes the CONN challenge of each new connection (docs/protocol.md 6.1); None
            means 32 random hex characters. The BIND signature covers the challenge (6.3), so a
            test that replays a captured BIND frame byte for byte injects the captured
            challenges here. Never set it on a server others can reach: a predictable challenge
            lets a recorded BIND be replayed.
    """

    token_ttl: float = 24 * 3600.0
    idle_timeout: float = 600.0
    max_payload: int = 15360 * 3
    max_uc_payload: int = 10240 * 3
    backlog_limit: int = 200
    compound_size: int = 100
    max_compound_bytes: int = 512 * 1024
    pull_limit: int = 1000
    max_tick_items: int = 1024
    max_group_members: int = 500
    history_max_count: int = 1000
    contact_max_age: float = 30 * 24 * 3600.0
    max_outbound_frames: int = 100_000
    max_outbound_bytes: int = 8 * 1024 * 1024
    send_timeout: float = 30.0
    max_request_body: int = 1024 * 1024
    handshake_timeout: float = 5.0
    login_timeout: float = 30.0
    max_pending_connections: int = 2048
    max_field_bytes: int = 256
    max_text_bytes: int = 4096
    dedup_retention: float = 24 * 3600.0
    sync_full: bool = False
    storage_url: str | None = None
    broker_url: str | None = None
    clock: Callable[[], float] = field(default=time.time)
    challenges: Callable[[], str] | None = None

    def now_ms(self) -> int:
        """The wall clock in integer milliseconds, as message timestamps carry it."""
        return int(self.clock() * 1000)
