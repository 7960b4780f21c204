"""The bot's message catalogs: complete, consistent, and covering every label."""

from __future__ import annotations

import string

import pytest

from bot.texts import LANGUAGES, catalog, language_of, text
from serve_app.schemas import Emotion, Sentiment


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_catalogs_hold_the_same_keys_and_placeholders() -> None:
    """A key or a `{placeholder}` present in one language only would fail at run time."""
    it, en = catalog("it"), catalog("en")
    assert set(it) == set(en)
    for key in it:
        assert placeholders(it[key]) == placeholders(en[key]), key


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_label_has_a_name_an_emoji_and_a_supportive_line(lang: str) -> None:
    """Whatever emotion or sentiment the models return, the bot can word it."""
    for emotion in Emotion:
        for section in ("emotion", "emoji", "support"):
            assert text(lang, f"{section}.{emotion}")  # type: ignore[arg-type]
    for sentiment in Sentiment:
        assert text(lang, f"sentiment.{sentiment}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "lang"),
    [("it", "it"), ("it-IT", "it"), ("IT", "it"), ("en-GB", "en"), ("de", "en"), (None, "en")],
)
def test_telegram_language_codes_map_to_a_catalog(code: str | None, lang: str) -> None:
    assert language_of(code) == lang


def test_values_are_filled_in() -> None:
    assert text("en", "report.empty", days=30).startswith("I have no messages")
    assert "30" in text("it", "report.empty", days=30)
