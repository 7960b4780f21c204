"""`happykube`: the one console script; every command the project offers hangs off it.

Each concept keeps its command next to its code and registers it here with one line in
`_COMMANDS`. A command's module is imported only when that command runs (or its own `--help`
is asked for): `happykube db upgrade` never loads the bot, `happykube bot` never loads Ray's
manifests tooling, and `happykube --help` loads none of them.

The image ships only the service and the bot (.dockerignore leaves out training/, bench/,
testing/ and tests/). Where a command's folder is absent, the command says so in one line
instead of breaking every other command at start-up.
"""

from __future__ import annotations

import importlib

import typer
from typer import _click as click  # typer vendors click: its group speaks these types
from typer.core import TyperCommand, TyperGroup

# name -> ("module:attribute", one-line help); the attribute is a command function or a Typer
# group of subcommands.
_COMMANDS: dict[str, tuple[str, str]] = {
    "audit": ("serve_app.operator_cli:audit_command", "Print the audit trail, newest first."),
    "bench": ("bench.cli:bench_command", "Throughput, latency, cache and cold start."),
    "checkpoints": (
        "testing.checkpoints:checkpoints_command",
        "Generate random-weight checkpoints of real sizes (tests, cost).",
    ),
    "db": ("db.cli:app", "The encrypted mood history: schema, keys, imports."),
    "eval": ("training.cli:eval_command", "Print accuracy and macro-F1 per model."),
    "keys": ("serve_app.operator_cli:keys_app", "API keys of clients: create, list, revoke."),
    "kuberay": (
        "kuberay.cli:kuberay_app",
        "Kubernetes through KubeRay: render, validate, multi-node demo.",
    ),
    "train": ("training.cli:train_command", "Train the built-in offline models."),
}


class _LazyCommands(TyperGroup):
    """A Typer group that imports the module of a `_COMMANDS` entry only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return super().get_command(ctx, cmd_name)
        target, short_help = _COMMANDS[cmd_name]
        if getattr(self, "_listing", False):
            return TyperCommand(cmd_name, short_help=short_help)
        module_name, attribute = target.split(":")
        try:
            found = getattr(importlib.import_module(module_name), attribute)
        except ModuleNotFoundError as exc:
            if exc.name != module_name.partition(".")[0]:
                raise  # a dependency of an installed module is missing: a real bug
            return _not_installed(cmd_name, short_help, exc)
        if isinstance(found, typer.Typer):
            return typer.main.get_group(found)
        single = typer.Typer(add_completion=False)
        single.command(cmd_name)(found)
        return typer.main.get_command(single)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True  # the listing needs each command's one-line help, not its module
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


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
    cls=_LazyCommands,
    help="HappyKube: emotion analysis of Italian and English chat messages.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def root() -> None:
    """HappyKube: emotion analysis of Italian and English chat messages."""


@app.command("bot")
def bot_command() -> None:
    """Run the Telegram bot (long polling); configured by TELEGRAM_* and HAPPYKUBE_* env vars."""
    from bot.__main__ import main as run_bot

    run_bot()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
