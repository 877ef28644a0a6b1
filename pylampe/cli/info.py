"""``pylampe info``: the machine, the build and the devices, for a bug report."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..system import report


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "info", help="print the CPU, the build and the devices (for a bug report)",
        description="Print what a bug report needs: the CPU and its features, the features llama.cpp was "
        "built for, the backends and devices found, whether AMX is used, and which LaMPE kernel each "
        "device takes.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    r = report()
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"pylampe {r['pylampe']}, llama.cpp {r['llama_cpp_commit']}")
    print(f"patches: {', '.join(r['patches']) or 'none'}")
    c = r["cpu"]
    print(f"cpu: {c['machine']}, {c['model']}; flags: {' '.join(c['flags']) or 'none of note'}")
    print(f"built for: {' '.join(r['built_for'])}")
    print(f"backends built: {', '.join(r['backends_built']) or 'unknown'}")
    print(f"amx: {r['amx']}")
    for d in r["devices"]:
        gib = d["memory_total"] / 2**30
        extra = f"; weight buffers: {', '.join(d['extra_buffers'])}" if d["extra_buffers"] else ""
        print(f"device {d['name']} ({d['kind']}, {d['description']}, {gib:.1f} GiB{extra})")
        print(f"  LaMPE: {d['lampe']}")
    return 0
