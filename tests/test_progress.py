"""The prefill bar: an interrupted prefill leaves no half line behind, a finished one no extra line."""

from __future__ import annotations

import io

from pylampe.cli.progress import PrefillProgress


def test_end_closes_the_line_of_an_interrupted_bar_once() -> None:
    out = io.StringIO()
    bar = PrefillProgress(True, stream=out)
    bar.start(100)
    bar.advance(40)
    assert not out.getvalue().endswith("\n")
    bar.end()
    assert out.getvalue().endswith(" \n")
    bar.end()  # the next turn's, or the command's last, end() adds nothing
    assert out.getvalue().count("\n") == 1


def test_end_after_a_finished_prefill_adds_nothing() -> None:
    out = io.StringIO()
    bar = PrefillProgress(True, stream=out)
    bar.start(10)
    bar.advance(10)
    text = out.getvalue()
    bar.end()
    assert out.getvalue() == text and text.count("\n") == 1
    assert bar.rate > 0  # the stats after a finished prefill keep its timing


def test_end_of_a_bar_not_drawn_writes_nothing() -> None:
    out = io.StringIO()
    for bar in (PrefillProgress(False, stream=out), PrefillProgress(True, stream=out, min_total=50)):
        bar.start(20)
        bar.advance(5)
        bar.end()
    assert out.getvalue() == ""
