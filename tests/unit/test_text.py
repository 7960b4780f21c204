"""The one normalisation every model sees."""

import pytest

from serve_app.text import has_content, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ciao @mario_rossi come stai?", "Ciao @user come stai?"),
        ("guarda https://example.com/a?b=1 e www.x.it ora", "guarda http e http ora"),
        ("feliceeeeeee!!!!!!", "feliceee!!!"),
        ("  troppi   spazi\n\ne\ttab  ", "troppi spazi e tab"),
        ("null\x00byte e \x07campanello", "null byte e campanello"),
        ("zero\u200bwidth", "zero width"),
        ("perche\u0301", "perché"),  # NFC: e + combining acute -> é
        ("mail a me@example.com", "mail a me@example.com"),  # an e-mail is not a handle
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_emoji_are_kept_whole() -> None:
    """Emoji survive, joiners included, and repeated emoji are capped like letters."""
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert normalize(f"ok {family}") == f"ok {family}"
    assert normalize("\U0001f600" * 6) == "\U0001f600" * 3
    assert normalize("\u2764\ufe0f") == "\u2764\ufe0f"


@pytest.mark.parametrize("raw", ["", "   ", "\n\t", "\x00\x01", "\u200b\u200d", "\ufe0f"])
def test_nothing_left_means_no_content(raw: str) -> None:
    assert not has_content(normalize(raw))


@pytest.mark.parametrize("raw", ["a", "\U0001f622", "42", "?"])
def test_anything_visible_is_content(raw: str) -> None:
    assert has_content(normalize(raw))
