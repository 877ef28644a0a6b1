"""The fused LaMPE op on an NVIDIA GPU: it runs there (llama.cpp's probe keeps it on the device) and agrees with
LaMPE composed of ggml ops on the same GPU, for prefill tiles and decoding, F32 and F16 caches.

Runs only where an NVIDIA GPU answers nvidia-smi and pylampe was built with CUDA (libggml-cuda next to
libllama); elsewhere, CI included, the module is skipped at collection. scripts/device-check.sh runs it,
with tests/test_lampe_reference.py and tests/test_lampe_properties.py on the GPU as well
(PYLAMPE_TEST_N_GPU_LAYERS).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _cuda_ready() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if gpus.returncode != 0 or "GPU" not in gpus.stdout:
        return False
    import importlib.util

    spec = importlib.util.find_spec("pylampe")
    if spec is None or spec.origin is None:
        return False
    lib = Path(spec.origin).parent / "lib"
    return any(lib.glob("libggml-cuda.so*"))


pytestmark = pytest.mark.skipif(not _cuda_ready(), reason="needs an NVIDIA GPU and pylampe built with CUDA")

W, S, M = 16, 4, 24
ATTN_FACTOR = 0.1 * np.log(2.0) + 1.0
GPU = 999


@pytest.fixture(scope="module")
def llama_hd64(model_dir: Path) -> Path:
    from gguf_models import write_tiny_llama

    return write_tiny_llama(model_dir / "cuda-llama-hd64.gguf", n_embd=128, n_head=2, n_head_kv=1)


@pytest.fixture(scope="module")
def qwen2_hd32_gqa(model_dir: Path) -> Path:
    from gguf_models import write_tiny_llama

    return write_tiny_llama(model_dir / "cuda-qwen2-hd32.gguf", arch="qwen2", n_embd=128, n_head=4, n_head_kv=2)


def lampe_run(path: Path, tokens: list[int], L: int, *, fused: bool, kv: str, batch: int, n_decode: int) -> np.ndarray:
    """Logits of a prefill in batches of `batch`, then n_decode single-token steps, all layers on the GPU."""
    from llama_driver import decode, enable_lampe, loaded_model, new_context, set_lampe_ref

    n_prompt = len(tokens) - n_decode
    with loaded_model(path, n_gpu_layers=GPU) as model, new_context(
            model, n_ctx=512, n_batch=batch, n_ubatch=batch, kv_type=kv, flash_attn=fused) as ctx:
        enable_lampe(ctx, W=W, S=S, M=M, s=ATTN_FACTOR)
        set_lampe_ref(ctx, L)
        out = [decode(ctx, tokens[:n_prompt], batch_size=batch)]
        out += [decode(ctx, [t], batch_size=1, pos0=n_prompt + k) for k, t in enumerate(tokens[n_prompt:])]
    return np.concatenate(out)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_fused_op_stays_on_the_gpu(llama_hd64: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """llama.cpp's probe finds the op supported where the layers run, so LaMPE is not composed of ggml ops."""
    tokens = np.random.default_rng(0).integers(3, 400, size=40).tolist()
    lampe_run(llama_hd64, tokens, 150, fused=True, kv="f16", batch=32, n_decode=0)
    err = capsys.readouterr().err
    verdicts = [line for line in err.splitlines() if "LaMPE flash attention" in line]
    assert verdicts and verdicts[-1].rstrip().endswith("enabled"), "\n".join(verdicts) or err[-3000:]


@pytest.mark.parametrize("kv,tol", [("f32", 1e-4), ("f16", 1e-2)])  # f16: both paths round Q or K to 16 bits
@pytest.mark.parametrize("model", ["llama_hd64", "qwen2_hd32_gqa"])
def test_fused_matches_composition(model: str, kv: str, tol: float, request: pytest.FixtureRequest) -> None:
    """2T prompt in 64-token batches (the tile kernel) then 8 decoding steps (the vec kernel).

    The composition multiplies K and Q with cuBLAS (TF32) and upstream's flash attention differs from it too:
    the bound is tol plus PLAIN_MULTIPLE x plain attention's own difference between flash attention on and off,
    on the same model, KV type and prompt."""
    from gpu_tolerance import plain_logits, widen

    path = request.getfixturevalue(model)
    L = 128
    tokens = np.random.default_rng(1).integers(3, 400, size=L + 8).tolist()
    fused = lampe_run(path, tokens, L, fused=True, kv=kv, batch=64, n_decode=8)
    ops = lampe_run(path, tokens, L, fused=False, kv=kv, batch=64, n_decode=8)
    plain_gap = rel_err(plain_logits(path, tokens, batch=64, kv=kv, flash_attn=True),
                        plain_logits(path, tokens, batch=64, kv=kv, flash_attn=False))
    assert np.isfinite(fused).all()
    assert rel_err(fused, ops) < widen(tol, plain_gap, f"{kv}, flash attention on vs off")
