"""`happykube kuberay ...`: render, validate and exercise the Kubernetes deployment.

Registered on the main `happykube` app in serve_app/cli.py. Heavy imports (ray, jsonschema,
kubernetes-validate) stay inside the commands so `happykube --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

kuberay_app = typer.Typer(
    help="Kubernetes through KubeRay: render, validate, multi-node demo.",
    no_args_is_help=True,
)


@kuberay_app.command("render")
def render_command(
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if a render would differ.")
    ] = False,
    serve_config: Annotated[
        Path | None, typer.Option(help="Serve config (default: serve_config.production.yaml).")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="RayService file (default: kuberay/base/rayservice.yaml).")
    ] = None,
) -> None:
    """Generate the RayService's serveConfigV2 from the production serve config."""
    from kuberay.render import RAYSERVICE, SERVE_CONFIG, ServeConfigError, render

    try:
        result = render(serve_config or SERVE_CONFIG, manifest or RAYSERVICE)
    except ServeConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from exc
    if check:
        if result.drifted:
            typer.echo(result.diff(), err=True)
            typer.echo(f"{result.path} is out of date: run `happykube kuberay render`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{result.path} is up to date")
        return
    if result.drifted:
        result.path.write_text(result.text, encoding="utf-8")
        typer.echo(f"rendered {result.path}")
    else:
        typer.echo(f"{result.path} already up to date")


@kuberay_app.command("validate")
def validate_command(
    target: Annotated[
        list[str] | None, typer.Option(help="Kustomize target (base, local, production); repeat.")
    ] = None,
) -> None:
    """Validate the kustomize targets offline: Kubernetes schemas, KubeRay CRDs, Serve config."""
    from kuberay.validate import KUBERNETES_VERSIONS, TARGETS, validate_targets

    failed = False
    for name, problems in validate_targets(target or TARGETS).items():
        typer.echo(f"{name}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            typer.echo(f"  {problem}")
        failed = failed or bool(problems)
    typer.echo(f"Kubernetes versions checked: {', '.join(KUBERNETES_VERSIONS)}")
    if failed:
        raise typer.Exit(1)


@kuberay_app.command("multinode")
def multinode_command(
    requests: Annotated[
        int, typer.Option(help="Upper bound on requests per phase (sent at 10/s).")
    ] = 400,
    config: Annotated[
        Path, typer.Option(help="Serve config to deploy (proxy and port are overridden).")
    ] = Path("serve_config.yaml"),
) -> None:
    """Run a real two-node Ray cluster on this machine and kill a node under traffic."""
    try:
        from testing.multinode import run_demo
    except ModuleNotFoundError as exc:  # the image leaves the test harnesses out
        typer.echo(f"happykube kuberay multinode: needs the {exc.name!r} package", err=True)
        raise typer.Exit(1) from None

    report = run_demo(config=config, max_requests=requests)
    raise typer.Exit(0 if report.ok else 1)
