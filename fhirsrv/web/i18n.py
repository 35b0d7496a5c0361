"""The page texts in French and English, from the catalogue files beside this module.

Texts live in `catalogues/{lang}.json`, never in code or templates, so that a translator edits
one file and a test can check both catalogues hold the same keys. French is the directory's
language: it is the default, and a key missing from a catalogue is a bug that fails loudly
(KeyError), not a page that shows a key name to a patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import orjson

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
CATALOGUE_DIR = Path(__file__).resolve().parent / "catalogues"


@cache
def catalogue(language: str) -> dict[str, str]:
    return orjson.loads((CATALOGUE_DIR / f"{language}.json").read_bytes())


def choose_language(asked: str | None, remembered: str | None) -> str:
    """The `lang` of the URL first (a shared link keeps its language), then the visitor's
    remembered choice, then French."""
    for candidate in (asked, remembered):
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Texts:
    """`texts("results.count_many", n=3)`: one language's texts, formatted."""

    language: str

    def __call__(self, key: str, **values: object) -> str:
        text = catalogue(self.language)[key]
        return text.format(**values) if values else text

    def number(self, value: float) -> str:
        """A distance as people write it: '3,2' in French, '3.2' in English."""
        shown = f"{value:.1f}"
        return shown.replace(".", ",") if self.language == "fr" else shown
