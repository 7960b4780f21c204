"""`happykube`: the one console script; every command the project offers hangs off it.

Heavy imports (torch, ray, transformers) happen inside each command, so `--help` stays fast.
Each concept keeps its command next to its code and registers it here with one line.

The image ships only the service and the bot (.dockerignore leaves out training/, bench/ and
tests/), so the commands of those folders are registered by name in `_ELSEWHERE` and their
module is imported only when the command is looked up. Where the folder is absent, the command
says so in one line instead of breaking every other command at start-up.
"""

from __future__ import annotations

import importlib

import typer
from typer import _click as click  # typer vendors click: its group speaks these types
from typer.core import TyperGroup

from kuberay.cli import kuberay_app

# name -> ("module:function", one-line help shown where the module is not installed)
_ELSEWHERE: dict[str, tuple[str, str]] = {
    "train": ("training.cli:train_command", "Train the built-in offline models."),
    "eval": ("training.cli:eval_command", "Print accuracy and macro-F1 per model."),
    "bench": ("bench.cli:bench_command", "Throughput, latency, cache and cold start."),
}


class _CommandsElsewhere(TyperGroup):
    """A Typer group that imports the module of an `_ELSEWHERE` command only when needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_ELSEWHERE})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _ELSEWHERE:
            return super().get_command(ctx, cmd_name)
        target, short_help = _ELSEWHERE[cmd_name]
        module_name, function_name = target.split(":")
        try:
            function = getattr(importlib.import_module(module_name), function_name)
        except ModuleNotFoundError as exc:
            return _not_installed(cmd_name, short_help, exc)
        single = typer.Typer(add_completion=False)
        single.command(cmd_name)(function)
        return typer.main.get_command(single)


def _not_installed(name: str, short_help: str, exc: ModuleNotFoundError) -> click.Command:
    single = typer.Typer(add_completion=False)

    @single.command(name, help=f"{short_help} (not in this install)")
    def refuse() -> None:
        typer.echo(
            f"happykube {name}: needs the {exc.name!r} package, which this install leaves out"
            " (the image ships only the service and the bot)",
            err=True,
        )
        raise typer.Exit(1)

    return typer.main.get_command(single)


app = typer.Typer(
    cls=_CommandsElsewhere,
    help="HappyKube: emotion analysis of Italian and English chat messages.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def root() -> None:
    """HappyKube: emotion analysis of Italian and English chat messages."""


app.add_typer(kuberay_app, name="kuberay")


@app.command("checkpoints")
def checkpoints(
    out: str = typer.Option("var/checkpoints", help="Folder to write the checkpoints into."),
    size: str = typer.Option("tiny", help="tiny (tests, quick start) or distilroberta (cost)."),
) -> None:
    """Generate randomly initialised local checkpoints with the configured label orders."""
    from serve_app.checkpoints import write_default_checkpoints

    for path in write_default_checkpoints(out, size=size):
        typer.echo(path)


from db.cli import app as db_app  # noqa: E402  (registered next to the other commands)

app.add_typer(db_app, name="db")

from serve_app.operator_cli import audit_command, keys_app  # noqa: E402

app.add_typer(keys_app, name="keys")
app.command("audit")(audit_command)


@app.command("bot")
def bot_command() -> None:
    """Run the Telegram bot (long polling); configured by TELEGRAM_* and HAPPYKUBE_* env vars."""
    from bot.__main__ import main as run_bot

    run_bot()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
