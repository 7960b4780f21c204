"""A command started with missing or bad configuration says what is wrong in one line on
stderr, naming the variable (never its value), and exits non-zero: no traceback."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

KEY = "k1:" + base64.b64encode(os.urandom(32)).decode()
PEPPER = base64.b64encode(os.urandom(32)).decode()
BOT = {
    "TELEGRAM_BOT_TOKEN": "123456:real-looking-token",
    "HAPPYKUBE_API_KEY": "hk_real_looking_key_0123456789",
    "HAPPYKUBE_BOT_STATE_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
}
STORAGE = {"HAPPYKUBE_USER_PEPPER": PEPPER, "HAPPYKUBE_ENCRYPTION_KEYS": KEY}

CASES = [
    (["bot"], {}, "HAPPYKUBE_BOT_STATE_KEY"),
    (["bot"], {**BOT, "HAPPYKUBE_BOT_STATE_KEY": "CHANGE_ME_FERNET"}, "HAPPYKUBE_BOT_STATE_KEY"),
    (["bot"], {**BOT, "HAPPYKUBE_API_KEY": "changeme"}, "HAPPYKUBE_API_KEY"),
    (["bot"], {**BOT, "HAPPYKUBE_API_URL": "ingress:8000"}, "HAPPYKUBE_API_URL"),
    (["db", "upgrade"], {"DATABASE_URL": "mysql://app:hunter2@db/x"}, "DATABASE_URL"),
    (["db", "upgrade"], {"HAPPYKUBE_ENVIRONMENT": "production"}, "HAPPYKUBE_USER_PEPPER"),
    (
        ["db", "rotate-keys"],
        {**STORAGE, "HAPPYKUBE_ENCRYPTION_KEYS": "hunter2"},
        "HAPPYKUBE_ENCRYPTION_KEYS",
    ),
    (["keys", "list"], {**STORAGE, "HAPPYKUBE_ACTIVE_KEY_ID": "k9"}, "HAPPYKUBE_ACTIVE_KEY_ID"),
    (
        ["keys", "create", "--client", "ci", "--name", "ci"],
        {"HAPPYKUBE_ENVIRONMENT": "production", "HAPPYKUBE_API_KEY_PEPPER": "CHANGE_ME"},
        "HAPPYKUBE_API_KEY_PEPPER",
    ),
]


@pytest.mark.parametrize(
    ("args", "env", "variable"), CASES, ids=[f"{' '.join(c[0][:2])}-{c[2]}" for c in CASES]
)
def test_a_configuration_error_is_one_line_naming_the_variable(
    tmp_path: Path, args: list[str], env: dict[str, str], variable: str
) -> None:
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}
    result = subprocess.run(
        [sys.executable, "-m", "serve_app.cli", *args],
        cwd=tmp_path,  # a quick-start var/ folder, if any, lands here
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    [line] = result.stderr.strip().splitlines()
    assert variable in line
    assert "hunter2" not in line and "CHANGE_ME_FERNET" not in line, "values never echoed"
