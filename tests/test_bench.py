"""``pylampe bench``: a run end to end on a tiny model, resume, memory accounting, and the error contract."""

from __future__ import annotations

import json
from pathlib import Path

from pylampe.bench.measure import _buffers
from pylampe.bench.table import table
from test_cli import assert_one_error, pylampe


def test_bench_cli(tiny_llama_f32: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.jsonl"
    args = ["bench", "-m", str(tiny_llama_f32), "--length", "2T", "--method", "none,lampe", "--n-gen", "4",
            "-t", "2", "-o", str(out)]
    run = pylampe(*args)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # plain attention both ways (flash attention on and off), LaMPE as --flash-attn says (on)
    assert [(r["method"], r["tokens"], r["flash_attn"]) for r in records] == [
        ("none", 128, True), ("none", 128, False), ("lampe", 128, True)]
    for r in records:
        assert r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0
        assert r["kv_mib"] > 0 and r["compute_mib"] > 0 and r["peak_rss_mib"] > 0
    assert records[0]["kv_mib"] == records[2]["kv_mib"]  # LaMPE keeps the KV cache of plain attention
    assert records[0]["lampe_ubatches"] is None
    ub = records[2]["lampe_ubatches"]
    assert ub["lampe"] > 4 and ub["exact_beyond_T"] == 0  # the prompt and every decoded token beyond T
    rows = run.stdout.splitlines()[2:]
    assert rows[1].split("|")[3].strip() == "f16/f16, no FA" and "x, " in rows[2]  # the ratio to best plain
    again = pylampe(*args)
    assert again.returncode == 0 and again.stdout == run.stdout
    assert len(out.read_text().splitlines()) == 3  # nothing measured again


def test_bench_repeats_take_turns(tiny_llama_f32: Path, tmp_path: Path) -> None:
    """With --repeat the configurations alternate run after run, so that a slow minute reaches all of them."""
    out = tmp_path / "bench.jsonl"
    run = pylampe("bench", "-m", str(tiny_llama_f32), "--length", "2T", "--method", "none,lampe", "--n-gen", "2",
                  "--repeat", "2", "-t", "2", "-o", str(out))
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["method"], r["flash_attn"], r["run"]) for r in records] == [
        ("none", True, 0), ("none", False, 0), ("lampe", True, 0),
        ("none", True, 1), ("none", False, 1), ("lampe", True, 1)]
    assert run.stdout.splitlines()[2].split("|")[-2].strip() == "2"  # one row per configuration, 2 runs each


def test_bench_memory_only(tiny_llama_f32: Path, tmp_path: Path) -> None:
    """Buffers of a context too long to evaluate: sized without a prefill, LaMPE's compute against plain's."""
    out = tmp_path / "bench.jsonl"
    run = pylampe("bench", "-m", str(tiny_llama_f32), "--length", "4T", "--method", "none,lampe", "--memory-only",
                  "--flash-attn", "off", "--cache-type-k", "q8_0", "-t", "2", "-o", str(out))
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for r in records:
        assert r["prefill_tok_s"] is None and r["decode_tok_s"] is None and r["memory_only"]
        assert (r["type_k"], r["type_v"], r["flash_attn"]) == ("q8_0", "f16", False)
        assert r["compute_mib"] > 0
    lampe_row = run.stdout.splitlines()[3].split("|")
    assert lampe_row[3].strip() == "q8_0/f16, no FA" and lampe_row[5].strip() == "-"
    assert lampe_row[10].strip().endswith("x")  # compute buffer against plain attention's


def test_bench_refuses_self_extend(tiny_llama_f32: Path, tmp_path: Path) -> None:
    run = pylampe("bench", "-m", str(tiny_llama_f32), "--method", "self-extend", "-o", str(tmp_path / "b.jsonl"))
    assert_one_error(run, 2, "self-extend")


def test_buffers_from_the_log() -> None:
    log = ["llama_kv_cache:        CPU KV buffer size =   192.00 MiB\n",
           "sched_reserve:        CPU compute buffer size =    98.25 MiB\n",
           "sched_reserve:        CPU compute buffer size =   100.50 MiB\n",  # reserved again: the last counts
           "sched_reserve:      CUDA0 compute buffer size =    10.00 MiB\n"]
    assert _buffers(log) == {"KV": 192.0, "compute": 110.5}


def test_table_ratios() -> None:
    base = {"model": "m", "tokens": 8, "method": "none", "prefill_tok_s": 100.0, "decode_tok_s": 10.0,
            "kv_mib": 1.0, "compute_mib": 2.0, "peak_rss_mib": 3.0}
    other = dict(base, method="lampe", prefill_tok_s=90.0, decode_tok_s=5.0, compute_mib=3.0)
    assert "| 0.90x, 0.50x | 1.0 | 3.0 | 1.50x | 3 | 1 |" in table([base, other])
    q8 = dict(other, type_k="q8_0")  # another cache: no plain row to compare with
    assert table([base, q8]).splitlines()[-1].count("x") == 0


def test_table_compares_with_the_faster_plain_per_metric_and_gives_the_spread() -> None:
    """Plain with flash attention prefills faster, without it decodes faster: each ratio takes the better."""
    fa_on = {"model": "m", "tokens": 8, "method": "none", "flash_attn": True, "prefill_tok_s": 100.0,
             "decode_tok_s": 10.0, "kv_mib": 1.0, "compute_mib": 2.0, "peak_rss_mib": 3.0}
    fa_off = dict(fa_on, flash_attn=False, prefill_tok_s=80.0, decode_tok_s=20.0, compute_mib=8.0)
    runs = [dict(fa_on, method="lampe", prefill_tok_s=p, decode_tok_s=d) for p, d in ((90, 18), (110, 22), (100, 20))]
    lampe = table([fa_on, fa_off, *runs]).splitlines()[-1]
    assert "| 100.0 (90.0-110.0) | 20.0 (18.0-22.0) | 1.00x, 1.00x |" in lampe  # medians over 3 runs, vs 100 and 20
    assert lampe.endswith("| 1.00x | 3 | 3 |")  # compute buffer against plain with flash attention
