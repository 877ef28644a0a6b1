"""The bench records as a Markdown table, each method's speed also as a ratio to plain attention."""

from __future__ import annotations

from typing import Any, Dict, List


def _setting(r: Dict[str, Any]) -> tuple:
    """What a method is compared within: plain attention on the same model, length and cache."""
    return r["model"], r["tokens"], r.get("flash_attn"), r.get("type_k", "f16"), r.get("type_v", "f16")


def table(records: List[Dict[str, Any]]) -> str:
    plain = {_setting(r): r for r in records if r["method"] == "none"}
    lines = [
        "| model | tokens | K/V | method | prefill tok/s | decode tok/s | prefill, decode vs plain "
        "| KV MiB | compute MiB | compute vs plain | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        base = plain.get(_setting(r))
        speed = memory = ""
        if base is not None and r is not base:
            if r["prefill_tok_s"] is not None and base["prefill_tok_s"] is not None:
                speed = (f"{r['prefill_tok_s'] / base['prefill_tok_s']:.2f}x, "
                         f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}x")
            memory = f"{r['compute_mib'] / base['compute_mib']:.2f}x"
        cache = f"{r.get('type_k', 'f16')}/{r.get('type_v', 'f16')}" + ("" if r.get("flash_attn", True) else ", no FA")
        lines.append(
            f"| {r['model']} | {r['tokens']} | {cache} | {r['method']} | {_num(r['prefill_tok_s'])} "
            f"| {_num(r['decode_tok_s'])} | {speed} | {r['kv_mib']:.1f} | {r['compute_mib']:.1f} | {memory} "
            f"| {r['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def _num(x: Any) -> str:
    return "-" if x is None else str(x)
