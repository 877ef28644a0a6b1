"""Runs LaMPE cases in a process of its own, so that a crash fails a test instead of killing pytest.

Reads one JSON case per line on stdin, evaluates it through llama.cpp's C API
and answers one JSON line on stdout: {"logits": path of an .npy file, "state":
..., "plain_logits": the same without LaMPE, for exact attention} or
{"refused": why}. A case that aborts the process leaves the parent
with no answer and this process's exit status. See test_lampe_properties.py.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

import llama_driver
from llama_driver import llama_cpp, loaded_model

GGML_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20}


class Refused(Exception):
    """llama.cpp declined the case with an error code: allowed, where the test expects it."""


def lampe_params(case: dict[str, Any]) -> Any:
    from pylampe import _native

    p = _native.llama_lampe_default_params()
    p.n_window, p.n_start, p.attn_factor = case["W"], case["S"], case["s"]
    p.n_map = case.get("M") or 0
    p.map_a, p.map_b, p.map_c = case.get("sigmoid") or (0.0, 0.0, 1.0)
    p.n_map_min = case.get("m_min", 0)
    return p


def evaluate(case: dict[str, Any], lampe: bool) -> tuple[np.ndarray, Any]:
    """All logits of the case (prefill in batches of n_batch, then one token at a time) and the LaMPE state."""
    from pylampe import _native

    tokens, n_prompt, n_batch = case["tokens"], case["n_prompt"], case["n_batch"]
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = case["n_ctx"]
    params.n_batch = params.n_ubatch = n_batch
    params.type_k, params.type_v = GGML_TYPE[case["type_k"]], GGML_TYPE[case["type_v"]]
    params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if case["flash_attn"]
                              else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    params.n_threads = params.n_threads_batch = 2
    state = None
    with loaded_model(case["model"]) as model:
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            raise Refused("llama_init_from_model failed")
        try:
            if lampe:
                rc = _native.llama_lampe_enable(ctx, lampe_params(case))
                if rc != 0:
                    raise Refused(f"llama_lampe_enable returned {rc}")
                # the prompt's L, or exact attention for a prompt that fits the trained context
                if _native.llama_lampe_set_ref(ctx, 0, 0 if case["exact"] else n_prompt) != 0:
                    raise Refused("llama_lampe_set_ref failed")
                state = _native.llama_lampe_get_state(ctx, 0)
            prefill = llama_driver.decode(ctx, tokens[:n_prompt], batch_size=n_batch)
            steps = [llama_driver.decode(ctx, [t], batch_size=1, pos0=n_prompt + k)
                     for k, t in enumerate(tokens[n_prompt:])]
        finally:
            llama_cpp.llama_free(ctx)
    return np.concatenate([prefill, *steps]), state


def run(case: dict[str, Any]) -> dict[str, Any]:
    logits, state = evaluate(case, lampe=True)
    np.save(case["out"] + ".lampe.npy", logits)
    answer = {"logits": case["out"] + ".lampe.npy", "state": {"n_ref": state.n_ref, "n_map": state.n_map}}
    if case["exact"]:  # exact attention must be upstream's: run it too
        np.save(case["out"] + ".plain.npy", evaluate(case, lampe=False)[0])
        answer["plain_logits"] = case["out"] + ".plain.npy"
    return answer


def main() -> None:
    from pylampe._native import set_llama_logging

    set_llama_logging(False)
    for line in sys.stdin:
        try:
            answer = run(json.loads(line))
        except (Refused, RuntimeError) as e:
            answer = {"refused": str(e)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
