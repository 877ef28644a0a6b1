"""Long-context evaluation: passkey retrieval and perplexity, LaMPE against the baselines."""

from .haystack import Haystack, load_haystack
from .lampe_method import Lampe
from .method import Method, Setup
from .methods import METHODS, parse_method, parse_methods
from .model_info import ModelInfo
from .passkey import passkey_prompt
from .passkey_eval import build_prompts, run_passkey
from .ppl_eval import run_ppl
from .records import Records
from .rope_scaling import NTK, Linear, Plain, YaRN
from .runtime import Runtime
from .self_extend import SelfExtend

__all__ = [
    "METHODS", "NTK", "Haystack", "Lampe", "Linear", "Method", "ModelInfo", "Plain", "Records",
    "Runtime", "SelfExtend", "Setup", "YaRN", "build_prompts", "load_haystack", "parse_method",
    "parse_methods", "passkey_prompt", "run_passkey", "run_ppl",
]
