"""The `happykube train` and `happykube eval` commands; serve_app/cli.py registers them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train_command(
    out: Annotated[Path, typer.Option(help="Folder to write models/<name>/ into.")] = Path(
        "models"
    ),
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Train just these models (repeatable); default: all three."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="At most this many rows per source (smoke runs).")
    ] = None,
) -> None:
    """Train the built-in offline models (fixed seeds: the same artifacts every run)."""
    from training.train import RECIPES, train_all

    names = tuple(only or RECIPES)
    unknown = set(names) - set(RECIPES)
    if unknown:
        raise typer.BadParameter(f"unknown models {sorted(unknown)}; known: {list(RECIPES)}")
    for name, (revision, dev) in train_all(out, names, limit=limit).items():
        typer.echo(f"{name}: {out / name} revision {revision}; dev {dev.describe()}")


def eval_command(
    models: Annotated[Path, typer.Option(help="Folder holding the built-in models.")] = Path(
        "models"
    ),
    config: Annotated[
        Path | None,
        typer.Option(help="A serve config whose models are scored too (the production one)."),
    ] = None,
    speed: Annotated[bool, typer.Option(help="Also measure in-process texts per second.")] = True,
    int8: Annotated[
        bool,
        typer.Option(help="Also score each model at `precision: int8`, where it changes anything."),
    ] = False,
) -> None:
    """Print accuracy and macro-F1 per model on the fixed evaluation sets."""
    from training.evaluate import print_table, run

    print_table(run(models, config=config, speed=speed, int8=int8))
