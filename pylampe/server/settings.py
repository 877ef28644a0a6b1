"""llama-cpp-python's server settings with LaMPE's: the same fields, file format and flags,
plus ``lampe*`` and ``method`` per model, and defaults for long documents.

A config file (JSON, or YAML) is llama-cpp-python's: server fields at the top,
a list of ``models``; each model may add the fields below, e.g.

    {"port": 8000, "models": [
        {"model": "smol.gguf", "model_alias": "smol-lampe", "lampe_window": 1024},
        {"model": "smol.gguf", "model_alias": "smol-yarn", "method": "yarn"},
        {"model": "smol.gguf", "model_alias": "smol-plain", "lampe": false, "n_ctx": 8192}]}

llama-cpp-python's settings read unprefixed environment variables (``MODEL``,
``PORT``, ...); these take only ``PYLAMPE_``-prefixed ones, so that a stray
``MODEL`` in the environment changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from llama_cpp.server.settings import ModelSettings, ServerSettings

from ..cache_types import CACHE_TYPES
from ..config import PRESETS, LampeSetting, lampe_setting
from ..doc_cache import DEFAULT_MAX_BYTES
from ..eval.model_info import ModelInfo
from ..eval.methods import parse_method

# Default context with LaMPE or a --method baseline: four times the trained
# context (the range the README measures), at most this many tokens.
DEFAULT_CTX_FACTOR = 4
DEFAULT_CTX_CAP = 32768

# Large enough for a long book's PDF with its pictures; the text a model reads is far smaller.
DEFAULT_UPLOAD_LIMIT_MB = 100

_CONFIG = SettingsConfigDict(env_prefix="PYLAMPE_", protected_namespaces=())


class LampeModelSettings(ModelSettings):
    """One served model: llama-cpp-python's ModelSettings plus LaMPE's settings."""

    model_config = _CONFIG

    # llama-cpp-python's defaults that do not suit long documents.
    n_ctx: int = Field(
        default=0, ge=0,
        description=f"The context size; 0: {DEFAULT_CTX_FACTOR} x the trained context T with LaMPE "
        f"or a method (at most {DEFAULT_CTX_CAP}), T without (at most {DEFAULT_CTX_CAP}).",
    )
    flash_attn: bool = Field(
        default=True, description="Flash attention; with LaMPE it runs LaMPE's fused CPU kernel."
    )
    logits_all: bool = Field(
        default=False,
        description="Keep logits of every token (needed for logprobs; costs n_ctx x n_vocab x 4 bytes).",
    )
    verbose: bool = Field(default=False, description="Print llama.cpp's log.")
    type_k: Optional[int] = Field(default=None, description="K cache type: f16, q8_0, ... or a ggml type id.")
    type_v: Optional[int] = Field(default=None, description="V cache type: f16, q8_0, ... or a ggml type id.")

    # LaMPE
    lampe: bool = Field(default=True, description="LaMPE attention beyond the trained context; "
                        "false for upstream attention.")
    method: Optional[str] = Field(
        default=None, description="A baseline instead of LaMPE, sized for n_ctx: none, linear, ntk, "
        "yarn (NAME:KEY=VALUE overrides as in pylampe eval); it sets the rope_*/yarn_* fields.")
    lampe_preset: Optional[Literal[tuple(PRESETS)]] = Field(  # type: ignore[valid-type]
        default=None, description="The paper's parameters for a model family (default: derived from T).")
    lampe_window: Optional[int] = Field(default=None, ge=1, description="Local window W.")
    lampe_start: Optional[int] = Field(default=None, ge=0, description="Start (sink) span S.")
    lampe_mapping_length: Optional[int] = Field(
        default=None, ge=1, description="Fixed mapping length M instead of the sigmoid M(L).")
    lampe_sigmoid: Optional[Tuple[float, float, float]] = Field(
        default=None, description="M(L) = max(min, floor(C / (1 + exp(-(A*L + B))))) as [A, B, C].")
    lampe_attn_factor: Optional[float] = Field(
        default=None, gt=0, description="Attention factor s; logits scale by s^2.")
    lampe_within_window: Optional[Literal["exact", "lampe"]] = Field(
        default=None, description="Prompts that fit in T: exact upstream attention, or LaMPE too.")

    @field_validator("type_k", "type_v", mode="before")
    @classmethod
    def _cache_type_name(cls, value: Any) -> Any:
        if isinstance(value, str) and value in CACHE_TYPES:
            return CACHE_TYPES[value]
        return value

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value != "lampe":
            method = parse_method(value)  # ValueError names the problem
            if method.name == "self-extend":
                raise ValueError("self-extend evaluates prompts its own way and cannot be served")
        return value

    @property
    def alias(self) -> str:
        return self.model_alias or Path(self.model).name.removesuffix(".gguf")


class LampeServerSettings(ServerSettings):
    """llama-cpp-python's server settings; loopback and queued requests by default."""

    model_config = _CONFIG

    host: str = Field(default="127.0.0.1", description="Listen address.")
    port: int = Field(default=8000, ge=0, le=65535, description="Listen port.")
    interrupt_requests: bool = Field(
        default=False,
        description="Stop a streaming answer when another request arrives (llama-cpp-python's "
        "default); off, requests queue and all are answered.",
    )
    doc_cache: Optional[str] = Field(
        default=None, description="The document cache's directory (default: $XDG_CACHE_HOME/pylampe/documents).")
    doc_cache_size: int = Field(default=DEFAULT_MAX_BYTES, ge=0, description="The document cache's limit in bytes.")
    no_doc_cache: bool = Field(default=False, description="Read every document; keep none on disk.")
    no_webui: bool = Field(default=False, description="Serve no chat page at / (the API only).")
    upload_limit_mb: int = Field(
        default=DEFAULT_UPLOAD_LIMIT_MB, ge=1, description="The largest document the chat page may upload, in MiB.")


