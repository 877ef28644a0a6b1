"""The bench records as a Markdown table: each configuration's median over its repeats with the spread, and
each method's speed as a ratio to the best plain attention (flash attention on or off, whichever is faster
for that metric) on the same model, length and cache."""

from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional, Tuple

_METRICS = ("prefill_tok_s", "decode_tok_s")


def _setting(r: Dict[str, Any]) -> Tuple[Any, ...]:
    """What a method is compared within: plain attention on the same model, length and cache."""
    return r["model"], r["tokens"], r.get("type_k", "f16"), r.get("type_v", "f16")


def _config(r: Dict[str, Any]) -> Tuple[Any, ...]:
    """One configuration, measured once per repeat."""
    return (*_setting(r), r["method"], r.get("flash_attn", True))


def _median(rows: List[Dict[str, Any]], key: str) -> Optional[float]:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def _speed(rows: List[Dict[str, Any]], key: str) -> str:
    """The median, and the range over the repeats when there are several."""
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return "-"
    text = f"{statistics.median(values):.1f}"
    return text + (f" ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else "")


def table(records: List[Dict[str, Any]]) -> str:
    groups: Dict[Tuple[Any, ...], List[Dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(_config(r), []).append(r)
    # the best plain configuration of each setting, per metric, and its compute buffer (FA on if measured)
    best: Dict[Tuple[Any, ...], Dict[str, float]] = {}
    for rows in groups.values():
        if rows[0]["method"] != "none":
            continue
        b = best.setdefault(_setting(rows[0]), {})
        for key in _METRICS:
            m = _median(rows, key)
            if m is not None:
                b[key] = max(b.get(key, 0.0), m)
        if rows[0].get("flash_attn", True) or "compute_mib" not in b:
            b["compute_mib"] = _median(rows, "compute_mib") or 0.0
    lines = [
        "| model | tokens | K/V | method | prefill tok/s | decode tok/s | prefill, decode vs best plain "
        "| KV MiB | compute MiB | compute vs plain FA | peak RSS MiB | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rows in groups.values():
        r = rows[0]
        base = best.get(_setting(r), {})
        ratios = [(_median(rows, k) or 0.0) / base[k] if base.get(k) else None for k in _METRICS]
        speed = ", ".join(f"{x:.2f}x" for x in ratios) if None not in ratios and _median(rows, _METRICS[0]) else ""
        memory = (f"{_median(rows, 'compute_mib') / base['compute_mib']:.2f}x"
                  if base.get("compute_mib") and r["method"] != "none" else "")
        cache = f"{r.get('type_k', 'f16')}/{r.get('type_v', 'f16')}" + ("" if r.get("flash_attn", True) else ", no FA")
        lines.append(
            f"| {r['model']} | {r['tokens']} | {cache} | {r['method']} | {_speed(rows, 'prefill_tok_s')} "
            f"| {_speed(rows, 'decode_tok_s')} | {speed} | {_median(rows, 'kv_mib'):.1f} "
            f"| {_median(rows, 'compute_mib'):.1f} | {memory} | {_median(rows, 'peak_rss_mib'):.0f} | {len(rows)} |"
        )
    return "\n".join(lines)
