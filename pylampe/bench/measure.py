"""One speed measurement: a method at one length, in a fresh process so that its peak RSS is its own.

The prompt is random token ids (speed does not depend on the text); the
prefill is timed to the first generated token, the decode over the next
``n_gen`` tokens, both through ``Llama.generate`` with greedy sampling, as a
user runs it. Memory comes from llama.cpp's own accounting (the KV and
compute buffer sizes it logs) and from the process's peak resident set.
"""

from __future__ import annotations

import multiprocessing
import re
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

# "llama_kv_cache:        CPU KV buffer size =   192.00 MiB", "sched_reserve: CPU compute buffer size = 98.25 MiB"
_BUFFER = re.compile(r"(\S+) (KV|compute) buffer size =\s*([\d.]+) MiB")


@dataclass(frozen=True)
class Measurement:
    model: str
    method: str
    tokens: int
    n_gen: int
    threads: Optional[int]
    flash_attn: bool
    type_k: str
    type_v: str
    prefill_tok_s: Optional[float]
    decode_tok_s: Optional[float]
    kv_mib: float
    compute_mib: float
    peak_rss_mib: float
    params: Dict[str, Any]
    # Llama.lampe_counters() after the run (None without LaMPE): shows it was engaged
    lampe_ubatches: Optional[Dict[str, int]] = None

    def record(self) -> Dict[str, Any]:
        return asdict(self)


def _buffers(log: List[str]) -> Dict[str, float]:
    """The last KV and compute buffer size llama.cpp reported, MiB summed over devices."""
    last: Dict[tuple, float] = {}
    for line in log:
        for device, kind, mib in _BUFFER.findall(line):
            last[(device, kind)] = float(mib)
    return {kind: sum(v for (_, k), v in last.items() if k == kind) for kind in ("KV", "compute")}


def _type_name(ggml_type: int) -> str:
    """ggml's name of a type ("f16", "q8_0"), as --cache-type-k/-v spell it."""
    import ctypes

    from .._native import LIB_DIR

    lib = ctypes.CDLL(str(LIB_DIR / "libggml-base.so"))
    lib.ggml_type_name.argtypes, lib.ggml_type_name.restype = [ctypes.c_int], ctypes.c_char_p
    return lib.ggml_type_name(ggml_type).decode()


def _run(model: str, method: str, tokens: int, n_gen: int, llama_kwargs: Dict[str, Any], seed: int,
         memory_only: bool) -> Dict[str, Any]:
    import ctypes

    import numpy as np

    from .. import _native  # noqa: F401  (points llama_cpp at our library before its import)
    import llama_cpp
    from ..eval.method import plain_prefill
    from ..eval.methods import parse_method
    from ..eval.runtime import Runtime

    log: List[str] = []

    @llama_cpp.llama_log_callback
    def capture(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        log.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(capture, ctypes.c_void_p(0))

    runtime = Runtime(Path(model), llama_kwargs)
    setup = parse_method(method).setup(runtime.info, tokens + n_gen)
    if setup.prefill is not plain_prefill:
        raise ValueError(f"{method} evaluates prompts its own way; bench times plain llama_decode prefills")
    llm = runtime.load(setup, tokens + n_gen + 16)
    prompt = np.random.default_rng(seed).integers(100, llm.n_vocab(), size=tokens).tolist()

    prefill = decode = None
    if memory_only:
        # the first decode reserves the compute buffers for the worst case of the whole context
        llm.eval(prompt[:1])
    else:
        t0 = time.perf_counter()
        t1 = t0
        n = 0
        for _ in llm.generate(prompt, temp=0.0):
            n += 1
            if n == 1:
                t1 = time.perf_counter()  # prompt evaluated, first token sampled
            if n == n_gen + 1:
                break
        t2 = time.perf_counter()
        prefill, decode = round(tokens/(t1 - t0), 2), round(n_gen/(t2 - t1), 2)
    ubatches = llm.lampe_counters() if llm.lampe else None
    llm.close()
    runtime.close()

    buffers = _buffers(log)
    return Measurement(
        model=Path(model).name, method=method, tokens=tokens, n_gen=n_gen,
        threads=llama_kwargs.get("n_threads"), flash_attn=bool(llama_kwargs.get("flash_attn")),
        type_k=_type_name(llama_kwargs.get("type_k", llama_cpp.GGML_TYPE_F16)),
        type_v=_type_name(llama_kwargs.get("type_v", llama_cpp.GGML_TYPE_F16)),
        prefill_tok_s=prefill, decode_tok_s=decode,
        kv_mib=buffers["KV"], compute_mib=buffers["compute"],
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024, 1),
        params=setup.params, lampe_ubatches=ubatches,
    ).record()


def _child(queue: Any, *args: Any) -> None:
    try:
        queue.put(("ok", _run(*args)))
    except Exception as e:  # reported by the parent as one line
        queue.put(("error", f"{type(e).__name__}: {e}"))


def measure(model: str, method: str, tokens: int, *, n_gen: int, llama_kwargs: Dict[str, Any],
            seed: int = 0, memory_only: bool = False) -> Dict[str, Any]:
    """Run one measurement in a child process and return its record.

    memory_only: evaluate one token instead of timing the prompt (speeds None): the buffers are
    reserved for the whole context anyway, so lengths too long to evaluate can be sized.

    Raises:
        RuntimeError: the child failed (the message says why) or died.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, model, method, tokens, n_gen, llama_kwargs, seed, memory_only))
    proc.start()
    try:
        status, value = queue.get()
    except KeyboardInterrupt:
        proc.terminate()
        raise
    finally:
        proc.join()
    if status != "ok":
        raise RuntimeError(value)
    return value
