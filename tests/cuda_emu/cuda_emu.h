// A CPU emulation of the CUDA features that ggml-cuda/fattn-lampe.cu uses, to run its kernels without a GPU.
//
// Every CUDA thread of a block is a fiber (ucontext); blocks run one after another. __syncthreads, warp
// shuffles, votes and __syncwarp are rendezvous of the block's or the warp's fibers: the emulation checks that
// all threads that must take part arrive at the same kind of barrier (a divergent shuffle or barrier is reported,
// where a GPU would hang or read garbage). WMMA fragments hold the whole 16x16 tile in every lane, so
// load/mma/store compute exactly what the warp-wide operation does; their pointer and stride requirements are
// checked. Dynamic shared memory and pool allocations are filled with NaN before use, so reading what nothing
// wrote shows up in the results. Device memory is host memory.
//
// Not emulated: timing, the memory model beyond barriers (fibers switch only at barriers), occupancy.

#pragma once

#include "ggml.h"
#define GGML_COMMON_DECL_C
#include "ggml-common.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <ucontext.h>
#include <vector>

// ---------------------------------------------------------------------------------------------------------------
// language

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __CUDA_ARCH__ 900

#define WARP_SIZE 32

#define GGML_CUDA_CC_PASCAL 600
#define GGML_CUDA_CC_VOLTA  700
#define GGML_CUDA_CC_IS_NVIDIA(cc) ((cc) < 0x1000000)

#ifndef GGML_UNUSED_VARS
#define GGML_UNUSED_VARS(...) do { (void) sizeof(0); } while (0)
#endif

#define NO_DEVICE_CODE do { fprintf(stderr, "emu: NO_DEVICE_CODE reached\n"); abort(); } while (0)

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8)  float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8)  int2   { int x, y; };

static inline float2 make_float2(float x, float y) { return { x, y }; }
static inline float4 make_float4(float x, float y, float z, float w) { return { x, y, z, w }; }
static inline int2   make_int2(int x, int y) { return { x, y }; }

struct half {
    uint16_t bits;
    half() = default;
    half(float f) : bits(ggml_fp32_to_fp16(f)) {}
    operator float() const { return ggml_fp16_to_fp32(bits); }
};
struct half2 { half x, y; };
static_assert(sizeof(half) == 2 && sizeof(half2) == 4, "half layout");

static inline float  __half2float(half h)          { return (float) h; }
static inline float  __half2float(uint16_t bits)   { return ggml_fp16_to_fp32(bits); } // ggml_half in C
static inline float2 __half22float2(half2 h)       { return { (float) h.x, (float) h.y }; }

template <typename T> static inline T __ldg(const T * p) { return *p; }

static inline int   min(int a, int b) { return a < b ? a : b; }
static inline int   max(int a, int b) { return a > b ? a : b; }
static inline float rsqrtf(float x) { return 1.0f/sqrtf(x); }

static inline float ggml_get_op_params_f32(const ggml_tensor * t, int i) { return ((const float *) t->op_params)[i]; }
static inline int32_t ggml_get_op_params_i32(const ggml_tensor * t, int i) { return ((const int32_t *) t->op_params)[i]; }

