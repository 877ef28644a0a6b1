"""Tables (text) and figures (PNG) of the records."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .records import Record


def _table(header: Sequence[str], rows: List[Sequence[Any]]) -> str:
    cells = [list(map(str, header))] + [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])


def _groups(records: List[Record], *fields: str) -> Dict[Tuple[Any, ...], List[Record]]:
    out: Dict[Tuple[Any, ...], List[Record]] = {}
    for r in records:
        out.setdefault(tuple(r[f] for f in fields), []).append(r)
    return out


def passkey_table(records: List[Record], by: Sequence[str] = ("method", "length")) -> str:
    """Per group of records (method and length; add "depth" for a row per needle depth): accuracy,
    mean answer log-probability, mean smallest margin."""
    rows = [
        tuple(f"{v:g}" if isinstance(v, float) else v for v in group)
        + (len(rs), float(np.mean([r["correct"] for r in rs])),
           float(np.mean([r["answer_logprob"] for r in rs])), float(np.mean([r["min_margin"] for r in rs])))
        for group, rs in _groups(records, *by).items()
    ]
    return _table((*by, "prompts", "accuracy", "logprob", "min_margin"), rows)


def ppl_table(records: List[Record]) -> str:
    """Per method and length: perplexity overall and per bucket of T positions."""
    n_buckets = max((len(r["buckets"]) for r in records), default=0)
    header = ["method", "length", "ppl"] + [
        # the longest record's buckets: the last one may be cut short by a shorter record's length
        f"{b['start']}-{b['end']}"
        for b in max((r["buckets"] for r in records), key=lambda bs: (len(bs), bs[-1]["end"]), default=[])
    ]
    rows = [[r["method"], r["length"], r["ppl"]] + [b["ppl"] for b in r["buckets"]]
            + [""] * (n_buckets - len(r["buckets"])) for r in records]
    return _table(header, rows)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def passkey_heatmap(records: List[Record], path: Path) -> None:
    """Accuracy by length (x) and depth (y), one panel per method."""
    plt = _pyplot()
    methods = list(dict.fromkeys(r["method"] for r in records))
    lengths = sorted({r["length"] for r in records})
    depths = sorted({r["depth"] for r in records})
    cells = _groups(records, "method", "depth", "length")
    fig, axes = plt.subplots(1, len(methods), figsize=(1.2 + 0.8 * len(lengths) * len(methods), 0.6 * len(depths) + 1.6),
                             squeeze=False)
    for ax, method in zip(axes[0], methods):
        acc = np.array([[np.mean([r["correct"] for r in cells[(method, d, n)]]) if (method, d, n) in cells else np.nan
                         for n in lengths] for d in depths])
        ax.imshow(acc, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax.set_title(method)
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths], rotation=45)
        ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
        ax.set_xlabel("length (tokens)")
        for (i, j), v in np.ndenumerate(acc):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    axes[0][0].set_ylabel("needle depth")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def ppl_plot(records: List[Record], path: Path) -> None:
    """Perplexity against context length, one line per method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for (method,), rs in _groups(records, "method").items():
        rs = sorted(rs, key=lambda r: r["length"])
        ax.plot([r["length"] for r in rs], [r["ppl"] for r in rs], marker="o", label=method)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
