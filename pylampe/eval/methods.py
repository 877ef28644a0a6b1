"""The methods by name, and specs like ``ntk``, ``self-extend:group=4:window=32``, ``lampe:window=8``."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Type

from ..config import LampeConfig
from .lampe_method import Lampe
from .method import Method
from .rope_scaling import NTK, Linear, Plain, YaRN
from .self_extend import SelfExtend

METHODS: Dict[str, Type[Method]] = {
    cls.name: cls for cls in (Plain, Linear, NTK, YaRN, SelfExtend, Lampe)
}


def _value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_method(spec: str) -> Method:
    """``NAME[:KEY=VALUE]...``; KEYs are the method's fields (LampeConfig's fields for lampe).

    Raises:
        ValueError: unknown name or key, or a malformed spec.
    """
    name, *pairs = spec.strip().split(":")
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} (choose from {', '.join(METHODS)})")
    cls = METHODS[name]
    allowed = [f.name for f in dataclasses.fields(LampeConfig if cls is Lampe else cls)]
    values: Dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or key not in allowed:
            raise ValueError(
                f"bad parameter {pair!r} for method {name} (KEY=VALUE, KEY one of {', '.join(allowed) or 'none'})"
            )
        values[key] = _value(text)
    if cls is Lampe:
        return Lampe(overrides=tuple(values.items()))
    return cls(**values)


def parse_methods(specs: List[str]) -> List[Method]:
    """Repeated and comma-separated specs, in order, duplicates dropped."""
    labels: Dict[str, Method] = {}
    for spec in specs:
        for part in spec.split(","):
            if part.strip():
                method = parse_method(part)
                labels.setdefault(method.label, method)
    if not labels:
        raise ValueError("no method given")
    return list(labels.values())
