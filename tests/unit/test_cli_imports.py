"""`happykube` imports a command's module only when that command runs."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

COMMAND_PACKAGES = {"bot", "db", "kuberay", "training", "bench", "testing", "ray", "sqlalchemy"}


def _loaded_after(args: list[str]) -> set[str]:
    probe = (
        "import sys\n"
        "from serve_app import cli\n"
        f"sys.argv = ['happykube', *{args!r}]\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = result.stdout.splitlines()[-1]  # after the help text, which names the commands
    return set(loaded.split()) & COMMAND_PACKAGES


def test_the_command_list_loads_no_command_module() -> None:
    assert _loaded_after(["--help"]) == set()


def test_a_command_loads_its_own_module_only() -> None:
    """`happykube kuberay --help` loads kuberay; `happykube db --help` loads db, never the bot."""
    assert _loaded_after(["kuberay", "--help"]) == {"kuberay"}
    assert _loaded_after(["db", "--help"]) == {"db"}
