"""One text normalisation for every model, in training and in serving alike.

What it does, and why:
- Unicode NFC, so the same word typed on two keyboards is one string.
- Control and format characters go (null bytes included); they carry no emotion, and an
  emoji's joiners (ZWJ, variation selectors) are kept so the emoji stays one emoji.
- User handles become `@user` and URLs become `http`, as in the tweet corpora the Italian
  production models were trained on: the identity of a handle or link says nothing of mood.
- A character repeated more than three times is cut to three ("feliceeeee" -> "feliceee"):
  the emphasis survives, the token explosion does not.
- Runs of whitespace become one space; the ends are stripped.
Emojis are kept: they are often the strongest signal in a chat message.
"""

from __future__ import annotations

import re
import unicodedata

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@])@\w{1,32}")
_REPEAT = re.compile(r"(.)\1{3,}", re.DOTALL)
_SPACE = re.compile(r"\s+")
# Zero-width joiner and variation selectors are category Cf but belong to emoji sequences.
_KEEP_FORMAT = {"\u200d", "\ufe0e", "\ufe0f"}


def _visible(ch: str) -> bool:
    if ch in _KEEP_FORMAT or ch.isspace():
        return True
    return unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn"}


def normalize(text: str) -> str:
    """Return `text` normalised for the models (see the module docstring)."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch if _visible(ch) else " " for ch in text)
    text = _URL.sub("http", text)
    text = _HANDLE.sub("@user", text)
    text = _REPEAT.sub(lambda m: m.group(1) * 3, text)
    return _SPACE.sub(" ", text).strip()


def has_content(text: str) -> bool:
    """True when a normalised text holds anything but joiners and selectors."""
    return any(ch not in _KEEP_FORMAT and not ch.isspace() for ch in text)
