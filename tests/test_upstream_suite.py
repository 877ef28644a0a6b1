"""llama-cpp-python's own test suite, from the pinned sdist, against pylampe: the drop-in promise.

Three runs (tests/upstream_suite/conftest.py says what each replaces): upstream ``llama_cpp.Llama`` on
pylampe's library, ``pylampe.Llama`` with its default, and ``pylampe.Llama`` with LaMPE forced on the
tests' short prompts. Downloads map to the embedded SmolLM2 where a local model stands in, and skip
otherwise; every test that runs must pass. The counts are what a run gave on this project's machines:
fewer passes means a test stopped running.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

# passed tests per mode with the pinned llama-cpp-python 0.3.36
MIN_PASSED = {"upstream": 12, "auto": 12, "forced": 12}


def _vendor_module():
    spec = importlib.util.spec_from_file_location("vendor_script", ROOT / "scripts" / "vendor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist's tests/ with our conftest laid over them."""
    vendor = _vendor_module()
    sdist = vendor.fetch_sdist()  # cached, sha256-checked
    out = tmp_path_factory.mktemp("upstream")
    prefix = f"llama_cpp_python-{vendor.BINDINGS_VERSION}/tests/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(out / "tests", members=members, filter="data")
    shutil.copy(HERE / "upstream_suite" / "conftest.py", out / "tests" / "conftest.py")
    return out / "tests"


@pytest.mark.smollm
@pytest.mark.parametrize("mode", ["upstream", "auto", "forced"])
def test_llama_cpp_python_suite(suite: Path, mode: str) -> None:
    # from the repository root: the suite reads ./vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf. The
    # pytest script, not `python -m pytest`, which would put the root's pylampe/ (no library) on sys.path
    pytest_script = Path(sys.executable).with_name("pytest")
    run = subprocess.run(
        [str(pytest_script), "-q", "-p", "no:cacheprovider", "--rootdir", str(suite), str(suite)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "PYLAMPE_UPSTREAM_MODE": mode},
    )
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    summary = lines[-1] if lines else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    assert run.returncode == 0 and not counts.get("failed") and not counts.get("errors", counts.get("error")), tail
    assert counts.get("passed", 0) >= MIN_PASSED[mode], tail
    if mode == "forced":
        engaged = re.search(r"pylampe: (\d+) ubatches decoded with LaMPE", run.stdout)
        assert engaged and int(engaged.group(1)) > 0, tail
    print(f"llama-cpp-python suite, {mode}: {summary}")
