"""`happykube`: the one console script; every command the project offers hangs off it.

Heavy imports (torch, ray, transformers) happen inside each command, so `--help` stays fast.
Each concept keeps its command next to its code and registers it here with one line.
"""

from __future__ import annotations

import typer

from kuberay.cli import kuberay_app

app = typer.Typer(
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


@app.command("bench")
def bench(
    seconds: float = typer.Option(8.0, help="Seconds per measurement."),
    paths: str = typer.Option("en_fp32,en_int8,it_fp32", help="Comma-separated paths to run."),
    cold_start: bool = typer.Option(True, help="Also time `serve run` to /readyz 200."),
) -> None:
    """Raw, end-to-end and unbatched throughput, latency, cache and cold start; a JSON line."""
    from bench.run import main as run_bench

    run_bench(seconds, tuple(p.strip() for p in paths.split(",") if p.strip()), cold_start)


from training.cli import eval_command, train_command  # noqa: E402

app.command("train")(train_command)
app.command("eval")(eval_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
