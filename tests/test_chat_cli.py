"""``pylampe chat`` through a pipe: one question per line, answers on stdout, stats on stderr."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import List

import pytest

from server_process import document, pylampe_command
from test_cli import assert_one_error

STATS = re.compile(r"stats: turn (\d+): prompt (\d+) tokens \((\d+) reused, (\d+) evaluated\), TTFT ")


def chat(*args: str, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([pylampe_command(), "chat", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chat") / "doc.txt"
    path.write_text(document(150, seed=12))
    return path


def turns(stderr: str) -> List[tuple]:
    return [tuple(int(g) for g in m.groups()) for m in STATS.finditer(stderr)]


def test_each_turn_evaluates_only_its_new_tokens(tiny_llama_f32: Path, doc: Path) -> None:
    run = chat("-m", str(tiny_llama_f32), "-f", str(doc), "-n", "6", "--stats",
               stdin="what is the key\n\n/stats\nand what is the number\n/exit\nnot asked\n")
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 2  # two answers; nothing after /exit
    read = re.search(r"stats: document: (\d+) tokens read", run.stderr)
    assert read and int(read.group(1)) > 64 * 2  # beyond T: the LaMPE case
    (t1, p1, r1, e1), (_, _, _, _), (t2, p2, r2, e2) = turns(run.stderr)  # /stats repeats turn 1
    assert (t1, t2) == (1, 2)
    assert r1 == int(read.group(1)) and e1 == p1 - r1 < 15  # the question only
    assert r2 > p1 and e2 == p2 - r2 < 20  # turn 1 came from the cache
    assert re.search(r"lampe: T=64 L=\d+ M=\d+ W=8", run.stderr)
    assert re.search(r"ubatches: lampe=[1-9]\d* exact=\d+ exact_beyond_T=0$", run.stderr, re.M)


def test_reset_keeps_the_document(tiny_llama_f32: Path, doc: Path) -> None:
    questions = "what is the key\n/reset\nwhat is the key\n"
    run = chat("-m", str(tiny_llama_f32), "-f", str(doc), "-n", "5", "--stats", stdin=questions)
    assert run.returncode == 0, run.stderr
    answers = run.stdout.splitlines()
    assert len(answers) == 2 and answers[0] == answers[1]  # the same first turn again
    (_, p1, r1, _), (_, p2, r2, e2) = turns(run.stderr)
    assert p1 == p2 and r2 >= r1 and e2 < 15


def test_no_document(tiny_llama_f32: Path) -> None:
    run = chat("-m", str(tiny_llama_f32), "-n", "3", stdin="hello world\n")
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 1 and run.stderr == ""


def test_context_full_is_an_error_not_a_cut(tiny_llama_f32: Path, doc: Path) -> None:
    run = chat("-m", str(tiny_llama_f32), "-f", str(doc), "-n", "40", "-c", "256",
               stdin="what is the key\n" * 6)
    assert_one_error(run, 1, r"does not fit the context of 256 tokens: /reset")
    assert len(run.stdout.splitlines()) >= 1  # the turns that fitted were answered


def test_document_larger_than_the_context(tiny_llama_f32: Path, doc: Path) -> None:
    run = chat("-m", str(tiny_llama_f32), "-f", str(doc), "-c", "128", stdin="hi\n")
    assert_one_error(run, 1, r"the document \(\d+ tokens\) plus 512 tokens .* context of 128 tokens")


def test_missing_document(tiny_llama_f32: Path, tmp_path: Path) -> None:
    run = chat("-m", str(tiny_llama_f32), "-f", str(tmp_path / "nope.txt"), stdin="hi\n")
    assert_one_error(run, 1, "cannot read .*nope.txt")


def test_help_lists_the_flags() -> None:
    run = subprocess.run([pylampe_command(), "chat", "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    for flag in ("-f", "--system", "-n", "--temperature", "-c", "-t", "--flash-attn", "--cache-type-k",
                 "--no-lampe", "--method", "--lampe-window", "--lampe-within-window", "--stats", "/reset"):
        assert flag in run.stdout, flag
