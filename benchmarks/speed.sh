#!/usr/bin/env bash
# The README's speed table: plain attention, YaRN (the best baseline of `pylampe eval`) and LaMPE, prefill and
# decode tok/s with the KV/compute buffers and peak RSS, on the embedded SmolLM2-135M (Q4_1, T = 8192) and on a
# random-weight model of Llama-3.2-1B's transformer shape (2048 wide, 16 layers, 32 query / 8 KV heads of 64,
# FFN 8192; Q4_0; its T set to 2048 so that LaMPE is active at 4K, its vocabulary the tests' few hundred tokens).
#
#   benchmarks/speed.sh [LENGTHS_SMOLLM2] [LENGTHS_1B]      (default: "8192,16384" "4096")
#
# Run on an otherwise idle machine: every row is a separate process, one at a time, 2 threads.
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/speed
mkdir -p "$out"
model_1b=$out/random-llama-3.2-1b-shape-q4_0.gguf
if [ ! -f "$model_1b" ]; then
    .venv/bin/python - "$model_1b" <<'PY'
import sys
sys.path.insert(0, "tests")
from gguf_models import write_tiny_llama
write_tiny_llama(sys.argv[1], weight_type="Q4_0", n_ctx_train=2048, n_embd=2048, n_head=32, n_head_kv=8,
                 n_layer=16, n_ff=8192, rope_theta=500000.0)
PY
fi
.venv/bin/pylampe bench --length "${1:-8192,16384}" --method none,yarn,lampe -t 2 -o "$out/bench.jsonl"
.venv/bin/pylampe bench -m "$model_1b" --length "${2:-4096}" --method none,yarn,lampe -t 2 -o "$out/bench.jsonl"
