"""ggml-cpu's AMX tile configuration survives the compiler (patches/0006), checked on any x86-64 machine.

GCC 12's ``_tile_loadconfig`` tells the compiler that ``ldtilecfg`` reads 8 bytes, so at -O2 and above the
stores of the config's rows and column widths were deleted: every AMX CPU (Sapphire Rapids and later)
faulted in the first quantized matrix product. The vendored ggml/src/ggml-cpu/amx/mmq.cpp is compiled here
as ggml compiles it for such a CPU (-O3, AVX-512 VNNI, -mamx-tile -mamx-int8; GCC compiles AMX code on any
x86-64 machine, only running it needs AMX), and the straight-line code before each ``ldtilecfg`` must store
something other than zeros into the config's colsb[] and rows[] bytes.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "vendor" / "llama.cpp"
MMQ = "ggml/src/ggml-cpu/amx/mmq.cpp"
CXX = shutil.which("g++") or shutil.which("c++")
AMX_FLAGS = ["-O3", "-DNDEBUG", "-std=gnu++17", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
             "-mavx512vnni", "-mfma", "-mf16c", "-mamx-tile", "-mamx-int8"]

# tile_config_t: palette_id, start_row, 14 reserved bytes, uint16 colsb[16], uint8 rows[16]
COLSB, ROWS = (16, 48), (48, 64)

pytestmark = [
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="AMX is x86-64 only"),
    pytest.mark.skipif(CXX is None, reason="no C++ compiler"),
]

_MEM = re.compile(r"(-?\d*)\((%\w+)\)$")
_SIZE = {"b": 1, "w": 2, "l": 4, "q": 8}
_VREG = {"x": 16, "y": 32, "z": 64}


def assemble(source: str) -> str:
    inc = VENDOR / "ggml"
    cmd = [CXX, *AMX_FLAGS, f"-I{inc / 'include'}", f"-I{inc / 'src'}", f"-I{inc / 'src/ggml-cpu'}",
           f"-iquote{inc / 'src/ggml-cpu/amx'}", "-x", "c++", "-S", "-o", "-", "-"]
    return subprocess.run(cmd, input=source, capture_output=True, text=True, check=True).stdout


def operand(text: str) -> Optional[tuple]:
    m = _MEM.match(text.strip())
    return (int(m.group(1) or 0), m.group(2)) if m else None


def store(ins: str, args: List[str]) -> Optional[tuple]:
    """(offset, base, size, source) of a store to memory, else None."""
    if len(args) != 2 or ins.startswith(("cmp", "test", "lea")):
        return None
    dst = operand(args[1])
    if dst is None:
        return None
    src = args[0].strip()
    m = re.match(r"%([xyz])mm\d+$", src)
    size = _VREG[m.group(1)] if m else _SIZE.get(ins[-1], 8)
    return dst[0], dst[1], size, src


def config_stores_before_ldtilecfg(asm: str) -> List[dict]:
    """For each ldtilecfg: whether the straight-line code before it writes non-zero colsb[] and rows[] bytes."""
    lines = [line.split("#")[0].strip() for line in asm.splitlines()]
    found = []
    for i, line in enumerate(lines):
        if not line.startswith("ldtilecfg"):
            continue
        off, base = operand(line.split(None, 1)[1])  # type: ignore[misc]
        zeroed, hits = set(), {"colsb": False, "rows": False}
        block = []
        for prev in reversed(lines[:i]):
            if prev.endswith(":") or prev.startswith(("j", "call", "ret")):
                break
            block.append(prev)
        for prev in reversed(block):  # in program order
            ins, _, rest = prev.replace("\t", " ").partition(" ")
            args = [a for a in re.split(r",\s*(?![^()]*\))", rest.strip()) if a]
            dest = args[-1].strip().replace("%y", "%x").replace("%z", "%x") if args else ""
            if re.match(r"v?pxor[dq]?$|xor[lq]$", ins) and len(set(a.strip() for a in args)) == 1:
                zeroed.add(dest)
            else:
                zeroed.discard(dest)  # the register now holds something else
            st = store(ins, args)
            if st is None or st[1] != base:
                continue
            s_off, _, size, src = st
            reg = src.replace("%y", "%x").replace("%z", "%x")
            if src in ("$0",) or reg in zeroed:
                continue
            for name, (a, b) in (("colsb", COLSB), ("rows", ROWS)):
                if s_off < off + b and off + a < s_off + size:
                    hits[name] = True
        found.append(hits)
    return found


def test_the_tile_config_reaches_ldtilecfg() -> None:
    found = config_stores_before_ldtilecfg(assemble((VENDOR / MMQ).read_text()))
    assert found, "no ldtilecfg in the AMX build of mmq.cpp"
    assert all(h["colsb"] and h["rows"] for h in found), found


def test_the_check_sees_upstreams_bug() -> None:
    """Upstream's mmq.cpp through the same check: the stores are gone (so the check above can fail)."""
    upstream = subprocess.run(["git", "show", f"upstream:{MMQ}"], cwd=VENDOR, capture_output=True, text=True,
                              check=True).stdout
    found = config_stores_before_ldtilecfg(assemble(upstream))
    assert found
    if all(h["colsb"] and h["rows"] for h in found):
        pytest.skip(f"{CXX} keeps upstream's stores: its <amxtileintrin.h> reads the whole config")
    assert not any(h["rows"] for h in found)
