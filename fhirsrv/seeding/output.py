"""NDJSON output, one file per resource type, named so that sorted order is load order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from fhirsrv.seeding.resources import RESOURCE_TYPES


def file_name(res_type: str) -> str:
    """ "01-Organization.ndjson": `fhirsrv load DIR` reads files sorted, hence the number."""
    return f"{RESOURCE_TYPES.index(res_type) + 1:02d}-{res_type}.ndjson"


class NdjsonWriter:
    """Streams resources to their type's file: memory stays constant whatever the volume."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.counts: Counter[str] = Counter()
        self._files: dict[str, IO[bytes]] = {}
        out_dir.mkdir(parents=True, exist_ok=True)
        for res_type in RESOURCE_TYPES:
            stale = out_dir / file_name(res_type)
            if stale.exists():
                stale.unlink()

    def write(self, res: dict[str, Any]) -> None:
        res_type = res["resourceType"]
        fh = self._files.get(res_type)
        if fh is None:
            fh = self._files[res_type] = (self.out_dir / file_name(res_type)).open("wb")
        fh.write(orjson.dumps(res) + b"\n")
        self.counts[res_type] += 1

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()

    def __enter__(self) -> NdjsonWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
