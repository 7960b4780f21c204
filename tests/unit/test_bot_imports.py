"""The bot is a plain HTTP client of the ingress: it loads the contract, not the service."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

SERVICE_ONLY = ("ray", "sqlalchemy", "db", "fastapi", "serve_app")


def test_the_bot_imports_neither_ray_nor_the_database_nor_the_service() -> None:
    """`import bot.__main__` in a fresh interpreter loads `contract` and none of SERVICE_ONLY."""
    probe = (
        "import sys\n"
        "import bot.__main__\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    assert "contract" in loaded and "telegram" in loaded
    assert not loaded & set(SERVICE_ONLY), sorted(loaded & set(SERVICE_ONLY))
