"""Language detection with the real lingua, and the router's fallback rules."""

import pytest

from serve_app.config import LanguageArgs
from serve_app.router import EN_SENTIMENT_OF_EMOTION, LanguageDetector, _derived_sentiment
from serve_app.schemas import Emotion, Language


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(LanguageArgs())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oggi sono felicissima, che bella giornata!", Language.IT),
        ("Ho paura dell'esame di domani", Language.IT),
        ("Today I feel really happy and grateful", Language.EN),
        ("I'm so angry they cancelled my flight again", Language.EN),
        ("I am sad", Language.EN),  # lingua leans Portuguese, unsure: likeliest supported
    ],
)
def test_supported_languages_are_detected(
    detector: LanguageDetector, text: str, expected: Language
) -> None:
    assert detector.detect(text, None)[0] == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Hoy estoy muy feliz con mis amigos", "es"),
        ("Je suis très content aujourd'hui", "fr"),
        ("Ich bin heute sehr glücklich", "de"),
        ("Estou muito feliz hoje com a minha família", "pt"),
    ],
)
def test_neighbours_are_named_not_misrouted(
    detector: LanguageDetector, text: str, code: str
) -> None:
    lang, confidence = detector.detect(text, None)
    assert lang == code
    assert confidence >= 0.5


def test_emoji_only_uses_hint_then_fallback(detector: LanguageDetector) -> None:
    assert detector.detect("\U0001f622\U0001f622", Language.EN)[0] == Language.EN
    assert detector.detect("\U0001f622\U0001f622", None)[0] == LanguageArgs().fallback


def test_hint_wins_only_when_detection_is_unsure(detector: LanguageDetector) -> None:
    assert detector.detect("Oggi sono felicissima, che bella giornata!", Language.EN)[0] == "it"
    assert detector.detect("ok", Language.IT)[0] == Language.IT


def test_english_sentiment_mapping_covers_every_emotion() -> None:
    assert set(EN_SENTIMENT_OF_EMOTION) == {e.value for e in Emotion}
    scores = _derived_sentiment(
        {
            "anger": 0.1,
            "disgust": 0.1,
            "fear": 0.1,
            "joy": 0.5,
            "neutral": 0.1,
            "sadness": 0.05,
            "surprise": 0.05,
        }
    )
    assert scores == pytest.approx({"negative": 0.35, "neutral": 0.15, "positive": 0.5})
