"""Typed settings, read once from FHIRSRV_* environment variables and overridable by CLI flags.

Keeping every knob here (and nowhere else reading os.environ) makes a test able to build an
app with exactly the settings it means, without leaking state between tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def default_sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'fhirsrv.sqlite3'}"


@dataclass(frozen=True)
class Settings:
    database_url: str
    # Public base of the FHIR API as clients see it; derived from the request when empty.
    base_url: str = ""
    canonical_base: str = "https://sos.example.org/fhir"
    content_root: Path = PROJECT_ROOT
    load_demo: bool = True
    default_count: int = 20
    max_count: int = 1000
    max_body_bytes: int = 10 * 1024 * 1024
    max_bundle_entries: int = 10_000
    max_query_length: int = 8192
    max_search_params: int = 40
    max_include_depth: int = 3
    # Bundle.total when a search does not say (_total): see search/total.py.
    default_total: str = "estimate"
    exact_total_up_to: int = 1000
    sql_echo: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def profiles_dir(self) -> Path:
        return self.content_root / "profiles"

    @property
    def terminology_dir(self) -> Path:
        return self.content_root / "terminology"

    @property
    def seed_dir(self) -> Path:
        return self.content_root / "seed"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        data_dir = Path(os.environ.get("FHIRSRV_DATA_DIR", PROJECT_ROOT / "var"))
        settings = cls(
            database_url=os.environ.get("FHIRSRV_DATABASE_URL") or default_sqlite_url(data_dir),
            base_url=os.environ.get("FHIRSRV_BASE_URL", ""),
            canonical_base=os.environ.get("FHIRSRV_CANONICAL_BASE", cls.canonical_base),
            content_root=Path(os.environ.get("FHIRSRV_CONTENT_ROOT", PROJECT_ROOT)),
            load_demo=_env_bool("FHIRSRV_LOAD_DEMO", True),
            default_count=_env_int("FHIRSRV_DEFAULT_COUNT", cls.default_count),
            max_count=_env_int("FHIRSRV_MAX_COUNT", cls.max_count),
            max_body_bytes=_env_int("FHIRSRV_MAX_BODY_BYTES", cls.max_body_bytes),
            max_bundle_entries=_env_int("FHIRSRV_MAX_BUNDLE_ENTRIES", cls.max_bundle_entries),
            max_query_length=_env_int("FHIRSRV_MAX_QUERY_LENGTH", cls.max_query_length),
            max_search_params=_env_int("FHIRSRV_MAX_SEARCH_PARAMS", cls.max_search_params),
            sql_echo=_env_bool("FHIRSRV_SQL_ECHO", False),
            default_total=os.environ.get("FHIRSRV_DEFAULT_TOTAL", cls.default_total),
            exact_total_up_to=_env_int("FHIRSRV_EXACT_TOTAL_UP_TO", cls.exact_total_up_to),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        settings = replace(settings, **clean) if clean else settings
        if settings.default_total not in ("none", "estimate", "accurate"):
            raise ValueError(
                f"FHIRSRV_DEFAULT_TOTAL must be none, estimate or accurate, not '{settings.default_total}'"
            )
        return settings
