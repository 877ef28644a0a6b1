"""Loads pylampe's patched llama.cpp into llama_cpp and binds the LaMPE C API.

llama-cpp-python loads its shared library once, at import, from
``LLAMA_CPP_LIB_PATH``; so this module must run before anything imports
``llama_cpp``. The bindings below mirror the "LaMPE" block of llama.cpp's
``src/llama-ext.h`` (its staging header for new API) field by field and
function by function, like ``llama_cpp/llama_cpp.py``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Optional

LIB_DIR = Path(__file__).resolve().parent / "lib"

# llama_cpp loads its library once; if it was imported first, check what it took.
_imported_before = "llama_cpp" in sys.modules
os.environ["LLAMA_CPP_LIB_PATH"] = str(LIB_DIR)

try:
    import llama_cpp  # noqa: E402  (must follow the environment variable)
except (FileNotFoundError, RuntimeError) as e:  # what llama_cpp raises for a missing library
    raise ImportError(f"cannot load pylampe's llama.cpp library from {LIB_DIR}: {e}") from e
from llama_cpp.llama_cpp import _lib, ctypes_function, llama_seq_id  # noqa: E402


def loaded_library_path() -> Path:
    """The resolved path of the libllama that llama_cpp actually loaded."""
    return Path(_lib._name).resolve()


if loaded_library_path().parent != LIB_DIR.resolve():
    raise ImportError(
        f"llama_cpp was imported before pylampe and loaded {loaded_library_path()}; "
        f"import pylampe first, so that llama_cpp loads pylampe's library from {LIB_DIR}"
        if _imported_before
        else f"llama_cpp loaded {loaded_library_path()}, not pylampe's library in {LIB_DIR}"
    )
if not hasattr(_lib, "llama_lampe_enable"):
    raise ImportError(
        f"{loaded_library_path()} lacks the LaMPE API (llama_lampe_enable): "
        "it was built without pylampe's patches; reinstall pylampe"
    )


# struct llama_lampe_params {
#     int32_t n_window;    // W: local window, exact relative positions
#     int32_t n_start;     // S: start (sink) span
#     int32_t n_map;       // M: fixed mapping length; <= 0 uses the sigmoid below
#     float   map_a;       // sigmoid slope a
#     float   map_b;       // sigmoid offset b
#     float   map_c;       // sigmoid capacity c
#     int32_t n_map_min;   // lower bound of the sigmoid's M (0: none)
#     float   attn_factor; // s: scales the rotated q and k (logits by s^2)
# };
class llama_lampe_params(ctypes.Structure):
    """LaMPE parameters of a context (see ``LampeConfig`` for the meaning)."""

    _fields_ = [
        ("n_window", ctypes.c_int32),
        ("n_start", ctypes.c_int32),
        ("n_map", ctypes.c_int32),
        ("map_a", ctypes.c_float),
        ("map_b", ctypes.c_float),
        ("map_c", ctypes.c_float),
        ("n_map_min", ctypes.c_int32),
        ("attn_factor", ctypes.c_float),
    ]


# struct llama_lampe_state {
#     int32_t n_ref;       // L; 0 means exact upstream attention (no LaMPE, s = 1)
#     int32_t n_map;       // M(L), capped at L - 1
#     int32_t n_window;    // W
#     int32_t n_start;     // S
#     int32_t r;           // last index of the map-group of S
#     int32_t b1;          // middle-region query offset
#     int32_t b2;          // start-region query offset
#     float   attn_factor; // s
#     bool    multi_grained; // false when L < 2W: plain causal attention (still scaled by s^2)
# };
class llama_lampe_state(ctypes.Structure):
    """The constants of one sequence for one reference length L."""

    _fields_ = [
        ("n_ref", ctypes.c_int32),
        ("n_map", ctypes.c_int32),
        ("n_window", ctypes.c_int32),
        ("n_start", ctypes.c_int32),
        ("r", ctypes.c_int32),
        ("b1", ctypes.c_int32),
        ("b2", ctypes.c_int32),
        ("attn_factor", ctypes.c_float),
        ("multi_grained", ctypes.c_bool),
    ]


# LLAMA_API struct llama_lampe_params llama_lampe_default_params(void);
@ctypes_function("llama_lampe_default_params", [], llama_lampe_params)
def llama_lampe_default_params() -> llama_lampe_params: ...


# LLAMA_API const char * llama_lampe_params_check(const struct llama_model * model, struct llama_lampe_params params);
@ctypes_function(
    "llama_lampe_params_check", [ctypes.c_void_p, llama_lampe_params], ctypes.c_char_p
)
def llama_lampe_params_check(
    model: Optional[llama_cpp.llama_model_p], params: llama_lampe_params, /
) -> Optional[bytes]:
    """None if the parameters are valid (for the model's T when a model is given), else why not."""
    ...


# LLAMA_API struct llama_lampe_state llama_lampe_state_init(struct llama_lampe_params params, int32_t n_ref);
@ctypes_function(
    "llama_lampe_state_init", [llama_lampe_params, ctypes.c_int32], llama_lampe_state
)
def llama_lampe_state_init(
    params: llama_lampe_params, n_ref: int, /
) -> llama_lampe_state:
    """The constants for reference length n_ref (pure; n_ref <= 0: exact state)."""
    ...


# LLAMA_API int64_t llama_lampe_map(struct llama_lampe_state state, int64_t pos);
@ctypes_function("llama_lampe_map", [llama_lampe_state, ctypes.c_int64], ctypes.c_int64)
def llama_lampe_map(state: llama_lampe_state, pos: int, /) -> int:
    """map(pos) = floor(pos*M / (L-1)) in exact integer arithmetic."""
    ...


# LLAMA_API const char * llama_lampe_model_unsupported(const struct llama_model * model);
@ctypes_function(
    "llama_lampe_model_unsupported", [llama_cpp.llama_model_p_ctypes], ctypes.c_char_p
)
def llama_lampe_model_unsupported(model: llama_cpp.llama_model_p, /) -> Optional[bytes]:
    """None if the model's attention can use LaMPE, else why not."""
    ...


# LLAMA_API int32_t llama_lampe_enable(struct llama_context * ctx, struct llama_lampe_params params);
@ctypes_function(
    "llama_lampe_enable",
    [llama_cpp.llama_context_p_ctypes, llama_lampe_params],
    ctypes.c_int32,
)
def llama_lampe_enable(
    ctx: llama_cpp.llama_context_p, params: llama_lampe_params, /
) -> int:
    """0 on success, -1: unsupported model, -2: invalid parameters, -3: non-causal attention."""
    ...


# LLAMA_API void llama_lampe_disable(struct llama_context * ctx);
@ctypes_function("llama_lampe_disable", [llama_cpp.llama_context_p_ctypes], None)
def llama_lampe_disable(ctx: llama_cpp.llama_context_p, /) -> None: ...


# LLAMA_API bool llama_lampe_enabled(const struct llama_context * ctx);
@ctypes_function("llama_lampe_enabled", [llama_cpp.llama_context_p_ctypes], ctypes.c_bool)
def llama_lampe_enabled(ctx: llama_cpp.llama_context_p, /) -> bool: ...


# #define LLAMA_LAMPE_REF_PLAIN (-1)
LLAMA_LAMPE_REF_PLAIN = -1


# LLAMA_API int32_t llama_lampe_set_ref(struct llama_context * ctx, llama_seq_id seq_id, int32_t n_ref);
@ctypes_function(
    "llama_lampe_set_ref",
    [llama_cpp.llama_context_p_ctypes, llama_seq_id, ctypes.c_int32],
    ctypes.c_int32,
)
def llama_lampe_set_ref(
    ctx: llama_cpp.llama_context_p, seq_id: int, n_ref: int, /
) -> int:
    """Set the reference length L of a sequence (0: exact attention inside T, LaMPE derived beyond it;
    LLAMA_LAMPE_REF_PLAIN: exact attention at any length).

    0 on success, -1 if LaMPE is not enabled, -2 if seq_id or n_ref is out of range.
    """
    ...


# LLAMA_API struct llama_lampe_state llama_lampe_get_state(const struct llama_context * ctx, llama_seq_id seq_id);
@ctypes_function(
    "llama_lampe_get_state",
    [llama_cpp.llama_context_p_ctypes, llama_seq_id],
    llama_lampe_state,
)
def llama_lampe_get_state(
    ctx: llama_cpp.llama_context_p, seq_id: int, /
) -> llama_lampe_state: ...


# struct llama_lampe_counters {
#     int64_t n_ubatch_lampe;        // ubatches with a token of a sequence that has L (LaMPE attention)
#     int64_t n_ubatch_exact;        // ubatches with exact attention for every token
#     int64_t n_ubatch_exact_beyond; // ubatches with a token at a position >= T whose sequence has no L (always 0)
#     int64_t n_ref_derived;         // reference lengths that llama_decode derived (sequences without L beyond T)
#     int64_t n_ref_kept;            // edits after which a sequence kept its L
#     int64_t n_ref_reset;           // edits that reset a sequence's L to 0
# };
class llama_lampe_counters(ctypes.Structure):
    """What llama_decode did with LaMPE on a context since it was enabled."""

    _fields_ = [
        ("n_ubatch_lampe", ctypes.c_int64),
        ("n_ubatch_exact", ctypes.c_int64),
        ("n_ubatch_exact_beyond", ctypes.c_int64),
        ("n_ref_derived", ctypes.c_int64),
        ("n_ref_kept", ctypes.c_int64),
        ("n_ref_reset", ctypes.c_int64),
    ]


# LLAMA_API struct llama_lampe_counters llama_lampe_get_counters(const struct llama_context * ctx);
@ctypes_function(
    "llama_lampe_get_counters", [llama_cpp.llama_context_p_ctypes], llama_lampe_counters
)
def llama_lampe_get_counters(ctx: llama_cpp.llama_context_p, /) -> llama_lampe_counters: ...


# llama.cpp prints through one process-wide callback; llama_cpp installs one
# that only filters by level, which still lets some loader messages through.
@llama_cpp.llama_log_callback
def _discard_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    pass


def set_llama_logging(enabled: bool) -> None:
    """Route llama.cpp's log to llama_cpp's logger (enabled) or discard it."""
    from llama_cpp._logger import llama_log_callback

    llama_cpp.llama_log_set(llama_log_callback if enabled else _discard_log, ctypes.c_void_p(0))
