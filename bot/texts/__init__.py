"""Message catalogs: every text the bot shows a person, in Italian and English.

The catalogs are TOML files next to this module (`it.toml`, `en.toml`), shipped as package
data. Keys are dotted paths (`"report.summary"`); values are `str.format` templates. Code
never holds user-facing text, so a translator edits one file and nothing else.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any, Literal

Lang = Literal["it", "en"]
LANGUAGES: tuple[Lang, ...] = ("it", "en")


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = str(value)
    return flat


@cache
def catalog(lang: Lang) -> dict[str, str]:
    """Load one language's catalog, flattened to dotted keys (read once per process)."""
    raw = resources.files(__name__).joinpath(f"{lang}.toml").read_text(encoding="utf-8")
    return _flatten(tomllib.loads(raw))


def text(lang: Lang, key: str, **values: object) -> str:
    """The text under `key` in `lang`, with `values` filled in.

    A missing key raises `KeyError`: a test checks that both catalogs hold the same keys,
    so this only happens for a typo, which should fail loudly in tests.
    """
    template = catalog(lang)[key]
    return template.format(**values) if values else template


def language_of(code: str | None) -> Lang:
    """Map Telegram's IETF `language_code` ("it", "it-IT", "en-GB", None) to a catalog."""
    return "it" if code and code.lower().split("-")[0] == "it" else "en"
