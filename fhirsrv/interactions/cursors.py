"""Paging cursors sealed for the client: opaque, and only ever issued by this server.

A cursor holds where the last page ended: row ids and sort values. In clear, consecutive
public row ids told an anonymous client how many hidden entries lay between them, and a
`_sort=name` cursor carried a hidden structure's name into any copy of the link. Sealed
(Fernet: AES-128-CBC with an HMAC), a cursor says nothing and a forged one is refused.

The key is generated once and kept in the database (server_state), so every process of a
deployment opens the cursors any other issued.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from fhirsrv.errors import BadRequest
from fhirsrv.storage.schema import server_state

STATE_KEY = "paging.cursor_key"


class CursorSeal:
    def __init__(self, engine: Engine) -> None:
        # Read (or made) at start-up: a server that cannot seal cursors does not start.
        self.engine = engine
        self._fernet = Fernet(self._load_or_create())

    def _key(self) -> Fernet:
        return self._fernet

    def _load_or_create(self) -> bytes:
        with self.engine.connect() as conn:
            row = conn.execute(select(server_state.c.value).where(server_state.c.key == STATE_KEY)).first()
        if row and row.value:
            return row.value.encode()
        key = Fernet.generate_key()
        try:
            with self.engine.begin() as conn:
                conn.execute(server_state.insert().values(key=STATE_KEY, value=key.decode()))
        except IntegrityError:
            return self._load_or_create()  # another process made it first: use theirs
        return key

    def seal(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        return self._key().encrypt(cursor.encode()).decode()

    def open(self, sealed: str | None) -> str | None:
        if sealed is None:
            return None
        try:
            return self._key().decrypt(sealed.encode()).decode()
        except (InvalidToken, ValueError, UnicodeError) as exc:
            raise BadRequest("_cursor is not a paging token issued by this server") from exc
