"""Everything that changes a document's KV state, but the document: the model file, the build,
the KV types, the attention and RoPE settings, LaMPE's parameters and the chat template."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Dict

from ..llama import Llama

# Bump when what an entry holds changes meaning.
FORMAT = 1
# The model's identity: its size and 16 evenly spread 64 KiB samples (first and last included):
# a re-downloaded or re-quantized file differs, a copy elsewhere does not, and a 5 GB model
# costs a 1 MiB read rather than a full hash.
_SAMPLES = 16
_SAMPLE_BYTES = 64 << 10


def model_identity(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        h.update(str(size).encode())
        for i in range(_SAMPLES):
            f.seek(max(0, (size - _SAMPLE_BYTES) * i // (_SAMPLES - 1)))
            h.update(f.read(_SAMPLE_BYTES))
    return h.hexdigest()


def _build() -> Any:
    try:
        from .._build_info import LLAMA_CPP_COMMIT, PATCHES
    except ImportError:  # a source tree CMake has not configured
        return None
    return [LLAMA_CPP_COMMIT, list(PATCHES)]


def settings(llm: Llama) -> Dict[str, Any]:
    """The fields of the fingerprint (JSON-ready)."""
    cp = llm.context_params
    template = llm.metadata.get("tokenizer.chat_template")
    return {
        "format": FORMAT,
        "build": _build(),
        "model": model_identity(llm.model_path),
        "type_k": cp.type_k, "type_v": cp.type_v, "flash_attn": cp.flash_attn_type,
        # how the prompt is cut into ubatches changes the sums' order, so the last bits
        "n_ubatch": cp.n_ubatch,
        "rope": [cp.rope_scaling_type, cp.rope_freq_base, cp.rope_freq_scale, cp.yarn_ext_factor,
                 cp.yarn_attn_factor, cp.yarn_beta_fast, cp.yarn_beta_slow, cp.yarn_orig_ctx],
        "lampe": dataclasses.asdict(llm.lampe) if llm.lampe is not None else None,
        "chat_template": hashlib.sha256(template.encode()).hexdigest() if template else None,
    }


def fingerprint(llm: Llama) -> str:
    return hashlib.sha256(json.dumps(settings(llm), sort_keys=True).encode()).hexdigest()


def model_name(llm: Llama) -> str:
    return Path(llm.model_path).name
