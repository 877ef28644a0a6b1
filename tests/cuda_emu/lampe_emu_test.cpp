// GGML_OP_FLASH_ATTN_EXT_LAMPE: the CUDA kernels (ggml-cuda/fattn-lampe.cu, run by cuda_emu.h on the CPU) against
// the CPU's reference implementation (ggml_lampe_fa_ref, use_ref), case by case and kernel by kernel.
//
// The cases are test-backend-ops' for the op (operands made the same way) plus head sizes 16/32/96, rotary layouts
// that take the kernels' general paths, large GQA groups, a query that sees no key and a padded mask.
//
//     lampe_emu_test [filter]      filter: run only cases whose name contains it
//
// Exit status 1 if any case is over the tolerance (NMSE 5e-4, test-backend-ops' for the op; 1e-10 for F32 K/V
// through the F32 kernels) or has a NaN.

#include "cuda_emu.h"
#include "ggml-cpu.h"

#include <random>
#include <string>

bool ggml_cuda_flash_attn_ext_lampe_supported(int device, const ggml_tensor * op);
void ggml_cuda_flash_attn_ext_lampe(ggml_backend_cuda_context & ctx, ggml_tensor * dst);

extern int    g_emu_nsm;
extern size_t g_emu_max_smem;
extern size_t g_emu_smem_limit;

struct lampe_case {
    int64_t hs, nh, nr, kv, nb, ns;
    ggml_type tk, tv;
    bool neox;
    int n_rot, n_had;
    int32_t L, W, S, M;
    int  blank_row = -1; // a query whose mask row is all -inf
    int  mask_pad  = 0;  // mask rows beyond the queries
    bool keep_nan  = false;
};

static const int n_lo = 16;

static std::string case_name(const lampe_case & c) {
    char buf[256];
    snprintf(buf, sizeof(buf), "hs=%d nh=%d nr=%d kv=%d nb=%d ns=%d K=%s V=%s %s n_rot=%d n_had=%d L=%d W=%d S=%d M=%d%s%s",
             (int) c.hs, (int) c.nh, (int) c.nr, (int) c.kv, (int) c.nb, (int) c.ns, ggml_type_name(c.tk), ggml_type_name(c.tv),
             c.neox ? "neox" : "norm", c.n_rot, c.n_had, c.L, c.W, c.S, c.M, c.blank_row >= 0 ? " blank-row" : "",
             c.mask_pad ? " mask-pad" : "");
    return buf;
}

static void fill_typed(ggml_tensor * t, std::mt19937 & gen) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const int64_t n = ggml_nelements(t);
    std::vector<float> x(n);
    for (auto & e : x) {
        e = u(gen);
    }
    if (t->type == GGML_TYPE_F32) {
        memcpy(t->data, x.data(), n*sizeof(float));
    } else if (t->type == GGML_TYPE_F16) {
        ggml_fp32_to_fp16_row(x.data(), (ggml_fp16_t *) t->data, n);
    } else {
        ggml_quantize_chunk(t->type, x.data(), t->data, 0, n/t->ne[0], t->ne[0], nullptr);
    }
}

