"""requirements.lock (what the project installs, tests and ships) agrees with pyproject.toml
(the ranges people who `pip install` the package get). `make lock` refreshes the lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


def locked(text: str) -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, hashes) of each `name==version --hash=...` entry of a lock."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", text):
        head = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", block)
        if head:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
            entries[canonicalize_name(head[1])] = (Version(head[2]), hashes)
    return entries


def requirements(pyproject: dict[str, object], *, dev: bool = True) -> list[Requirement]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    names = [*project["dependencies"], *(project["optional-dependencies"]["dev"] if dev else [])]
    reqs = [Requirement(name) for name in names]
    target = {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}
    return [r for r in reqs if r.marker is None or r.marker.evaluate(target)]


def disagreements(pyproject: dict[str, object], lock: str, *, dev: bool = True) -> list[str]:
    entries = locked(lock)
    problems = []
    for req in requirements(pyproject, dev=dev):
        entry = entries.get(canonicalize_name(req.name))
        if entry is None:
            problems.append(f"{req.name} is required but not in the lock")
        elif not req.specifier.contains(entry[0], prereleases=True):
            problems.append(f"{req.name} is locked at {entry[0]}, outside {req.specifier}")
    problems += [f"{name} has no hash" for name, (_, hashes) in entries.items() if not hashes]
    return problems


def test_the_lock_satisfies_every_requirement_with_hashes() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    lock = (REPO / "requirements.lock").read_text()
    assert len(locked(lock)) > 100
    assert disagreements(pyproject, lock) == [], "run `make lock`"


def test_the_image_lock_is_the_runtime_subset_at_the_same_versions() -> None:
    """requirements-runtime.lock (the image's install) pins exactly what the full lock pins."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = (REPO / "requirements-runtime.lock").read_text()
    assert disagreements(pyproject, runtime, dev=False) == [], "run `make lock`"
    full = locked((REPO / "requirements.lock").read_text())
    differ = {
        name: (version, full.get(name, (None, []))[0])
        for name, (version, _) in locked(runtime).items()
        if name not in full or full[name][0] != version
    }
    assert differ == {}, "run `make lock`"
    assert "pytest" not in locked(runtime)


def test_the_locked_torch_is_the_cpu_build() -> None:
    version, _ = locked((REPO / "requirements.lock").read_text())["torch"]
    assert version.local == "cpu"


def test_a_missing_or_out_of_range_requirement_is_reported() -> None:
    pyproject = {
        "project": {
            "dependencies": ["fastapi>=0.115", "left-out==1.0"],
            "optional-dependencies": {"dev": ["pytest>=8,<9.2"]},
        }
    }
    lock = (
        "fastapi==0.110.0 \\\n    --hash=sha256:" + "a" * 64 + "\n"
        "pytest==9.2.0 \\\n    --hash=sha256:" + "b" * 64 + "\n"
        "unhashed==1.0\n"
    )
    assert disagreements(pyproject, lock) == [
        "fastapi is locked at 0.110.0, outside >=0.115",
        "left-out is required but not in the lock",
        "pytest is locked at 9.2.0, outside <9.2,>=8",
        "unhashed has no hash",
    ]
