"""The image's commands start from an install of exactly what its build context holds.

The Dockerfile builds the wheel from the context Docker sends, which `.dockerignore` filters
(training/, bench/, tests/ and models/ stay out). This test applies the same ignore rules to
the checkout, builds the wheel from what is left, installs it into a clean virtual environment
whose only other packages are the locked dependencies (this environment's site-packages, added
as a plain path, so the editable install of the checkout is not seen), and runs from an empty
folder each command that the manifests and DEPLOYMENT.md run: `happykube bot`,
`happykube db upgrade`, the serve application's `import_path`, and the CLI's help.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.history_env import empty_database

# Folders the image leaves out; no module the service or the bot load may import them.
LEFT_OUT = ("training", "bench", "testing", "tests")


def _pattern(line: str) -> re.Pattern[str]:
    """One .dockerignore line as Docker's matcher reads it (Go filepath.Match plus `**`)."""
    path = os.path.normpath(line.strip().lstrip("/"))
    out = ""
    i = 0
    while i < len(path):
        char = path[i]
        if path.startswith("**", i):
            i += 2
            if path.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out)


def docker_context(repo: Path) -> list[str]:
    """The files of the checkout that Docker would send: a pattern that matches a file or one of
    its parent folders leaves it out; the last matching line wins (`!` brings a path back)."""
    rules = [
        (line.startswith("!"), _pattern(line.removeprefix("!")))
        for line in (repo / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    kept = []
    for name in listed:
        parts = name.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for keep, rule in rules:
            if any(rule.fullmatch(prefix) for prefix in prefixes):
                excluded = not keep
        if not excluded and (repo / name).is_file():
            kept.append(name)
    return kept


def test_dockerignore_rules_match_dockers() -> None:
    """Spot checks of the matcher: folders, nested caches, `**` and `!` exceptions."""
    assert _pattern("training").fullmatch("training")
    assert not _pattern("training").fullmatch("training_data")
    assert _pattern("**/__pycache__").fullmatch("serve_app/__pycache__")
    assert _pattern("**/__pycache__").fullmatch("__pycache__")
    assert _pattern("*.env").fullmatch("app.env")
    assert not _pattern("*.env").fullmatch("kuberay/secrets/app.env")
    assert _pattern("kuberay/overlays").fullmatch("kuberay/overlays")


@pytest.fixture(scope="module")
def image_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtual environment with the wheel built from the filtered context, and the locked
    dependencies of this one; yields its bin/ folder."""
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    files = docker_context(REPO)
    assert not [f for f in files if f.split("/")[0] in LEFT_OUT], "the image leaves these out"
    for name in files:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, context / name)
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", root / "dist", context],
        check=True,
        cwd=root,
    )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    wheel = next((root / "dist").glob("happykube-*.whl"))
    subprocess.run(
        [venv / "bin" / "python", *pip[1:], "install", "--no-deps", "--no-index", wheel],
        check=True,
        cwd=root,
    )
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv)})["purelib"])
    # The locked dependencies, as a plain path: its .pth files (the editable install of this
    # checkout among them) are not run, so only the wheel provides the project's packages.
    (purelib / "locked_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield venv / "bin"


def _run(
    bin_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(
        args,
        cwd=bin_dir.parent,  # an empty folder: the checkout is not importable from here
        env={**clean, "PATH": f"{bin_dir}:{clean['PATH']}", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_cli_and_the_bot_command_start(image_install: Path) -> None:
    """`happykube --help` and `happykube bot --help` run; a left-out command says so in one line."""
    top = _run(image_install, "happykube", "--help")
    assert top.returncode == 0, top.stderr
    assert "bot" in top.stdout and "db" in top.stdout
    bot = _run(image_install, "happykube", "bot", "--help")
    assert bot.returncode == 0, bot.stderr
    for args, package in ((["train"], "training"), (["checkpoints"], "testing")):
        left_out = _run(image_install, "happykube", *args)
        assert left_out.returncode != 0
        assert f"'{package}'" in left_out.stderr and "Traceback" not in left_out.stderr
        assert len(left_out.stderr.strip().splitlines()) == 1


def test_start_up_modules_import_nothing_the_image_leaves_out(image_install: Path) -> None:
    """The serve app's import path, the bot and the CLI load without training, bench or tests."""
    import_path = yaml.safe_load((REPO / "serve_config.production.yaml").read_text())[
        "applications"
    ][0]["import_path"]
    module, _, builder = import_path.partition(":")
    probe = (
        "import importlib, sys\n"
        f"builder = getattr(importlib.import_module({module!r}), {builder!r})\n"
        "import bot.__main__, serve_app.cli\n"
        "assert callable(builder)\n"
        f"left = sorted(m for m in sys.modules if m.split('.')[0] in {LEFT_OUT!r})\n"
        "assert not left, left\n"
        "import serve_app\n"
        "print(serve_app.__file__)\n"
    )
    result = _run(image_install, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert str(image_install.parent) in result.stdout  # the wheel, not the checkout


def test_db_upgrade_runs_from_the_image_install(image_install: Path) -> None:
    """`happykube db upgrade` (DEPLOYMENT.md's `kubectl exec ... happykube db upgrade`) migrates
    a fresh PostgreSQL database from the installed wheel's migrations."""
    import psycopg

    with empty_database() as url:
        result = _run(image_install, "happykube", "db", "upgrade", env={"DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
        with psycopg.connect(url) as conn:
            version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert version is not None
