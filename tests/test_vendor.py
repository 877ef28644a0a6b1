"""The vendor/patch round trip: scripts/vendor.py on a fresh extract of the pinned sdist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATCHES = ROOT / "patches"


def vendor(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "vendor.py"), *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def fresh_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("vendor") / "llama.cpp"
    res = vendor("apply", "--vendor", tree)
    assert res.returncode == 0, res.stderr
    return tree


def test_series_is_not_empty() -> None:
    assert sorted(PATCHES.glob("*.patch"))


def test_apply_then_export_gives_identical_patches(fresh_tree: Path, tmp_path: Path) -> None:
    res = vendor("export", "--vendor", fresh_tree, "--patches", tmp_path)
    assert res.returncode == 0, res.stderr
    exported = sorted(tmp_path.glob("*.patch"))
    assert [p.name for p in exported] == [p.name for p in sorted(PATCHES.glob("*.patch"))]
    for patch in exported:
        assert patch.read_bytes() == (PATCHES / patch.name).read_bytes(), patch.name


def test_apply_is_idempotent(fresh_tree: Path) -> None:
    res = vendor("apply", "--vendor", fresh_tree)
    assert res.returncode == 0
    assert "up to date" in res.stdout
    assert vendor("status", "--vendor", fresh_tree).returncode == 0


def test_local_edits_are_reported_not_overwritten(fresh_tree: Path) -> None:
    edited = fresh_tree / "src" / "llama-lampe.cpp"
    original = edited.read_text()
    edited.write_text(original + "// local edit\n")
    try:
        res = vendor("apply", "--vendor", fresh_tree)
        assert res.returncode == 1
        assert "uncommitted edits" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        assert edited.read_text().endswith("// local edit\n")
    finally:
        edited.write_text(original)