template <typename dst_t, typename src_t>
static inline dst_t ggml_cuda_cast(src_t x) {
    if constexpr (std::is_same_v<dst_t, src_t>) {
        return x;
    } else {
        return dst_t(float(x));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// threads

enum emu_op { EMU_NONE, EMU_SYNCTHREADS, EMU_SYNCTHREADS_OR, EMU_SYNCWARP, EMU_SHFL_XOR, EMU_ANY, EMU_WMMA };

struct emu_thread {
    ucontext_t ctx;
    std::vector<char> stack;
    unsigned tid = 0;
    bool done = false;
    bool waiting = false;
    emu_op op = EMU_NONE;
    unsigned mask = 0;
    int arg = 0;          // shuffle lane mask
    float fval = 0.0f;    // value in, result out
    int ival = 0;
};

struct emu_state {
    ucontext_t sched;
    std::vector<emu_thread> threads;
    emu_thread * cur = nullptr;
    uint3 block_idx{}, block_dim{}, grid_dim{};
    std::function<void()> body;
    long switches = 0;
};

extern emu_state g_emu;

struct emu_tidx_t { };
static inline uint3 emu_thread_idx() { return { g_emu.cur->tid, 0, 0 }; }
#define threadIdx (emu_thread_idx())
#define blockIdx  (g_emu.block_idx)
#define blockDim  (g_emu.block_dim)
#define gridDim   (g_emu.grid_dim)

[[noreturn]] void emu_fail(const char * what);

// wait at a rendezvous of kind op; the scheduler resolves it once every participant is there
static inline void emu_wait(emu_op op, unsigned mask = 0, int arg = 0) {
    emu_thread * t = g_emu.cur;
    t->op = op;
    t->mask = mask;
    t->arg = arg;
    t->waiting = true;
    g_emu.switches++;
    swapcontext(&t->ctx, &g_emu.sched);
}

static inline void __syncthreads() { emu_wait(EMU_SYNCTHREADS); }
static inline int  __syncthreads_or(int p) { g_emu.cur->ival = p != 0; emu_wait(EMU_SYNCTHREADS_OR); return g_emu.cur->ival; }
static inline void __syncwarp(unsigned mask = 0xFFFFFFFF) { emu_wait(EMU_SYNCWARP, mask); }
static inline int  __any_sync(unsigned mask, int p) { g_emu.cur->ival = p != 0; emu_wait(EMU_ANY, mask); return g_emu.cur->ival; }
static inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask, int width = WARP_SIZE) {
    if (width != WARP_SIZE) {
        emu_fail("shuffle width other than 32");
    }
    g_emu.cur->fval = v;
    emu_wait(EMU_SHFL_XOR, mask, lane_mask);
    return g_emu.cur->fval;
}

static inline int atomicOr(int * p, int v) { const int o = *p; *p |= v; return o; }

// as in ggml-cuda/common.cuh
template <int width = WARP_SIZE>
static inline float warp_reduce_sum(float x) {
    for (int offset = width/2; offset > 0; offset >>= 1) {
        x += __shfl_xor_sync(0xffffffff, x, offset, width);
    }
    return x;
}

template <int width = WARP_SIZE>
static inline float warp_reduce_max(float x) {
    for (int offset = width/2; offset > 0; offset >>= 1) {
        x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, offset, width));
    }
    return x;
}

template <typename... Args, typename... Params>
void emu_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, void * stream, Args &&... args);

// ---------------------------------------------------------------------------------------------------------------
// WMMA

namespace nvcuda { namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    float x[16*16];
};

template <typename Use, typename T, typename Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout> & f, float v) {
    for (float & e : f.x) { e = v; }
}

void emu_check_ptr(const void * p, unsigned ldm, size_t elsize);

// a WMMA operation is warp-wide: every lane arrives before any lane goes on (loads see all earlier stores), and a
// store is made once, by lane 0, before any lane goes on
inline void emu_wmma_sync() { emu_wait(EMU_WMMA, 0xFFFFFFFF); }

// A: element (m, k); B: element (k, n)
template <typename Use, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, half, Layout> & f, const half * p, unsigned ldm) {
    emu_wmma_sync();
    emu_check_ptr(p, ldm, sizeof(half));
    for (int r = 0; r < 16; ++r) {
        for (int c = 0; c < 16; ++c) {
            const bool rm = std::is_same_v<Layout, row_major>;
            f.x[r*16 + c] = (float) (rm ? p[r*ldm + c] : p[c*ldm + r]);
        }
    }
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> & f, const float * p, unsigned ldm, layout_t l) {
    emu_wmma_sync();
    emu_check_ptr(p, ldm, sizeof(float));
    for (int r = 0; r < 16; ++r) {
        for (int c = 0; c < 16; ++c) {
            f.x[r*16 + c] = l == mem_row_major ? p[r*ldm + c] : p[c*ldm + r];
        }
    }
}

inline void store_matrix_sync(float * p, const fragment<accumulator, 16, 16, 16, float> & f, unsigned ldm, layout_t l) {
    emu_wmma_sync();
    emu_check_ptr(p, ldm, sizeof(float));
    if (g_emu.cur->tid % WARP_SIZE == 0) {
        for (int r = 0; r < 16; ++r) {
            for (int c = 0; c < 16; ++c) {
                (l == mem_row_major ? p[r*ldm + c] : p[c*ldm + r]) = f.x[r*16 + c];
            }
        }
    }
    emu_wmma_sync();
}

