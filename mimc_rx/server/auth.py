"""Who is who: the token service and the credential checks of the HTTP APIs.

The token service (docs/protocol.md 8.1) is what an app's backend calls with the app's key and
secret; it answers with the user's uuid, security key and a fresh token. The same token then
authorises BIND on the websocket (6.3) and the REST calls (8.2-8.4). REST calls may instead
present the app's credentials plus an account in the ``appKey``, ``appSecret`` and
``appAccount`` headers (8.3); a ``token`` header wins when both are present.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mimc_rx.server.config import AppConfig, ServerConfig
from mimc_rx.server.storage import User
from mimc_rx.server.storage.interface import Storage
from mimc_rx.server.validation import ApiError, parse_id, parse_text

__all__ = [
    "CHID",
    "MAX_EXPIRE_TOKENS",
    "Caller",
    "TokenService",
    "TokenStatus",
]

CHID = 9
"""The MIMC channel id, always 9 (docs/protocol.md 4.1)."""

MAX_EXPIRE_TOKENS = 1000
"""The most tokens one ``POST /api/account/token/expire`` may name."""


class TokenStatus(Enum):
    """The outcome of looking a token up."""

    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """An authenticated REST caller: the user and the app they belong to."""

    user: User
    app: AppConfig


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class TokenService:
    """Issues and checks tokens for the configured apps.

    Args:
        storage: where users and tokens live.
        apps: the configured apps by id; tokens are issued for these only.
        config: token lifetime and clock.
        fe_domain: the ``feDomainName`` reported in token answers (only TCP SDKs use it).
    """

    def __init__(
        self,
        storage: Storage,
        apps: Mapping[int, AppConfig],
        config: ServerConfig,
        *,
        fe_domain: str = "127.0.0.1",
    ) -> None:
        self.storage = storage
        self.apps = dict(apps)
        self.config = config
        self.fe_domain = fe_domain
        self._by_key = {app.app_key: app for app in self.apps.values()}

    # ------------------------------------------------------------------ token service

    async def issue(self, app: AppConfig, account: str) -> dict[str, Any]:
        """Create (if needed) the user of ``account`` and give it a new token.

        Returns the ``data`` object of docs/protocol.md 8.1, ids as decimal strings.
        """
        user = await self.storage.ensure_user(app.app_id, account)
        return await self.grant(app, user, secrets.token_urlsafe(32))

    async def grant(
        self, app: AppConfig, user: User, token: str, *, ttl: float | None = None
    ) -> dict[str, Any]:
        """Register ``token`` for ``user`` (valid ``ttl`` seconds, default ``token_ttl``).

        :meth:`issue` calls it with a random token; seeding calls it with a chosen one, for
        instance the token a captured BIND frame carries. Returns the answer ``data`` of 8.1.

        Raises:
            ValueError: the token is empty or already names another user, or the user is
                not of ``app``.
        """
        if not token:
            raise ValueError("a token must not be empty")
        if user.app_id != app.app_id:
            raise ValueError(f"user {user.uuid} belongs to app {user.app_id}, not {app.app_id}")
        known = await self.storage.lookup_token(token)
        if known is not None and known[0].uuid != user.uuid:
            raise ValueError("this token already belongs to another user")
        lifetime = self.config.token_ttl if ttl is None else ttl
        await self.storage.add_token(token, user.uuid, self.config.clock() + lifetime)
        return {
            "appId": str(app.app_id),
            "appPackage": app.package,
            "appAccount": user.account,
            "miChid": CHID,
            "miUserId": str(user.uuid),
            "miUserSecurityKey": user.security_key,
            "token": token,
            "regionBucket": 0,
            "feDomainName": self.fe_domain,
        }

    async def issue_for_request(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Handle ``POST /api/account/token`` (8.1): check the app credentials, then issue.

        Raises:
            ApiError: missing fields, unknown app, or wrong key/secret; nothing is issued.
        """
        account = parse_text(
            body.get("appAccount"), "appAccount", max_bytes=self.config.max_field_bytes
        )
        return await self.issue(self.app_for_credentials(body), account)

    async def expire_for_request(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Handle ``POST /api/account/token/expire``: expire tokens of one account, now.

        An admin route of the local server, not of the cloud API: authenticated like the token
        service (the app's id, key and secret in the body), it makes the ``tokens`` listed,
        which the app's backend got from the token service for ``appAccount``, expire at once.
        A BIND with one is then refused with ``token-expired`` and REST calls answer 401; a
        connection already bound stays up. Tokens that are unknown or not that account's are
        skipped. Returns ``{"appAccount": ..., "expired": n}``.

        Raises:
            ApiError: 401 on wrong credentials (nothing is looked up); 400 when ``appAccount``
                or ``tokens`` is missing or malformed.
        """
        app = self.app_for_credentials(body)
        account = parse_text(
            body.get("appAccount"), "appAccount", max_bytes=self.config.max_field_bytes
        )
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or len(tokens) > MAX_EXPIRE_TOKENS:
            raise ApiError(400, f"tokens must be a list of at most {MAX_EXPIRE_TOKENS} tokens")
        now = self.config.clock()
        expired = 0
        for token in dict.fromkeys(
            parse_text(t, "a token", max_bytes=self.config.max_field_bytes) for t in tokens
        ):
            found = await self.storage.lookup_token(token)
            if found is None or found[0].app_id != app.app_id or found[0].account != account:
                continue
            if found[1] > now:
                await self.storage.add_token(token, found[0].uuid, now)  # expired from now on
            expired += 1
        return {"appAccount": account, "expired": expired}

    def app_for_credentials(self, body: Mapping[str, Any]) -> AppConfig:
        """The app whose ``appId``, ``appKey`` and ``appSecret`` the JSON body carries.

        The token service (8.1) and the push API (8.5) authenticate this way.

        Raises:
            ApiError: 401 when the app is unknown or the key or secret is wrong.
        """
        app = self.app_by_id(body.get("appId"))
        key, secret = body.get("appKey"), body.get("appSecret")
        if (
            app is None
            or not isinstance(key, str)
            or not isinstance(secret, str)
            or not _same(key, app.app_key)
            or not _same(secret, app.app_secret)
        ):
            raise ApiError(401, "invalid appId, appKey or appSecret")
        return app

    # ------------------------------------------------------------------ lookups

    def app_by_id(self, value: object) -> AppConfig | None:
        """The configured app whose id is ``value`` (an int or a decimal string); None if none.

        Raises:
            ApiError: 400 when ``value`` is not a 64-bit integer (a float such as the infinity
                of ``1e400``, a bool, garbage), before any credential is looked at.
        """
        return self.apps.get(parse_id(value, "appId"))

    async def resolve(self, token: str) -> tuple[TokenStatus, User | None]:
        """Look a token up: valid (with its user), expired, or unknown."""
        found = await self.storage.lookup_token(token)
        if found is None:
            return TokenStatus.UNKNOWN, None
        user, expires_at = found
        if expires_at <= self.config.clock():
            return TokenStatus.EXPIRED, user
        return TokenStatus.VALID, user

    async def authenticate(self, headers: Mapping[str, str]) -> Caller:
        """Identify a REST caller from its headers (token, or app credentials + account).

        Raises:
            ApiError: 401 when the credentials are missing, unknown, expired or wrong.
        """
        token = headers.get("token")
        if token:
            status, user = await self.resolve(token)
            if status is TokenStatus.EXPIRED:
                raise ApiError(401, "token expired")
            if user is None or status is not TokenStatus.VALID:
                raise ApiError(401, "invalid token")
            app = self.apps.get(user.app_id)
            if app is None:
                raise ApiError(401, "the token's app is not served here")
            return Caller(user=user, app=app)
        key, secret, account = (
            headers.get("appkey"),
            headers.get("appsecret"),
            headers.get("appaccount"),
        )
        if key and secret and account:
            app = self._by_key.get(key)
            if app is None or not _same(secret, app.app_secret):
                raise ApiError(401, "invalid appKey or appSecret")
            parse_text(account, "the appAccount header", max_bytes=self.config.max_field_bytes)
            return Caller(user=await self.storage.ensure_user(app.app_id, account), app=app)
        raise ApiError(
            401, "missing credentials: send a token header, or appKey, appSecret and appAccount"
        )
