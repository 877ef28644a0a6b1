"""pylampe: training-free long context for local GGUF models (LaMPE in llama.cpp)."""

from ._native import LIB_DIR, loaded_library_path  # first: points llama_cpp at our library

from importlib.metadata import PackageNotFoundError, version as _version

from .config import PRESETS, LampeConfig
from .llama import LampeUnsupportedError, Llama

try:
    __version__ = _version("pylampe")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

__all__ = [
    "LIB_DIR",
    "PRESETS",
    "LampeConfig",
    "LampeUnsupportedError",
    "Llama",
    "__version__",
    "loaded_library_path",
]
