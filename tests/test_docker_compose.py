"""docker-compose.yml and the Dockerfile name only what exists: files of the repository, FHIRSRV_*
variables the settings know, `fhirsrv` commands the CLI has. Docker itself cannot run here;
a misspelt variable would otherwise be ignored silently by a container, a missing file found
only by the first operator to build the image."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from fhirsrv.cli import main
from fhirsrv.settings import DATA_DIR_VARIABLE, VARIABLES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
KNOWN = set(VARIABLES.values()) | {DATA_DIR_VARIABLE}
FHIRSRV_NAME = re.compile(r"\bFHIRSRV_[A-Z0-9_]+")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_build_contexts_and_dockerfiles_exist(compose: dict[str, Any]) -> None:
    built = {name: s["build"] for name, s in compose["services"].items() if "build" in s}
    assert built, "the server is built from this repository"
    for name, build in built.items():
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert context.is_dir(), name
        assert dockerfile.is_file(), name
        for source in re.findall(r"^(?:COPY|ADD)\s+(?:--\S+\s+)*(\S+)", dockerfile.read_text(), re.MULTILINE):
            assert (context / source).exists(), f"{dockerfile.name} copies {source}"


def test_mounted_files_exist_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                assert (ROOT / source).exists(), f"{name} mounts {source}"
            else:
                assert source in declared, f"{name} mounts the undeclared volume {source}"
        for env_file in service.get("env_file") or []:
            assert (ROOT / env_file).is_file(), f"{name} reads {env_file}"


def test_only_variables_the_settings_know(compose: dict[str, Any]) -> None:
    given = {k for s in compose["services"].values() for k in _environment(s) if k.startswith("FHIRSRV_")}
    assert "FHIRSRV_DATABASE_URL" in given
    assert given <= KNOWN, sorted(given - KNOWN)
    # Also those interpolated (${FHIRSRV_…}) or named in comments and in the Dockerfile.
    mentioned = set(FHIRSRV_NAME.findall(COMPOSE.read_text() + (ROOT / "Dockerfile").read_text()))
    assert mentioned <= KNOWN, sorted(mentioned - KNOWN)


def _commands(compose: dict[str, Any]) -> list[list[str]]:
    """Each `fhirsrv …` invocation of the services' commands (a list or a shell line)."""
    found = []
    for service in compose["services"].values():
        command = service.get("command")
        if not command:
            continue
        line = command[-1] if isinstance(command, list) and command[:2] == ["sh", "-c"] else command
        words = shlex.split(line) if isinstance(line, str) else list(line)
        current: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", "||", ";"):
                if current and current[0] == "fhirsrv":
                    found.append(current[1:])
                current = []
            elif word != "exec" or current:
                current.append(word)
    return found


def test_the_commands_are_the_cli_s(compose: dict[str, Any]) -> None:
    """`db upgrade` before `serve`, each a command the CLI has (its options are checked by
    the CLI at start; `serve --workers` comes with the worker processes)."""
    commands = _commands(compose)
    assert [c[:2] for c in commands][:1] == [["db", "upgrade"]] and commands[-1][0] == "serve"
    context = click.Context(main)
    for words in commands:
        group: click.Command | None = main
        for word in words:
            if word.startswith("-") or not isinstance(group, click.Group):
                break
            group = group.get_command(context, word)
            assert group is not None, f"fhirsrv {' '.join(words)}"