// max relative error per kernel path; returns NMSE
static double run_case(const lampe_case & c, const char * kernel, int nsm, bool * nan) {
    ggml_init_params ip = { (size_t) 512*1024*1024, nullptr, false };
    ggml_context * ctx = ggml_init(ip);

    const int64_t nhq = c.nh*c.nr;
    ggml_tensor * q[3];
    for (int r = 0; r < 3; ++r) {
        q[r] = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, c.hs, c.nb, nhq, c.ns);
    }
    ggml_tensor * k_base = ggml_new_tensor_4d(ctx, c.tk, c.hs, c.nh, c.kv, c.ns);
    ggml_tensor * v_base = ggml_new_tensor_4d(ctx, c.tv, c.hs, c.nh, c.kv, c.ns);
    ggml_tensor * k = ggml_permute(ctx, k_base, 0, 2, 1, 3);
    ggml_tensor * v = ggml_permute(ctx, v_base, 0, 2, 1, 3);
    ggml_tensor * m       = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, c.kv, c.nb + c.mask_pad, 1, c.ns);
    ggml_tensor * k_pos   = ggml_new_tensor_3d(ctx, GGML_TYPE_I32, 2, c.kv, c.ns);
    ggml_tensor * q_pos   = ggml_new_tensor_3d(ctx, GGML_TYPE_I32, 2, c.nb, c.ns);
    ggml_tensor * q_scale = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, c.nb, c.ns);
    ggml_tensor * rot     = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, c.n_rot, n_lo + c.kv/n_lo + 1);

    const float scale = 1.0f/sqrtf((float) c.hs);
    const int mode = c.neox ? GGML_ROPE_TYPE_NEOX : 0;
    ggml_tensor * out_cpu = ggml_flash_attn_ext_lampe(ctx, q[0], q[1], q[2], k, v, m, k_pos, q_pos, q_scale, rot, scale, c.n_rot, mode, n_lo, c.n_had);
    ggml_tensor * out_gpu = ggml_flash_attn_ext_lampe(ctx, q[0], q[1], q[2], k, v, m, k_pos, q_pos, q_scale, rot, scale, c.n_rot, mode, n_lo, c.n_had);

    // operands as test-backend-ops makes them
    std::mt19937 gen(1234);
    for (int r = 0; r < 3; ++r) {
        fill_typed(q[r], gen);
    }
    fill_typed(k_base, gen);
    fill_typed(v_base, gen);

    auto key_pos   = [&](int64_t ic) { return (int32_t) ((ic + c.kv/3) % c.kv); };
    auto query_pos = [&](int64_t iq) { return (int32_t) (c.kv - c.nb + iq); };
    const bool multi = c.L >= 2*c.W;
    auto map = [&](int32_t p) { return (int32_t) ((int64_t) p*c.M/(c.L - 1)); };
    int32_t rr = c.S;
    while (multi && rr + 1 < c.L && map(rr) == map(rr + 1)) {
        rr++;
    }
    {
        ggml_fp16_t * md = (ggml_fp16_t *) m->data;
        for (int64_t s = 0; s < c.ns; ++s) {
            for (int64_t iq = 0; iq < c.nb + c.mask_pad; ++iq) {
                for (int64_t ic = 0; ic < c.kv; ++ic) {
                    const bool visible = iq < c.nb && iq != c.blank_row && key_pos(ic) <= query_pos(iq) && gen() % 10 != 0;
                    md[(s*(c.nb + c.mask_pad) + iq)*c.kv + ic] = ggml_fp32_to_fp16(visible ? 0.0f : -INFINITY);
                }
            }
        }
        int32_t * kp = (int32_t *) k_pos->data;
        for (int64_t s = 0; s < c.ns; ++s) {
            for (int64_t ic = 0; ic < c.kv; ++ic) {
                const int32_t p = key_pos(ic);
                kp[2*(s*c.kv + ic) + 0] = p;
                kp[2*(s*c.kv + ic) + 1] = multi ? p - map(p) : 0;
            }
        }
        int32_t * qp = (int32_t *) q_pos->data;
        for (int64_t s = 0; s < c.ns; ++s) {
            for (int64_t iq = 0; iq < c.nb; ++iq) {
                qp[2*(s*c.nb + iq) + 0] = multi ? query_pos(iq) - c.W      : INT32_MIN;
                qp[2*(s*c.nb + iq) + 1] = multi ? query_pos(iq) - c.L + rr : INT32_MIN;
            }
        }
        std::uniform_real_distribution<float> u(0.8f, 1.2f);
        float * qs = (float *) q_scale->data;
        for (int64_t i = 0; i < c.nb*c.ns; ++i) {
            qs[i] = u(gen);
        }
        float * rd = (float *) rot->data;
        memset(rd, 0, ggml_nbytes(rot));
        for (int64_t uu = 0; uu < rot->ne[1]; ++uu) {
            const int64_t pos = uu < n_lo ? -uu : -(uu - n_lo)*n_lo;
            for (int p = 0; p < c.n_rot/2; ++p) {
                const double theta = pos*pow(10000.0, -2.0*p/c.n_rot);
                rd[uu*c.n_rot + (c.neox ? p : 2*p)]               = (float) cos(theta);
                rd[uu*c.n_rot + (c.neox ? p + c.n_rot/2 : 2*p + 1)] = (float) sin(theta);
            }
        }
    }

    // CPU reference
    ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, out_cpu);
    ggml_cplan plan = ggml_graph_plan(gf, 2, nullptr);
    plan.use_ref = true;
    std::vector<uint8_t> work(plan.work_size);
    plan.work_data = work.data();
    if (ggml_graph_compute(gf, &plan) != GGML_STATUS_SUCCESS) {
        fprintf(stderr, "CPU compute failed\n");
        exit(2);
    }

    // the CUDA kernels, emulated
    if (!ggml_cuda_flash_attn_ext_lampe_supported(0, out_gpu)) {
        ggml_free(ctx);
        return -1.0;
    }
    memset(out_gpu->data, 0xFF, ggml_nbytes(out_gpu)); // NaN where nothing writes
    if (kernel) {
        setenv("GGML_CUDA_LAMPE_KERNEL", kernel, 1);
    } else {
        unsetenv("GGML_CUDA_LAMPE_KERNEL");
    }
    g_emu_nsm = nsm;
    ggml_backend_cuda_context cctx;
    ggml_cuda_flash_attn_ext_lampe(cctx, out_gpu);

    const float * a = (const float *) out_gpu->data;
    const float * b = (const float *) out_cpu->data;
    double num = 0.0, den = 0.0;
    *nan = false;
    for (int64_t i = 0; i < ggml_nelements(out_cpu); ++i) {
        if (std::isnan(a[i]) || std::isnan(b[i])) {
            *nan = true;
        }
        num += (double) (a[i] - b[i])*(a[i] - b[i]);
        den += (double) b[i]*b[i];
    }
    if (getenv("EMU_DEBUG")) {
        // the rows (D values: head, query, stream) with the largest errors
        const int64_t D = out_cpu->ne[0];
        for (int64_t r = 0; r < ggml_nelements(out_cpu)/D; ++r) {
            double e = 0.0, n = 0.0;
            for (int64_t d = 0; d < D; ++d) {
                e += (double) (a[r*D + d] - b[r*D + d])*(a[r*D + d] - b[r*D + d]);
                n += (double) b[r*D + d]*b[r*D + d];
            }
            if (e > 1e-6*n) {
                printf("    row %lld (head %lld, query %lld): err %.3e norm %.3e  gpu %.4f %.4f  cpu %.4f %.4f\n", (long long) r,
                       (long long) (r % out_cpu->ne[1]), (long long) (r / out_cpu->ne[1]), e, n, a[r*D], a[r*D + 1], b[r*D], b[r*D + 1]);
            }
        }
    }
    ggml_free(ctx);
    return den > 0.0 ? num/den : num;
}

