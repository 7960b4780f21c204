"""The model registry is the one list of models: the serve configs and the app agree with it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from contract import Emotion, Language, Sentiment
from serve_app import registry
from serve_app.config import AppArgs
from tests.conftest import REPO


def _models(config: str) -> dict[str, dict[str, Any]]:
    raw = yaml.safe_load((REPO / config).read_text())
    models: dict[str, dict[str, Any]] = raw["applications"][0]["args"]["models"]
    return models


def test_the_local_config_serves_each_shipped_model_from_its_builtin_folder() -> None:
    """serve_config.yaml: one block per shipped model, its registry source and label order."""
    models = _models("serve_config.yaml")
    assert set(models) == {model.name for model in registry.SHIPPED}
    for model in registry.SHIPPED:
        spec = models[model.name]
        assert (spec["source"], tuple(spec["labels"])) == (model.builtin, model.labels)
        assert (REPO / str(model.builtin)).is_dir(), f"{model.builtin} is not in the checkout"


def test_the_production_config_serves_each_hub_model_at_its_registry_revision() -> None:
    """serve_config.production.yaml: the registry's hub id, revision and label order."""
    models = _models("serve_config.production.yaml")
    assert set(models) == {model.name for model in registry.MODELS if model.hub_id}
    for name, spec in models.items():
        model = registry.BY_NAME[name]
        assert (spec["source"], spec["revision"]) == (model.hub_id, model.revision)
        assert tuple(spec["labels"]) == model.labels


def test_every_label_is_a_word_of_the_contract() -> None:
    """Emotion models answer Emotion labels, sentiment models Sentiment labels; each language
    has one emotion and one sentiment model, and every derived sentiment is defined."""
    words = {registry.Task.EMOTION: set(Emotion), registry.Task.SENTIMENT: set(Sentiment)}
    for model in registry.MODELS:
        assert set(model.labels) <= words[model.task], model.name
        assert len(set(model.labels)) == len(model.labels), model.name
    for language in Language:
        assert registry.BY_NAME[registry.EMOTION_MODEL[language]].language == language
        assert registry.BY_NAME[registry.SENTIMENT_MODEL[language]].language == language
    assert set(registry.SENTIMENT_OF_EMOTION) == set(Emotion)


@pytest.mark.parametrize("dropped", registry.REQUIRED)
def test_the_app_refuses_a_config_without_a_required_model(dropped: str) -> None:
    args = yaml.safe_load((REPO / "serve_config.yaml").read_text())["applications"][0]["args"]
    del args["models"][dropped]
    with pytest.raises(ValidationError, match=dropped):
        AppArgs.model_validate(args)


def test_the_app_refuses_a_model_the_registry_does_not_know() -> None:
    args = yaml.safe_load((REPO / "serve_config.yaml").read_text())["applications"][0]["args"]
    args["models"]["fr_emotion"] = args["models"]["it_emotion"]
    with pytest.raises(ValidationError, match="fr_emotion"):
        AppArgs.model_validate(args)
