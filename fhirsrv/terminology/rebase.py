"""Moving terminology content to another canonical base.

The files of terminology/ name their canonicals under one literal base; a deployment that
publishes under its own base (setting canonical_base) rewrites every canonical that starts with
it, in every element (url, system, valueSet, source/target...), so the content stays coherent."""

from __future__ import annotations

from typing import Any

from fhirsrv.canonical import DEFAULT_BASE  # the base the shipped files are written in


def rebase(resource: dict[str, Any], base: str, old_base: str = DEFAULT_BASE) -> dict[str, Any]:
    """A copy of `resource` with every string starting with `old_base` moved under `base`."""
    new = base.rstrip("/")
    old = old_base.rstrip("/")
    if new == old:
        return resource

    def move(value: Any) -> Any:
        if isinstance(value, str):
            if value == old or value.startswith(old + "/") or value.startswith(old + "|"):
                return new + value[len(old) :]
            return value
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    return move(resource)
