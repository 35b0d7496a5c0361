"""The server's signing key for access tokens: from settings (FHIRSRV_JWT_PRIVATE_KEY), else
from a file only the server's user may read (FHIRSRV_JWT_KEY_FILE), generated there at the
first start.

Not in the database: whoever reads a dump, a backup or a replica could otherwise sign any
token, for any role. The database keeps only the key's thumbprint (public), so a process that
would generate a key of its own while the deployment already signs with another (a second host
without the key file) refuses to start instead of issuing tokens the others reject.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from joserfc.jwk import RSAKey
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from fhirsrv.settings import SettingsError
from fhirsrv.storage.schema import server_state

# Where earlier versions kept the key, in clear: moved to the key file at the first start.
LEGACY_STATE_KEY = "auth.jwt_private_key"
THUMBPRINT_KEY = "auth.jwt_key_thumbprint"
ALGORITHM = "RS384"


class SigningKeyError(SettingsError):
    """The signing key cannot be used as configured; the message says what to do."""


def _with_kid(key: RSAKey) -> RSAKey:
    key.ensure_kid()
    return key


def load_signing_key(engine: Engine, configured_pem: str, key_file: Path) -> RSAKey:
    if configured_pem:
        key = _with_kid(RSAKey.import_key(configured_pem))
        _adopt(engine, key)
        return key
    if key_file.exists():
        key = _read_key_file(key_file)
        _adopt(engine, key)
        return key
    legacy = _legacy_pem(engine)
    known = _known_thumbprint(engine)
    if legacy is None and known is not None:
        raise _another_key(known)
    pem = legacy or RSAKey.generate_key(2048, private=True).as_pem(private=True).decode()
    if not _create_key_file(key_file, pem):
        return load_signing_key(engine, configured_pem, key_file)  # another process wrote it first
    key = _with_kid(RSAKey.import_key(pem))
    try:
        _claim(engine, key)
    except SigningKeyError:
        key_file.unlink()  # lost the race to another host: keep nothing that could sign
        raise
    if legacy is not None:
        with engine.begin() as conn:
            conn.execute(delete(server_state).where(server_state.c.key == LEGACY_STATE_KEY))
    return key


def _read_key_file(key_file: Path) -> RSAKey:
    info = key_file.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(
            f"the token signing key {key_file} is readable by other users: "
            f"chmod 600 it (FHIRSRV_JWT_KEY_FILE), then start again"
        )
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise SigningKeyError(f"the token signing key {key_file} belongs to another user than the server's")
    try:
        return _with_kid(RSAKey.import_key(key_file.read_text()))
    except ValueError as exc:
        raise SigningKeyError(f"{key_file} does not hold a PEM RSA private key ({exc})") from exc


def _create_key_file(key_file: Path, pem: str) -> bool:
    """Write `pem` to `key_file`, readable by the owner only, whole or not at all; False when
    the file appeared meanwhile (another process of the deployment starting at once)."""
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = key_file.with_name(f".{key_file.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(pem)
        os.link(draft, key_file)  # fails if the file exists: never overwrites a key in use
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            draft.unlink()


def _legacy_pem(engine: Engine) -> str | None:
    with engine.connect() as conn:
        row = conn.execute(select(server_state.c.value).where(server_state.c.key == LEGACY_STATE_KEY)).first()
    return row.value if row and row.value else None


def _known_thumbprint(engine: Engine) -> str | None:
    with engine.connect() as conn:
        row = conn.execute(select(server_state.c.value).where(server_state.c.key == THUMBPRINT_KEY)).first()
    return row.value if row else None


def _another_key(thumbprint: str) -> SigningKeyError:
    return SigningKeyError(
        f"this deployment already signs tokens with another key (thumbprint {thumbprint}): give this "
        "process the same key file (FHIRSRV_JWT_KEY_FILE) or key (FHIRSRV_JWT_PRIVATE_KEY) as the others"
    )


def _adopt(engine: Engine, key: RSAKey) -> None:
    """A key given on purpose (setting, existing file) is the deployment's from now on."""
    thumbprint = key.thumbprint()
    if _known_thumbprint(engine) == thumbprint:
        return
    with engine.begin() as conn:
        conn.execute(delete(server_state).where(server_state.c.key == THUMBPRINT_KEY))
        conn.execute(server_state.insert().values(key=THUMBPRINT_KEY, value=thumbprint))


def _claim(engine: Engine, key: RSAKey) -> None:
    """A key this process just made becomes the deployment's only if there is none yet."""
    thumbprint = key.thumbprint()
    try:
        with engine.begin() as conn:
            conn.execute(server_state.insert().values(key=THUMBPRINT_KEY, value=thumbprint))
    except IntegrityError:
        known = _known_thumbprint(engine)
        if known != thumbprint:
            raise _another_key(known or "?") from None


def public_jwks(key: RSAKey) -> dict:
    public = key.as_dict(private=False)
    public.update({"use": "sig", "alg": ALGORITHM})
    return {"keys": [public]}
