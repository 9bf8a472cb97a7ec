"""The machines stay free of I/O: no module in the sans-I/O packages imports it (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANS_IO = ["netlab/transport", "netlab/link", "netlab/proto"]
FORBIDDEN = {"trio", "socket", "time", "asyncio", "selectors", "threading", "subprocess"}
# Module-level random functions share one hidden generator; machines take a random.Random.
FORBIDDEN_RANDOM_CALLS = {"random", "randint", "randrange", "choice", "shuffle", "getrandbits", "uniform"}


def _modules() -> list[Path]:
    return sorted(p for d in SANS_IO for p in (ROOT / d).rglob("*.py"))


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "random":
                names += [f"random.{a.name}" for a in node.names if a.name in FORBIDDEN_RANDOM_CALLS]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr in FORBIDDEN_RANDOM_CALLS
        ):
            names = [f"random.{node.attr}"]
        else:
            continue
        for name in names:
            if name.split(".")[0] in FORBIDDEN or name.startswith("random."):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    return found


def test_there_are_machines_to_check() -> None:
    assert len(_modules()) >= 3


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_machine_module_does_no_io(path: Path) -> None:
    assert _violations(path) == []


def test_guard_catches_an_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import trio\nfrom time import monotonic\nimport random\nx = random.random()\n")
    bad_rel = ROOT / "netlab" / "proto" / "_guard_probe.py"
    try:
        bad_rel.write_text(bad.read_text())
        assert len(_violations(bad_rel)) == 3
    finally:
        bad_rel.unlink()
