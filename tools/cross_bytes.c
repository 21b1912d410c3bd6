/* Hashes of every C kernel's output, the counter-based ones filled through the thread pool: built for
 * several targets by tools/check_cross_bytes.py, whose hashes must all agree.  Usage: cross_bytes THREADS
 * [SIMD_PATH]. */
#include <stdio.h>
#include <stdlib.h>

#include "caffe_rng.h"
#include "common.h"
#include "half.h"
#include "philox_fill.h"
#include "pool.h"

#define N 1000003 /* about 30 chunks of 32 Ki, a ragged last one */

typedef struct {
    int kernel;
    fl_philox_key key;
    float *f32;
    double *f64;
} job;

static const char *const kernels[] = {"gaussian+sparse f32", "gaussian f64", "uniform f32", "uniform f64",
                                       "bilinear f32", "bilinear f64", "truncated_gaussian f32",
                                       "truncated_gaussian f64", "dirac f32", "dirac f64"};
#define KERNELS 10

/* N(0.5, 2) cut to [-1, 6], as fillers._params computes it (mirrored: scale -std, Phi(-2.75), Phi(0.75) - it). */
static const fl_truncated_params trunc_mid = {0.0029797632350545573, 0.7703928843880772, 0.5, -2.0, -1.0, 6.0};

static void work(void *ctx, int64_t begin, int64_t end)
{
    job *j = ctx;
    const int64_t n = end - begin;
    switch (j->kernel) {
    case 0:
        fl_philox_gaussian_f32(&j->key, begin, n, 0.5f, 2.0f, j->f32 + begin);
        fl_philox_sparsify_f32(&j->key, begin, n, 0.3, j->f32 + begin);
        break;
    case 1: fl_philox_gaussian_f64(&j->key, begin, n, 0.5, 2.0, j->f64 + begin); break;
    case 2: fl_philox_uniform_f32(&j->key, begin, n, -1.0f, 3.0f, j->f32 + begin); break;
    case 3: fl_philox_uniform_f64(&j->key, begin, n, -1.0, 3.0, j->f64 + begin); break;
    case 4: fl_bilinear_f32(begin, n, 7, j->f32 + begin); break;
    case 5: fl_bilinear_f64(begin, n, 70, j->f64 + begin); break;
    case 6: fl_philox_truncated_f32(&j->key, begin, n, &trunc_mid, j->f32 + begin); break;
    case 7: fl_philox_truncated_f64(&j->key, begin, n, &trunc_mid, j->f64 + begin); break;
    case 8: fl_diagonal_f32(begin, n, 17, 9, 4, 31, 1.5f, 0, j->f32 + begin); break;
    default: fl_diagonal_f64(begin, n, 17, 9, 4, 31, 1.5, 0, j->f64 + begin); break;
    }
}

static unsigned long long fnv1a(const void *data, size_t bytes)
{
    const unsigned char *p = data;
    unsigned long long h = 14695981039346656037ull;
    for (size_t i = 0; i < bytes; ++i)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int main(int argc, char **argv)
{
    float *f32 = malloc(N * sizeof *f32);
    double *f64 = malloc(N * sizeof *f64);
    job j = {0, {0x0123456789abcdefull, 42}, f32, f64};
    fl_mt19937 mt;
    if (f32 == NULL || f64 == NULL)
        return 1;
    if (argc > 2 && fl_simd_set(atoi(argv[2])) != 0)
        return 2;
    for (j.kernel = 0; j.kernel < KERNELS; ++j.kernel) {
        fl_pool_for(N, 1 << 15, argc > 1 ? atoi(argv[1]) : 1, work, &j);
        printf("%s %016llx\n", kernels[j.kernel],
               j.kernel % 2 ? fnv1a(f64, N * sizeof *f64) : fnv1a(f32, N * sizeof *f32));
    }
    fl_philox_uniform_f32(&j.key, 0, N / 1000 * 1000, 0, 1, f32);
    fl_normalize_rows_f32(f32, N / 1000, 1000);
    printf("positive_unitball f32 %016llx\n", fnv1a(f32, N / 1000 * 1000 * sizeof *f32));
    fl_philox_gaussian_f32(&j.key, 0, N, 0.0f, 3000.0f, f32); /* float16 normals, subnormals and overflows */
    for (int kind = FL_HALF_F16; kind <= FL_HALF_BF16; ++kind) {
        fl_round_half(f32, N, kind, (uint16_t *)f64);
        printf("%s of gaussian f32 %016llx\n", kind == FL_HALF_F16 ? "float16" : "bfloat16",
               fnv1a(f64, N * sizeof(uint16_t)));
    }
    fl_philox_unitball_half(&j.key, 0, N / 1000, 1000, FL_HALF_F16, (uint16_t *)f64);
    printf("positive_unitball float16 %016llx\n", fnv1a(f64, N / 1000 * 1000 * sizeof(uint16_t)));
    fl_mt_seed(&mt, 1701);
    fl_caffe_gaussian_f32(&mt, N, 0.0f, 1.0f, f32);
    printf("caffe gaussian f32 %016llx\n", fnv1a(f32, N * sizeof *f32));
    fl_caffe_gaussian_f64(&mt, N, 0.0, 1.0, f64);
    printf("caffe gaussian f64 %016llx\n", fnv1a(f64, N * sizeof *f64));
    fl_caffe_uniform_f32(&mt, N, -1.0f, 1.0f, f32);
    printf("caffe uniform f32 %016llx\n", fnv1a(f32, N * sizeof *f32));
    free(f32);
    free(f64);
    return 0;
}
