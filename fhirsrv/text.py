"""Text folding shared by search indexing and terminology filters (bottom of the import graph)."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Case- and accent-insensitive form: 'Hôpital Saint-Méen' -> 'hopital saint-meen'."""
    if text.isascii():  # most index values: nothing to decompose (NFKD keeps ASCII as it is)
        return " ".join(text.casefold().split())
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


# Digits a count or version id may have: int64's 18 safe ones. str.isdigit() also accepts
# superscripts ('²') that int() refuses, and int() of 5,000 digits raises: both were 500s.
_MAX_DIGITS = 18


def small_natural(text: str) -> int | None:
    """`text` as a non-negative integer when it is 1 to 18 ASCII digits, else None."""
    if not 0 < len(text) <= _MAX_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)
