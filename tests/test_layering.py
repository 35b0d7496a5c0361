"""Imports go downwards only: storage < search, terminology, validation < access < interactions <
api, auth, web, app, cli, wiring; only the HTTP layers know Flask.

Checked by parsing every module of the package with `ast`, function-level imports included (a
lazy import is still a dependency), so a layer stays testable and reusable without the ones above
it. The settings, errors, resource types, canonical URLs, text and JSON-shape helpers and `orphans` sit at the bottom and
may be imported by anyone.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "fhirsrv"
BASE_MODULES = (
    "fhirsrv.settings",
    "fhirsrv.errors",
    "fhirsrv.resource_types",
    "fhirsrv.canonical",
    "fhirsrv.text",
    "fhirsrv.jsonshape",
    "fhirsrv.orphans",
)
HTTP_LAYERS = ("fhirsrv.api", "fhirsrv.auth", "fhirsrv.web", "fhirsrv.app")
HTTP_LIBRARIES = ("flask", "werkzeug")


def _fhirsrv(*names: str) -> tuple[str, ...]:
    return tuple(f"fhirsrv.{name}" for name in names)


@dataclass(frozen=True)
class Rule:
    """Modules of `layers` must not import anything under `forbidden`."""

    layers: tuple[str, ...]
    forbidden: tuple[str, ...]

    @property
    def id(self) -> str:
        return "+".join(layer.removeprefix("fhirsrv.") for layer in self.layers)


RULES = [
    Rule(
        _fhirsrv("storage"),
        _fhirsrv(
            "search", "terminology", "validation", "access", "interactions", "api", "auth",
            "workflow", "sync", "web", "app", "cli", "wiring",
        ),
    ),
    Rule(
        _fhirsrv("search", "terminology", "validation"),
        _fhirsrv("access", "interactions", "api", "auth", "app", "cli", "wiring", "workflow", "sync", "web"),
    ),
    # fhirsrv.access may not exist yet: the rule holds (vacuously) until it does.
    Rule(_fhirsrv("access"), _fhirsrv("interactions", "api", "auth", "app", "cli", "wiring", "web")),
    Rule(_fhirsrv("interactions"), _fhirsrv("api", "auth", "app", "cli", "wiring", "web")),
]


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # the importing module
    target: str  # what it imports, absolute

    def __str__(self) -> str:
        return f"{self.path.relative_to(PACKAGE_DIR.parent)}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(path: Path, module: str) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve(path: Path, module: str, node: ast.ImportFrom) -> str:
    """The absolute module of a `from ... import`, relative ones included."""
    if not node.level:
        return node.module or ""
    base = _package_of(path, module).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_in(source: str, path: Path, module: str) -> Iterator[Import]:
    """Every import anywhere in `source` (module level, functions, TYPE_CHECKING blocks)."""
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, module, alias.name)
        elif isinstance(node, ast.ImportFrom):
            origin = _resolve(path, module, node)
            yield Import(path, node.lineno, module, origin)
            for alias in node.names:
                if alias.name != "*":  # `from fhirsrv import auth` imports fhirsrv.auth
                    yield Import(path, node.lineno, module, f"{origin}.{alias.name}")


def all_imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        found.extend(imports_in(path.read_text(encoding="utf-8"), path, module_name(path)))
    return found


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _report(violations: list[Import]) -> str:
    unique = sorted({str(v) for v in violations})
    return "\n".join(unique)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.id)
def test_layer_imports_nothing_above_it(rule: Rule, imports: list[Import]) -> None:
    violations = [i for i in imports if under(i.module, rule.layers) and under(i.target, rule.forbidden)]
    assert not violations, "imports upwards:\n" + _report(violations)


def test_only_http_layers_import_flask(imports: list[Import]) -> None:
    violations = [
        i for i in imports if not under(i.module, HTTP_LAYERS) and under(i.target, HTTP_LIBRARIES)
    ]
    assert not violations, "Flask/Werkzeug outside the HTTP layers:\n" + _report(violations)


def test_base_modules_import_only_base_modules(imports: list[Import]) -> None:
    """Anyone may import them, so they may import nothing of the package that sits above."""
    violations = [
        i
        for i in imports
        if under(i.module, BASE_MODULES)
        and under(i.target, ("fhirsrv",))
        and i.target != "fhirsrv"
        and not under(i.target, BASE_MODULES)
    ]
    assert not violations, "base modules importing upwards:\n" + _report(violations)


def test_checker_sees_lazy_relative_and_from_package_imports() -> None:
    """The checker itself: an import it cannot see would make every rule pass vacuously."""
    source = (
        "from . import engine\n"
        "def f():\n"
        "    from ..interactions import context\n"
        "    from fhirsrv import auth\n"
        "    import flask\n"
    )
    path = PACKAGE_DIR / "storage" / "example.py"
    targets = {i.target for i in imports_in(source, path, "fhirsrv.storage.example")}
    assert {"fhirsrv.storage.engine", "fhirsrv.interactions.context", "fhirsrv.auth", "flask"} <= targets


def test_every_existing_layer_has_modules(imports: list[Import]) -> None:
    """A renamed package would otherwise leave its rule checking nothing."""
    importing = {i.module for i in imports}
    for rule in RULES:
        for layer in rule.layers:
            if layer != "fhirsrv.access":  # being created; may not exist yet
                assert any(under(m, (layer,)) for m in importing), layer
