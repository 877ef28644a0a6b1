// The scheduler of cuda_emu.h: the fibers of one block at a time, and the rendezvous they wait at.

#include "cuda_emu.h"

emu_state g_emu;

size_t g_emu_max_smem   = 0;
// the smallest per-block limit of the archs the kernels target (sm_86 and sm_89: 99 KB with opt-in)
size_t g_emu_smem_limit = 99*1024;
int    g_emu_occupancy  = 2;
int    g_emu_nsm        = 4;

// the kernels' dynamic shared memory (extern __shared__ arrays, one per kernel)
static constexpr size_t EMU_SMEM = 256*1024;
alignas(128) char  lampe_tile_smem[EMU_SMEM];
alignas(128) float lampe_kmid_scr[EMU_SMEM/sizeof(float)];

[[noreturn]] void emu_fail(const char * what) {
    fprintf(stderr, "emu: %s (block %u,%u,%u thread %u)\n", what, g_emu.block_idx.x, g_emu.block_idx.y, g_emu.block_idx.z,
            g_emu.cur ? g_emu.cur->tid : 0u);
    abort();
}

const ggml_cuda_device_info & ggml_cuda_info() {
    static ggml_cuda_device_info info;
    info.devices[0].cc    = 900;
    info.devices[0].nsm   = g_emu_nsm;
    info.devices[0].smpb  = 48*1024;
    info.devices[0].smpbo = g_emu_smem_limit;
    return info;
}

void * ggml_cuda_pool::alloc(size_t n) {
    void * p = aligned_alloc(256, (n + 255)/256*256);
    memset(p, 0xFF, n); // NaN: a result nothing wrote shows
    return p;
}

void ggml_cuda_pool::free(void * p) {
    ::free(p);
}

void nvcuda::wmma::emu_check_ptr(const void * p, unsigned ldm, size_t elsize) {
    if ((uintptr_t) p % 32 != 0) {
        emu_fail("wmma pointer not 256-bit aligned");
    }
    if ((ldm*elsize) % 16 != 0) {
        emu_fail("wmma ldm not a multiple of 16 bytes");
    }
}

static void emu_trampoline() {
    g_emu.body();
    g_emu.cur->done = true;
}

static const char * op_name(emu_op op) {
    switch (op) {
        case EMU_NONE:           return "none";
        case EMU_SYNCTHREADS:    return "__syncthreads";
        case EMU_SYNCTHREADS_OR: return "__syncthreads_or";
        case EMU_SYNCWARP:       return "__syncwarp";
        case EMU_SHFL_XOR:       return "__shfl_xor_sync";
        case EMU_ANY:            return "__any_sync";
        case EMU_WMMA:           return "wmma::*_sync";
    }
    return "?";
}

static bool is_block_op(emu_op op) { return op == EMU_SYNCTHREADS || op == EMU_SYNCTHREADS_OR; }

