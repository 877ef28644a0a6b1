"""The GPU check's dry run: scripts/device-pack.sh, then both stages of scripts/device-check.sh with
DEVICE_CHECK_DRY=1 on this machine (CPU backend, tiny bench model), so that a broken path, a missing tool or a
wrong file name shows up here and not in a lent GPU's few minutes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stage(n: int, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEVICE_CHECK_DRY="1", OUT=str(tmp / f"out{n}"), DEVICE_CHECK_BUILD=str(tmp / "build"))
    return subprocess.run(["bash", str(ROOT / "scripts" / "device-check.sh"), str(n)], env=env, capture_output=True,
                          text=True, timeout=600)


def test_device_check_dry_run(tmp_path: Path) -> None:
    pack = subprocess.run(["bash", str(ROOT / "scripts" / "device-pack.sh")], capture_output=True, text=True,
                          timeout=300)
    assert pack.returncode == 0, pack.stdout[-2000:] + pack.stderr[-2000:]

    early = stage(2, tmp_path)  # stage 2 refuses to run without a successful stage 1
    assert early.returncode == 1 and "run stage 1" in early.stdout, early.stdout[-2000:]

    one = stage(1, tmp_path)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-2000:]
    s1 = json.loads((tmp_path / "out1" / "stage1.json").read_text())
    assert s1["ok"] and s1["dry_run"] and [s["step"] for s in s1["steps"]] == ["build", "op", "sanitizer"]
    assert s1["op_cases"] and all(a == b for _, a, b in s1["op_cases"]), s1
    assert s1["sanitizer"] == [["memcheck", "auto", "ok (cases 4/4)"]], s1  # the case selection picks 4

    two = stage(2, tmp_path)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-2000:]
    s2 = json.loads((tmp_path / "out2" / "stage2.json").read_text())
    assert s2["ok"] and [s["step"] for s in s2["steps"]] == ["ref", "bench-1024"], s2
    assert any(" passed" in p and "failed" not in p for p in s2["pytest"]), s2
    assert any(name.startswith("plain attention") for _, name in s2["logit_errors"]), s2  # widened tolerances ran
    (bench,) = s2["bench"]
    assert bench["tokens"] == 1024 and bench["fused_op"] == "fused" and bench["decode_ratio"] > 0, bench
