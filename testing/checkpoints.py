"""Generate local checkpoints with random weights: for tests, and for cost benchmarks.

They are real transformers checkpoints (`save_pretrained`) with a real byte-level BPE
tokenizer trained here with the `tokenizers` library, so they exercise exactly the loading
and inference path of the hub models. Their predictions are meaningless: the built-in
trained models (models/) are what the local service serves.

Sizes:
- `tiny`: two layers of width 32; loads in milliseconds, for tests.
- `distilroberta`: the architecture of j-hartmann/emotion-english-distilroberta-base
  (6 layers, 768 wide, 50,265 tokens), random weights, for realistic cost.
- `umberto`: the architecture of the feel-it models (UmBERTo: RoBERTa-base, 12 layers,
  768 wide, 32,005 tokens), random weights, for realistic cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import typer

from serve_app.registry import LABELS

_ARCH: dict[str, dict[str, int]] = {
    "tiny": {"vocab": 2000, "layers": 2, "hidden": 32, "heads": 2, "ffn": 64},
    "distilroberta": {"vocab": 50265, "layers": 6, "hidden": 768, "heads": 12, "ffn": 3072},
    "umberto": {"vocab": 32005, "layers": 12, "hidden": 768, "heads": 12, "ffn": 3072},
}

# A small bilingual corpus, enough for a BPE whose merges look like real chat words.
_CORPUS = [
    "Oggi sono felicissima, è una giornata stupenda!",
    "Sono molto triste, mi manca tanto la mia famiglia.",
    "Che rabbia, il treno è in ritardo di nuovo!",
    "Ho paura dell'esame di domani, non dormo.",
    "Today I am so happy, what a wonderful day!",
    "I feel sad and lonely tonight.",
    "I am furious, they cancelled my flight again.",
    "I'm scared of the dark and of the storm outside.",
    "That was disgusting, I can't believe it.",
    "Wow, I did not expect that at all!",
    "Nothing special, just a normal Tuesday.",
    "grazie mille, sei gentilissimo, ti voglio bene",
    "non ce la faccio più, sono stanco e arrabbiato",
]


def build_tokenizer(vocab_size: int, corpus: Iterable[str] = _CORPUS) -> Any:
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    ids = {token: tok.token_to_id(token) for token in special}
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", int(ids["</s>"] or 0)), ("<s>", int(ids["<s>"] or 0))
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        model_max_length=512,
    )


def write_checkpoint(
    path: str | Path,
    labels: Sequence[str],
    *,
    size: str = "tiny",
    corpus: Iterable[str] = _CORPUS,
    seed: int = 0,
) -> Path:
    """Write a RoBERTa sequence-classification checkpoint with random weights to `path`."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    arch = _ARCH[size]
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(arch["vocab"], corpus)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch["hidden"],
        num_hidden_layers=arch["layers"],
        num_attention_heads=arch["heads"],
        intermediate_size=arch["ffn"],
        max_position_embeddings=514,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = RobertaForSequenceClassification(config).eval()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "revision.txt").write_text(f"random-{size}-seed{seed}\n", encoding="utf-8")
    return out


def write_default_checkpoints(out: str | Path, *, size: str = "tiny") -> list[Path]:
    """Write one random checkpoint per shipped model, with the registry's label orders."""
    return [
        write_checkpoint(Path(out) / name, labels, size=size, seed=i)
        for i, (name, labels) in enumerate(LABELS.items())
    ]


def checkpoints_command(
    out: str = typer.Option("var/checkpoints", help="Folder to write the checkpoints into."),
    size: str = typer.Option("tiny", help="tiny (tests, quick start) or distilroberta (cost)."),
) -> None:
    """Generate randomly initialised local checkpoints with the registry's label orders."""
    for path in write_default_checkpoints(out, size=size):
        typer.echo(path)