void emu_run_block(size_t smem) {
    (void) smem;
    memset(lampe_tile_smem, 0xFF, sizeof(lampe_tile_smem));
    memset(lampe_kmid_scr,  0xFF, sizeof(lampe_kmid_scr));

    const unsigned n = g_emu.block_dim.x;
    auto & th = g_emu.threads;
    if (th.size() < n) {
        th.resize(n);
    }
    for (unsigned i = 0; i < n; ++i) {
        emu_thread & t = th[i];
        if (t.stack.empty()) {
            t.stack.resize(256*1024);
        }
        t.tid = i;
        t.done = false;
        t.waiting = false;
        t.op = EMU_NONE;
        getcontext(&t.ctx);
        t.ctx.uc_stack.ss_sp   = t.stack.data();
        t.ctx.uc_stack.ss_size = t.stack.size();
        t.ctx.uc_link = &g_emu.sched;
        makecontext(&t.ctx, emu_trampoline, 0);
    }

    const unsigned n_warps = (n + WARP_SIZE - 1)/WARP_SIZE;
    for (;;) {
        bool progress = false;
        for (unsigned i = 0; i < n; ++i) {
            emu_thread & t = th[i];
            if (t.done || t.waiting) {
                continue;
            }
            g_emu.cur = &t;
            swapcontext(&g_emu.sched, &t.ctx);
            g_emu.cur = nullptr;
            progress = true;
        }

        // warp rendezvous: every lane of the warp waits at the same warp-level operation
        for (unsigned w = 0; w < n_warps; ++w) {
            const unsigned l0 = w*WARP_SIZE;
            const unsigned l1 = std::min(n, l0 + WARP_SIZE);
            bool all = true;
            bool any = false;
            for (unsigned i = l0; i < l1; ++i) {
                const emu_thread & t = th[i];
                if (t.done || !t.waiting || is_block_op(t.op)) {
                    all = false;
                } else {
                    any = true;
                }
            }
            if (!any || !all) {
                continue;
            }
            const emu_thread & t0 = th[l0];
            for (unsigned i = l0; i < l1; ++i) {
                const emu_thread & t = th[i];
                if (t.op != t0.op || t.mask != t0.mask || t.arg != t0.arg) {
                    fprintf(stderr, "emu: warp %u: lane %u at %s(mask %x, %d), lane 0 at %s(mask %x, %d)\n", w, i - l0,
                            op_name(t.op), t.mask, t.arg, op_name(t0.op), t0.mask, t0.arg);
                    emu_fail("divergent warp-level operation");
                }
            }
            if (l1 - l0 != WARP_SIZE || t0.mask != 0xFFFFFFFFu) {
                emu_fail("warp-level operation on a partial warp or mask");
            }
            if (t0.op == EMU_SHFL_XOR) {
                float v[WARP_SIZE];
                for (unsigned i = 0; i < WARP_SIZE; ++i) {
                    v[i] = th[l0 + i].fval;
                }
                for (unsigned i = 0; i < WARP_SIZE; ++i) {
                    th[l0 + i].fval = v[i ^ (unsigned) t0.arg];
                }
            } else if (t0.op == EMU_ANY) {
                int r = 0;
                for (unsigned i = l0; i < l1; ++i) {
                    r |= th[i].ival;
                }
                for (unsigned i = l0; i < l1; ++i) {
                    th[i].ival = r;
                }
            }
            for (unsigned i = l0; i < l1; ++i) {
                th[i].waiting = false;
            }
            progress = true;
        }

        // block rendezvous: every thread still running waits at __syncthreads(_or)
        {
            bool all = true;
            bool any = false;
            unsigned n_done = 0;
            for (unsigned i = 0; i < n; ++i) {
                const emu_thread & t = th[i];
                if (t.done) {
                    n_done++;
                    continue;
                }
                if (!t.waiting || !is_block_op(t.op)) {
                    all = false;
                } else {
                    any = true;
                }
            }
            if (any && all) {
                if (n_done > 0) {
                    emu_fail("__syncthreads after some threads exited");
                }
                const emu_op op = th[0].op;
                int r = 0;
                for (unsigned i = 0; i < n; ++i) {
                    if (th[i].op != op) {
                        emu_fail("__syncthreads and __syncthreads_or mixed");
                    }
                    r |= th[i].ival;
                }
                for (unsigned i = 0; i < n; ++i) {
                    if (op == EMU_SYNCTHREADS_OR) {
                        th[i].ival = r;
                    }
                    th[i].waiting = false;
                }
                progress = true;
            }
        }

        bool all_done = true;
        for (unsigned i = 0; i < n; ++i) {
            all_done = all_done && th[i].done;
        }
        if (all_done) {
            break;
        }
        if (!progress) {
            for (unsigned i = 0; i < n; ++i) {
                const emu_thread & t = th[i];
                fprintf(stderr, "emu: thread %u %s%s\n", i, t.done ? "done" : "waiting at ", t.done ? "" : op_name(t.op));
            }
            emu_fail("deadlock");
        }
    }
}
