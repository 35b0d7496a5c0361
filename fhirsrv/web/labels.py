"""What the filters offer and how codes read: the directory's own CodeSystems, as the public
reads them through the API.

The filter lists are built from the CodeSystems themselves (their concepts, hierarchy, French
display and English designation), so a category added to `sos-category` appears on the page
without touching it. They are read through the same anonymous search as everything else and
kept for `REFRESH_SECONDS`, because a page asks for them on every visit and they change a few
times a year: an edited CodeSystem shows on the page within that delay, in every worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhirsrv.terminology.codesystem import display_in

REFRESH_SECONDS = 60.0

# CodeSystems are named by the last segment of their URL: the canonical base is a setting
# (canonical.py moves the shipped ones under it), their names are not.
CATEGORY = "sos-category"
STRUCTURE_TYPE = "sos-structure-type"
# The filter axes of the INCa guidance, in the order the page shows them: the form field, the
# FHIR search parameter of HealthcareService and the CodeSystem of its codes.
AXES: dict[str, tuple[str, str]] = {
    "public": ("audience", "sos-audience"),
    "age": ("age-group", "sos-age-group"),
    "lieu": ("care-place", "sos-care-place"),
    "phase": ("care-phase", "sos-care-phase"),
    "acces": ("access-mode", "sos-access-mode"),
    "parcours": ("pathway", "sos-pathway"),
}
NAMES = (CATEGORY, STRUCTURE_TYPE, *(name for _, name in AXES.values()))


def system_url(canonical_base: str, name: str) -> str:
    return f"{canonical_base.rstrip('/')}/CodeSystem/{name}"


def name_of(system_url: str) -> str:
    return system_url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Concept:
    code: str
    labels: dict[str, str]  # language -> label
    children: tuple[Concept, ...] = ()

    def label(self, language: str) -> str:
        return self.labels.get(language) or self.labels["fr"]


@dataclass
class Vocabulary:
    """Per CodeSystem name, its active concepts as a tree."""

    trees: dict[str, tuple[Concept, ...]] = field(default_factory=dict)
    # (name, code) -> concept, for the labels of every result on every page.
    index: dict[tuple[str, str], Concept] = field(default_factory=dict)

    def concepts(self, system: str) -> tuple[Concept, ...]:
        return self.trees.get(system, ())

    def find(self, system: str, code: str) -> Concept | None:
        return self.index.get((system, code))

    def label(self, system: str, code: str, language: str) -> str:
        concept = self.find(system, code)
        return concept.label(language) if concept else code

    def parent_of(self, system: str, code: str) -> Concept | None:
        for top in self.concepts(system):
            if any(child.code == code for child in top.children):
                return top
        return None


def vocabulary_from(codesystems: list[dict[str, Any]]) -> Vocabulary:
    vocabulary = Vocabulary()
    for cs in codesystems:
        language = cs.get("language") or "fr"
        name = name_of(cs["url"])
        vocabulary.trees[name] = tuple(_concepts(cs.get("concept") or [], language))
        stack = list(vocabulary.trees[name])
        while stack:
            concept = stack.pop()
            vocabulary.index[(name, concept.code)] = concept
            stack.extend(concept.children)
    return vocabulary


def _concepts(raw: list[dict[str, Any]], language: str) -> list[Concept]:
    found = []
    for concept in raw:
        if _inactive(concept):
            continue
        labels = {lang: display_in(concept, lang, language) or concept["code"] for lang in ("fr", "en")}
        found.append(Concept(concept["code"], labels, tuple(_concepts(concept.get("concept") or [], language))))
    return found


def _inactive(concept: dict[str, Any]) -> bool:
    for prop in concept.get("property") or []:
        if prop.get("code") in ("status", "inactive") and prop.get("valueCode") in ("retired", "inactive"):
            return True
        if prop.get("code") == "inactive" and prop.get("valueBoolean") is True:
            return True
    return False


class VocabularyCache:
    """One Vocabulary per process, fetched again when older than REFRESH_SECONDS."""

    def __init__(self, fetch: Callable[[], list[dict[str, Any]]], clock: Callable[[], float] = time.monotonic):
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._value: Vocabulary | None = None
        self._at = 0.0

    def get(self) -> Vocabulary:
        with self._lock:
            if self._value is None or self._clock() - self._at > REFRESH_SECONDS:
                self._value = vocabulary_from(self._fetch())
                self._at = self._clock()
            return self._value