int main(int argc, char ** argv) {
    const char * filter = argc > 1 ? argv[1] : nullptr;
    const ggml_type F16 = GGML_TYPE_F16, F32 = GGML_TYPE_F32, Q8 = GGML_TYPE_Q8_0;

    std::vector<lampe_case> cases = {
        // test-backend-ops
        { 64, 2, 3, 200, 70, 1, F16, F16, false, 64, 0, 160, 16, 4, 24 },
        { 64, 2, 3, 1100, 1, 1, F16, F16, false, 64, 0, 900, 16, 4, 300 },
        { 64, 2, 3, 300, 2, 1, F16, F16, false, 64, 0, 290, 16, 4, 150 },
        { 128, 4, 1, 130, 64, 1, F32, F32, true, 128, 0, 100, 16, 4, 24 },
        { 64, 2, 3, 180, 66, 1, F16, F16, false, 32, 0, 160, 16, 4, 24 },
        { 64, 2, 3, 700, 1, 1, F16, F16, true, 32, 0, 600, 16, 4, 150 },
        { 64, 2, 3, 100, 64, 1, F16, F16, false, 64, 0, 31, 16, 4, 24 },
        { 64, 1, 3, 150, 20, 2, F16, F16, false, 64, 0, 140, 16, 4, 24 },
        { 64, 2, 3, 150, 64, 1, F16, Q8, false, 64, 0, 140, 16, 4, 24 },
        { 64, 2, 3, 150, 64, 1, Q8, Q8, false, 64, 64, 140, 16, 4, 24 },
        { 128, 1, 4, 300, 5, 1, Q8, Q8, true, 128, 128, 280, 16, 4, 100 },
        { 64, 2, 3, 600, 1, 2, Q8, Q8, false, 64, 64, 500, 16, 4, 200 },
        { 64, 2, 3, 120, 70, 1, F16, F16, false, 64, 0, 40, 16, 30, 10 },
        { 64, 2, 3, 300, 1, 1, F16, F16, false, 64, 0, 260, 16, 30, 1 },
        // head sizes of the tests' tiny models and Phi-3
        { 16, 2, 2, 150, 40, 1, F32, F32, false, 16, 0, 140, 16, 4, 24 },
        { 16, 2, 2, 150, 1, 1, F16, F16, true, 16, 0, 140, 16, 4, 24 },
        { 32, 2, 2, 150, 33, 1, F16, F16, true, 32, 0, 140, 16, 4, 24 },
        { 32, 1, 2, 200, 1, 1, Q8, Q8, false, 32, 32, 180, 16, 4, 60 },
        { 96, 2, 2, 200, 40, 1, F16, F16, true, 96, 0, 180, 16, 4, 60 },
        { 96, 2, 2, 200, 1, 1, Q8, F16, true, 64, 32, 180, 16, 4, 60 },
        // Hadamard-rotated K cache at head size 128, both layouts, prefill and decode; F32 with Hadamard
        { 128, 2, 4, 400, 40, 1, Q8, Q8, false, 128, 128, 380, 16, 4, 100 },
        { 128, 2, 4, 400, 3, 1, Q8, Q8, true, 128, 64, 380, 16, 4, 100 },
        { 128, 2, 4, 400, 3, 1, F32, F32, true, 128, 128, 380, 16, 4, 100 },
        { 64, 2, 2, 300, 24, 1, F32, F16, false, 64, 8, 280, 16, 4, 60 },
        // rotary dimensions that take the general paths: n_rot/2 not a multiple of 4 lanes' chunks, odd pairs
        { 64, 2, 2, 300, 2, 1, F16, F16, true, 24, 0, 280, 16, 4, 60 },
        { 64, 2, 2, 300, 30, 1, F16, F16, true, 24, 0, 280, 16, 4, 60 },
        { 64, 2, 2, 300, 2, 1, F16, F16, false, 30, 0, 280, 16, 4, 60 },
        { 128, 1, 2, 300, 2, 1, F16, F16, true, 64, 0, 280, 16, 4, 60 },
        // GQA groups larger than a block's rows, odd ones; streams
        { 64, 1, 8, 300, 1, 1, F16, F16, false, 64, 0, 280, 16, 4, 60 },
        { 64, 1, 40, 200, 3, 1, F16, F16, false, 64, 0, 180, 16, 4, 60 },
        { 64, 2, 5, 200, 13, 2, F16, Q8, false, 64, 0, 180, 16, 4, 60 },
        { 128, 8, 4, 257, 1, 1, F16, F16, false, 128, 0, 250, 32, 8, 80 },
        // a query that sees no key; a mask with rows beyond the queries
        { 64, 2, 3, 200, 40, 1, F16, F16, false, 64, 0, 180, 16, 4, 60, 5 },
        { 64, 2, 3, 200, 1, 1, F16, F16, false, 64, 0, 180, 16, 4, 60, 0 },
        { 64, 2, 3, 200, 37, 1, F16, F16, false, 64, 0, 180, 16, 4, 60, -1, 27 },
    };

    const char * kernels[] = { nullptr, "vec", "tile", "simt" };
    const int    nsms[]    = { 4, 1000 };
    // shared memory per block: sm_86/89's 99 KB (32-row WMMA tiles), sm_90's 227 KB (64 rows); the vec and F32
    // kernels do not depend on it
    const size_t smems[]   = { 99*1024, 227*1024 };

    int n_fail = 0, n_run = 0;
    for (const lampe_case & c : cases) {
        const std::string name = case_name(c);
        if (filter && name.find(filter) == std::string::npos) {
            continue;
        }
        for (const char * kernel : kernels) {
          for (const size_t smem : smems) {
            const bool mma_path = !kernel || strcmp(kernel, "tile") == 0;
            if (smem != smems[0] && !mma_path) {
                continue;
            }
            g_emu_smem_limit = smem;
            for (const int nsm : nsms) {
                bool nan = false;
                const double err = run_case(c, kernel, nsm, &nan);
                if (err < 0.0) {
                    printf("  not supported    %s\n", name.c_str());
                    goto next_case;
                }
                const bool f32  = c.tk == GGML_TYPE_F32 && c.tv == GGML_TYPE_F32;
                const bool exact = f32 || (kernel && strcmp(kernel, "simt") == 0) || (kernel && strcmp(kernel, "vec") == 0) ||
                                   (!kernel && c.nb <= 4);
                // F32 arithmetic throughout: F32 K/V, or the F32 kernels on F16/Q8_0 (exact conversions)
                const double tol = exact ? 1e-10 : 5e-4;
                const bool ok = !nan && err < tol;
                n_run++;
                n_fail += !ok;
                printf("%s %-5s nsm=%-4d smem=%3zuK nmse=%.3e (tol %.0e)%s  %s\n", ok ? "  ok  " : "  FAIL", kernel ? kernel : "auto",
                       nsm, smem/1024, err, tol, nan ? " NaN" : "", name.c_str());
                fflush(stdout);
            }
          }
        }
next_case:;
    }
    printf("largest dynamic shared memory of a launch: %zu bytes\n", g_emu_max_smem);
    printf("%d/%d passed\n", n_run - n_fail, n_run);
    return n_fail ? 1 : 0;
}
