"""The application form sent once: a double click, or the form sent again from the browser's
history, records one application, not two (with two confirmation e-mails, and two of the five
applications an address may send in an hour).

Each load of the form carries a key of its own (a hidden field). A sending is known by that key
and by what was sent; the second sending of the same form with the same values waits for the
first, then does not send again if the first was recorded. A form changed and sent again is
another application, so it is sent; a sending the operation refused is not remembered, so the
form corrected and sent again goes through. A request without a key (a client that is not the
page) is sent as it comes, as the API's `$apply` would be.

Kept per process, in memory, for the last MAX_SENT sendings: under several worker processes
two clicks that reach two processes are not caught (a browser sends both on its one keep-alive
connection, to one process, in the common case).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

MAX_SENT = 4096
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_key() -> str:
    return secrets.token_urlsafe(18)


def valid_key(posted: str | None) -> str | None:
    return posted if posted is not None and KEY_PATTERN.fullmatch(posted) else None


class SentForms:
    def __init__(self, size: int = MAX_SENT) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._locks: OrderedDict[str, threading.Lock] = OrderedDict()
        self._sent: OrderedDict[str, None] = OrderedDict()

    def send_once(self, key: str | None, body: dict[str, Any], send: Callable[[], object]) -> bool:
        """Runs `send` unless this form (`key`) was already sent with this `body`: True when it
        ran, False when an earlier sending was recorded. What `send` raises goes through, and
        the sending is then not remembered."""
        if key is None:
            send()
            return True
        identity = key + ":" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        with self._lock:
            lock = self._locks.setdefault(identity, threading.Lock())
            self._locks.move_to_end(identity)
            while len(self._locks) > self._size:
                self._locks.popitem(last=False)
        with lock:
            with self._lock:
                if identity in self._sent:
                    return False
            send()
            with self._lock:
                self._sent[identity] = None
                while len(self._sent) > self._size:
                    self._sent.popitem(last=False)
            return True
