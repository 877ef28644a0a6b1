"""``pylampe eval``: a run end to end, resume, and the error contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

from test_cli import assert_one_error, pylampe

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_passkey_cli(tiny_llama_f32: Path, tmp_path: Path) -> None:
    out = tmp_path / "pk.jsonl"
    args = ["eval", "passkey", "-m", str(tiny_llama_f32), "--length", "4T", "--depth", "0.5",
            "--method", "none,self-extend", "--method", "lampe", "-o", str(out), "--progress"]
    run = pylampe(*args)
    assert run.returncode == 0, run.stderr
    assert [line.split()[0] for line in run.stdout.splitlines()[2:]] == ["none", "self-extend", "lampe"]
    assert "/" in run.stderr and "tokens" in run.stderr  # the bar: done/total tokens
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["method"] for r in records] == ["none", "self-extend", "lampe"]
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    again = pylampe(*args[:-1], "--no-progress")
    assert again.returncode == 0 and again.stdout == run.stdout and again.stderr == ""
    assert out.read_text().count("\n") == 3  # nothing re-evaluated
    by_depth = pylampe(*args[:-1], "--by-depth").stdout.splitlines()
    assert by_depth[0].split() == ["method", "length", "depth", "prompts", "accuracy", "logprob", "min_margin"]
    assert [line.split()[2] for line in by_depth[2:]] == ["0.5"] * 3


def test_ppl_cli(tiny_llama_f32: Path, tmp_path: Path) -> None:
    text = tmp_path / "doc.txt"
    text.write_text("the word of a user is what we said there. " * 40)
    plot = tmp_path / "fig.png"
    run = pylampe("eval", "ppl", "-m", str(tiny_llama_f32), "--haystack", str(text), "--length", "32,2T",
                  "--method", "ntk", "-o", str(tmp_path / "ppl.jsonl"), "--plot", str(plot))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].split()[:3] == ["method", "length", "ppl"]
    assert len((tmp_path / "ppl.jsonl").read_text().splitlines()) == 2
    assert plot.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("args, pattern", [
    (["eval"], "required: EVAL"),
    (["eval", "passkey", "--length", "0T"], r"--length: expected tokens"),
    (["eval", "passkey", "--length", "abc"], r"--length: expected tokens"),
    (["eval", "passkey", "--depth", "1.5"], r"--depth: must be in \[0.0, 1.0\]"),
    (["eval", "passkey", "--trials", "0"], r"--trials: must be >= 1"),
    (["eval", "ppl"], r"required: --haystack"),
    (["eval", "passkey", "--method", "rope"], r"--method: unknown method 'rope'"),
    (["eval", "passkey", "--method", "ntk:alpha=2"], r"--method: bad parameter 'alpha=2'"),
    (["eval", "passkey", "--method", "lampe:window=99"], r"--method lampe:window=99: .*below the trained"),
    (["eval", "passkey", "--bogus"], r"unrecognized arguments: --bogus"),
])
def test_usage_errors(tiny_llama_f32: Path, tmp_path: Path, args: List[str], pattern: str) -> None:
    run = pylampe(*args, *(["-m", str(tiny_llama_f32), "-o", str(tmp_path / "x.jsonl")] if len(args) > 1 else []))
    assert_one_error(run, 2, pattern)
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("args, pattern", [
    (["passkey", "--haystack", "{tmp}/missing.txt"], r"cannot read haystack .*missing.txt"),
    (["ppl", "--haystack", "{tmp}/missing.jsonl"], r"cannot read haystack .*missing.jsonl"),
    (["passkey", "--length", "10"], r"needs more than 10 tokens"),
])
def test_runtime_errors(tiny_llama_f32: Path, tmp_path: Path, args: List[str], pattern: str) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    run = pylampe("eval", *args, "-m", str(tiny_llama_f32), "--method", "none", "-o", str(tmp_path / "x.jsonl"))
    assert_one_error(run, 1, pattern)


def test_missing_model(tmp_path: Path) -> None:
    assert_one_error(pylampe("eval", "passkey", "-m", str(tmp_path / "no.gguf")), 1, "model file not found")


def test_lampe_on_model_without_rope(tiny_gpt2: Path, tmp_path: Path) -> None:
    run = pylampe("eval", "passkey", "-m", str(tiny_gpt2), "--method", "lampe", "--length", "4T",
                  "-o", str(tmp_path / "x.jsonl"), "--no-plot")
    assert_one_error(run, 1, "does not use RoPE.*leave out --method lampe")
