"""The models the service knows: name, language, task, label order, and where each comes from.

This table is the one place that says so. The config accepts these names (and refuses a
config without a required one), the router picks a model per language and task from it, the
random test checkpoints and the training recipes take their label orders from it, and the
KubeRay render checks deployment names against it. Adding a model is one entry here and a
block in each serve config; tests/unit/test_registry.py checks that both configs agree.

Imports nothing heavier than the contract, so the bot's tests, training and the manifest
tools read it without Ray or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contract import Language, Sentiment


class Task(StrEnum):
    """The question a model answers."""

    EMOTION = "emotion"
    SENTIMENT = "sentiment"


@dataclass(frozen=True)
class RegisteredModel:
    """One model deployment: what it answers and its default checkpoints."""

    name: str  # the deployment name and the key under `args.models` in the serve configs
    language: Language
    task: Task
    labels: tuple[str, ...]  # output order of the checkpoint's logits
    required: bool  # the app refuses a config without it
    builtin: str | None = None  # the built-in offline model (serve_config.yaml), if one ships
    hub_id: str | None = None  # the production checkpoint (serve_config.production.yaml)
    revision: str | None = None  # its hub revision: pin a commit sha before deploying


MODELS: tuple[RegisteredModel, ...] = (
    RegisteredModel(
        "it_emotion",
        Language.IT,
        Task.EMOTION,
        ("anger", "fear", "joy", "sadness"),
        required=True,
        builtin="./models/it_emotion",
        hub_id="MilaNLProc/feel-it-italian-emotion",
        revision="main",
    ),
    RegisteredModel(
        "it_sentiment",
        Language.IT,
        Task.SENTIMENT,
        ("negative", "positive"),
        required=True,
        builtin="./models/it_sentiment",
        hub_id="MilaNLProc/feel-it-italian-sentiment",
        revision="main",
    ),
    RegisteredModel(
        "en_emotion",
        Language.EN,
        Task.EMOTION,
        ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"),
        required=True,
        builtin="./models/en_emotion",
        hub_id="j-hartmann/emotion-english-distilroberta-base",
        revision="main",
    ),
    # No English sentiment model ships: without one the router derives English sentiment from
    # the emotion scores (SENTIMENT_OF_EMOTION). A configured one answers these labels.
    RegisteredModel(
        "en_sentiment",
        Language.EN,
        Task.SENTIMENT,
        tuple(sentiment.value for sentiment in Sentiment),
        required=False,
    ),
)

BY_NAME: dict[str, RegisteredModel] = {model.name: model for model in MODELS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
REQUIRED: tuple[str, ...] = tuple(model.name for model in MODELS if model.required)
OPTIONAL: tuple[str, ...] = tuple(model.name for model in MODELS if not model.required)
# The models with a checkpoint of their own: trained by `happykube train`, generated at random
# for tests and benchmarks.
SHIPPED: tuple[RegisteredModel, ...] = tuple(model for model in MODELS if model.builtin)
LABELS: dict[str, tuple[str, ...]] = {model.name: model.labels for model in SHIPPED}


def model_for(language: Language, task: Task) -> str:
    """The name of the model answering `task` for `language`."""
    return next(m.name for m in MODELS if m.language == language and m.task == task)


# Which model answers which question, per language (the router's dispatch table).
EMOTION_MODEL: dict[Language, str] = {lang: model_for(lang, Task.EMOTION) for lang in Language}
SENTIMENT_MODEL: dict[Language, str] = {lang: model_for(lang, Task.SENTIMENT) for lang in Language}

# The sentiment of each emotion, where sentiment is derived from the emotion scores (English,
# without an en_sentiment model): each sentiment scores the sum of its emotions' probabilities.
# Surprise is neutral because it is as often good news as bad.
SENTIMENT_OF_EMOTION: dict[str, Sentiment] = {
    "joy": Sentiment.POSITIVE,
    "anger": Sentiment.NEGATIVE,
    "disgust": Sentiment.NEGATIVE,
    "fear": Sentiment.NEGATIVE,
    "sadness": Sentiment.NEGATIVE,
    "neutral": Sentiment.NEUTRAL,
    "surprise": Sentiment.NEUTRAL,
}