class LampeConfigFileSettings(LampeServerSettings):
    """The config file: server settings and a list of models."""

    models: List[LampeModelSettings] = Field(default=[], description="Model configs")


def default_n_ctx(n_ctx_train: int, extended: bool) -> int:
    """The context size when n_ctx is 0 (see LampeModelSettings.n_ctx)."""
    return min(DEFAULT_CTX_FACTOR * n_ctx_train if extended else n_ctx_train, DEFAULT_CTX_CAP)


def resolve(settings: LampeModelSettings, info: ModelInfo) -> Tuple[LampeModelSettings, LampeSetting]:
    """The settings to load with (n_ctx and a baseline's rope fields filled in) and pylampe.Llama's
    ``lampe=``: None for upstream attention, "auto" without lampe_* settings, else the configuration.

    Raises:
        ValueError: invalid LaMPE or method settings, naming the problem.
    """
    baseline = settings.method not in (None, "lampe")
    lampe_on = settings.lampe and not baseline
    n_ctx = settings.n_ctx or default_n_ctx(info.n_ctx_train, lampe_on or baseline)
    update: Dict[str, Any] = {"n_ctx": n_ctx}
    config: LampeSetting = None
    if baseline:
        llama_kwargs = parse_method(settings.method).setup(info, n_ctx).llama_kwargs  # type: ignore[arg-type]
        update.update({k: v for k, v in llama_kwargs.items() if k != "lampe"})
    elif lampe_on:
        config = lampe_setting(
            info.n_ctx_train, settings.lampe_preset,
            window=settings.lampe_window, start=settings.lampe_start,
            mapping_length=settings.lampe_mapping_length,
            sigmoid=settings.lampe_sigmoid, attn_factor=settings.lampe_attn_factor,
            within_window=settings.lampe_within_window,
        )
    return settings.model_copy(update=update), config
