"""The bench records as a Markdown table, each method's speed also as a ratio to plain attention."""

from __future__ import annotations

from typing import Any, Dict, List


def table(records: List[Dict[str, Any]]) -> str:
    plain = {(r["model"], r["tokens"]): r for r in records if r["method"] == "none"}
    lines = [
        "| model | tokens | method | prefill tok/s | decode tok/s | prefill, decode vs plain "
        "| KV MiB | compute MiB | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        base = plain.get((r["model"], r["tokens"]))
        ratio = ""
        if base is not None and r is not base:
            ratio = (f"{r['prefill_tok_s'] / base['prefill_tok_s']:.2f}x, "
                     f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}x")
        lines.append(
            f"| {r['model']} | {r['tokens']} | {r['method']} | {r['prefill_tok_s']} | {r['decode_tok_s']} "
            f"| {ratio} | {r['kv_mib']:.1f} | {r['compute_mib']:.1f} | {r['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)
