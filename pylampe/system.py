"""What a bug report needs to know about this machine and this build: ``pylampe info``."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Dict, List

import llama_cpp

from . import __version__, _ggml

# the /proc/cpuinfo flags that decide which of ggml's CPU kernels can run
_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",  # x86-64
              "asimd", "asimdhp", "asimddp", "i8mm", "sve", "sve2", "bf16")  # ARM64

# what the fused op covers per backend (patches/0001, 0004); other devices take the composition of ggml ops
LAMPE_KERNELS = {
    "CPU": "ggml_flash_attn_ext_lampe (fused, flash attention on; any K/V type); ggml ops with it off",
    "CUDA": "ggml_flash_attn_ext_lampe (fused, flash attention on; F32/F16/Q8_0 K/V, head size <= 128); "
            "ggml ops otherwise",
}


def cpu() -> Dict[str, Any]:
    """The CPU's model and the flags among _CPU_FLAGS that it has."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model name", "CPU part") and model in ("unknown", "", platform.machine()):
                model = value.strip()
            elif key in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    return {"machine": platform.machine(), "model": model, "flags": [f for f in _CPU_FLAGS if f in flags]}


def built_for() -> List[str]:
    """The CPU features llama.cpp was compiled for (its system info, the ones set to 1)."""
    info = llama_cpp.llama_print_system_info().decode()
    items = (item.split(":")[-1] for item in info.split("|"))  # the first reads "CPU : SSE3 = 1"
    return [item.split("=")[0].strip() for item in items if item.strip().endswith("= 1")]


def amx_status(cpu_flags: List[str], devices: List[_ggml.Device]) -> str:
    has = {"amx_tile", "amx_int8"} <= set(cpu_flags)
    in_use = any("AMX" in b for d in devices for b in d.extra_buffers)
    if in_use:
        return "used for quantized weights (AMX buffer)"
    if has:
        return "this CPU has AMX, but ggml does not use it (built without AMX_INT8, or the kernel refused AMX)"
    return "not used: this CPU has no AMX"


def report() -> Dict[str, Any]:
    try:
        from ._build_info import BACKENDS, LLAMA_CPP_COMMIT, PATCHES
    except ImportError:  # a source tree that CMake has not configured
        BACKENDS, LLAMA_CPP_COMMIT, PATCHES = (), "unknown", ()
    llama_cpp.llama_backend_init()
    c = cpu()
    devs = _ggml.devices()
    return {
        "pylampe": __version__,
        "llama_cpp_commit": LLAMA_CPP_COMMIT,
        "patches": [p.removesuffix(".patch") for p in PATCHES],
        "backends_built": list(BACKENDS),
        "cpu": c,
        "built_for": built_for(),
        "devices": [
            {"name": d.name, "kind": d.kind, "description": d.description, "memory_total": d.memory_total,
             "extra_buffers": d.extra_buffers,
             "lampe": LAMPE_KERNELS.get(d.name.rstrip("0123456789"), "ggml ops (the composition)")}
            for d in devs
        ],
        "amx": amx_status(c["flags"], devs),
    }
