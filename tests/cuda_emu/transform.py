#!/usr/bin/env python3
"""Turn ggml-cuda/fattn-lampe.cu into host C++ for cuda_emu.h: shared memory as statics, launches as calls.

    python transform.py fattn-lampe.cu out.cpp
"""
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()
for inc in ('#include "common.cuh"', '#include "convert.cuh"', '#include "fattn-lampe.cuh"', '#include <mma.h>'):
    s = s.replace(inc + "\n", "")
s = s.replace("extern __shared__", "extern")
s = s.replace("__shared__", "static")
# kernel<<<grid, block, smem, stream>>>(args);  ->  emu_launch(kernel, grid, block, smem, stream, args);
s, n = re.subn(r"(\b[\w:]+(?:<[^<>;]*>)?)<<<([^;]*?)>>>\(([^;]*)\);", r"emu_launch(\1, \2, \3);", s)
assert n >= 4, f"expected the kernel launches, found {n}"
assert "<<<" not in s
header = ('#include "cuda_emu.h"\n'
          "bool ggml_cuda_flash_attn_ext_lampe_supported(int device, const ggml_tensor * op);\n"
          "void ggml_cuda_flash_attn_ext_lampe(ggml_backend_cuda_context & ctx, ggml_tensor * dst);\n"
          f'#line 1 "{src}"\n')
open(dst, "w").write(header + s)