template <typename LA, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> & d, const fragment<matrix_a, 16, 16, 16, half, LA> & a,
              const fragment<matrix_b, 16, 16, 16, half, LB> & b, const fragment<accumulator, 16, 16, 16, float> & c) {
    emu_wmma_sync();
    float out[16*16];
    for (int m = 0; m < 16; ++m) {
        for (int n = 0; n < 16; ++n) {
            float s = c.x[m*16 + n];
            for (int k = 0; k < 16; ++k) {
                s += a.x[m*16 + k]*b.x[k*16 + n];
            }
            out[m*16 + n] = s;
        }
    }
    memcpy(d.x, out, sizeof(out));
}
} } // namespace nvcuda::wmma

// ---------------------------------------------------------------------------------------------------------------
// ggml-cuda host side

typedef int   cudaError_t;
typedef void * cudaStream_t;
#define cudaSuccess 0
#define CUDA_CHECK(x) do { (void) (x); } while (0)
static inline cudaError_t cudaGetLastError() { return cudaSuccess; }

extern size_t g_emu_max_smem;    // the largest dynamic shared memory a launch asked for
extern size_t g_emu_smem_limit;  // fail launches above this (the smallest per-block limit of the archs targeted)
extern int    g_emu_occupancy;   // what cudaOccupancyMaxActiveBlocksPerMultiprocessor answers

template <typename K>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int * n, K, int, size_t) { *n = g_emu_occupancy; return cudaSuccess; }

#define CUDA_SET_SHARED_MEMORY_LIMIT(kernel, nbytes) do { (void) (nbytes); } while (0)

struct ggml_cuda_device_info {
    struct cuda_device_info {
        int    cc;
        int    nsm;
        size_t smpb;
        size_t smpbo;
    } devices[1];
};
const ggml_cuda_device_info & ggml_cuda_info();
static inline int ggml_cuda_get_device() { return 0; }
static inline int ggml_cuda_highest_compiled_arch(int cc) { return cc; }

struct ggml_cuda_pool {
    void * alloc(size_t n);
    void   free(void * p);
};

template <typename T>
struct ggml_cuda_pool_alloc {
    ggml_cuda_pool * pool = nullptr;
    T * ptr = nullptr;
    explicit ggml_cuda_pool_alloc(ggml_cuda_pool & p) : pool(&p) {}
    ggml_cuda_pool_alloc(ggml_cuda_pool & p, size_t n) : pool(&p) { alloc(n); }
    ~ggml_cuda_pool_alloc() { if (ptr) { pool->free(ptr); } }
    T * alloc(size_t n) { ptr = (T *) pool->alloc(n*sizeof(T)); return ptr; }
};

struct ggml_backend_cuda_context {
    ggml_cuda_pool pool_;
    ggml_cuda_pool & pool() { return pool_; }
    cudaStream_t stream() { return nullptr; }
};

// ---------------------------------------------------------------------------------------------------------------
// launches

void emu_run_block(size_t smem);
void * emu_dynamic_smem();

template <typename... Args, typename... Params>
void emu_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, void * stream, Args &&... args) {
    (void) stream;
    g_emu_max_smem = std::max(g_emu_max_smem, smem);
    if (smem > g_emu_smem_limit) {
        fprintf(stderr, "emu: launch with %zu bytes of dynamic shared memory, over the limit %zu\n", smem, g_emu_smem_limit);
        abort();
    }
    if (block.x*block.y*block.z > 1024 || block.y != 1 || block.z != 1) {
        emu_fail("block shape");
    }
    if (grid.y > 65535 || grid.z > 65535) {
        emu_fail("grid y/z over 65535");
    }
    g_emu.grid_dim  = { grid.x, grid.y, grid.z };
    g_emu.block_dim = { block.x, block.y, block.z };
    auto tup = std::make_tuple(Params(args)...);
    g_emu.body = [&]() { std::apply(kernel, tup); };
    for (unsigned z = 0; z < grid.z; ++z) {
        for (unsigned y = 0; y < grid.y; ++y) {
            for (unsigned x = 0; x < grid.x; ++x) {
                g_emu.block_idx = { x, y, z };
                emu_run_block(smem);
            }
        }
    }
}
