"""What a context will cost in memory, estimated from the model's metadata before llama.cpp
allocates it, so that a document too long for this machine is refused with the numbers instead
of meeting the kernel's OOM killer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from .cache_types import CACHE_TYPE_BYTES

# llama.cpp pads the KV cache to a multiple of this many cells.
KV_PADDING = 256
GIB = 1 << 30


@dataclass(frozen=True)
class ContextMemory:
    """Bytes for the KV cache and (an estimate of) llama.cpp's compute buffer."""

    kv: int
    compute: int

    @property
    def total(self) -> int:
        return self.kv + self.compute


def _hparam(meta: Mapping[str, str], name: str, default: int = 0) -> int:
    value = meta.get(f"{meta.get('general.architecture', '')}.{name}")
    return int(value) if value is not None else default


def kv_bytes_per_token(meta: Mapping[str, str], type_k: str, type_v: str) -> float:
    """K and V of every layer for one token (``type_k``/``type_v``: "f16", "q8_0", ...)."""
    n_head = _hparam(meta, "attention.head_count", 1)
    n_head_kv = _hparam(meta, "attention.head_count_kv", n_head)
    head = _hparam(meta, "embedding_length") // max(1, n_head)
    k_dim = n_head_kv * _hparam(meta, "attention.key_length", head)
    v_dim = n_head_kv * _hparam(meta, "attention.value_length", head)
    return _hparam(meta, "block_count") * (k_dim * CACHE_TYPE_BYTES[type_k] + v_dim * CACHE_TYPE_BYTES[type_v])


def context_memory(meta: Mapping[str, str], n_vocab: int, n_ctx: int, type_k: str, type_v: str,
                   flash_attn: bool, n_ubatch: int = 512) -> ContextMemory:
    """The KV cache of ``n_ctx`` tokens and the compute buffer of a ubatch over it.

    The compute buffer is dominated by the ubatch's logits (n_ubatch x n_vocab floats), the
    attention mask, and without flash attention the score matrix of every head; measured on
    SmolLM2 this overestimates llama.cpp's own figure by a few percent (see the README).
    """
    cells = -(-n_ctx // KV_PADDING) * KV_PADDING
    kv = int(cells * kv_bytes_per_token(meta, type_k, type_v))
    compute = n_ubatch * n_vocab * 4 + cells * n_ubatch
    if not flash_attn:
        compute += _hparam(meta, "attention.head_count", 1) * cells * n_ubatch * 4
    return ContextMemory(kv, compute)


def _read_int(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> Optional[int]:
    """Memory a new allocation can get: MemAvailable, or less under a cgroup (v2) limit;
    None where neither can be read (then nothing is checked)."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    limit = _read_int(Path("/sys/fs/cgroup/memory.max"))
    used = _read_int(Path("/sys/fs/cgroup/memory.current"))
    if limit is not None and used is not None:
        room = max(0, limit - used)
        available = room if available is None else min(available, room)
    return available


def gib(n: float) -> str:
    """``"2.1 GiB"``, or MiB (KiB) below one GiB (MiB)."""
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    return f"{n / (1 << 20):.0f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"
