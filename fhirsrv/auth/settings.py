"""Settings of the auth package, read from FHIRSRV_* variables or `Settings.extra`.

`Settings.extra` wins over the environment so that a test can build an app with auth on or
off explicitly, whatever the shell exports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fhirsrv.settings import Settings


def _get(settings: Settings, key: str, env: str, default: str) -> str:
    value = settings.extra.get(key)
    if value is None:
        value = os.environ.get(env, default)
    return str(value)


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class AuthSettings:
    enabled: bool = True
    # Anonymous callers may read; writes always need a token when auth is on.
    token_lifetime: int = 300  # seconds; SMART Backend Services recommends at most 5 minutes
    max_assertion_lifetime: int = 300
    private_key_pem: str = ""
    # Requests per minute; 0 disables the limit.
    rate_anonymous: int = 600
    rate_client: int = 6000
    cors_origins: str = "*"
    # Sends Strict-Transport-Security when the request came over https (directly or via a proxy).
    hsts: bool = True

    @classmethod
    def load(cls, settings: Settings) -> AuthSettings:
        return cls(
            enabled=_bool(_get(settings, "auth", "FHIRSRV_AUTH", "on")),
            token_lifetime=int(_get(settings, "token_lifetime", "FHIRSRV_TOKEN_LIFETIME", "300")),
            private_key_pem=_get(settings, "jwt_private_key", "FHIRSRV_JWT_PRIVATE_KEY", ""),
            rate_anonymous=int(_get(settings, "rate_anonymous", "FHIRSRV_RATE_LIMIT_ANONYMOUS", "600")),
            rate_client=int(_get(settings, "rate_client", "FHIRSRV_RATE_LIMIT_CLIENT", "6000")),
            cors_origins=_get(settings, "cors_origins", "FHIRSRV_CORS_ORIGINS", "*"),
            hsts=_bool(_get(settings, "hsts", "FHIRSRV_HSTS", "on")),
        )
