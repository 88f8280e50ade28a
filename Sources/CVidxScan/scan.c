// See include/vidx_scan.h. One kernel body, compiled twice on x86-64 (AVX2 and the
// baseline) and chosen at run time by CPUID, so one binary runs on any x86-64 CPU.
#include "vidx_scan.h"

#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vidx_scan reads eight codes as one little-endian 64-bit word"
#endif

// Eight floats; aligned(4) so that loads and stores make no alignment promise.
typedef float v8f __attribute__((vector_size(32), aligned(4)));

#define LANE(tp, off) (*(const v8f *)((tp) + (size_t)(off) * 8))

static inline __attribute__((always_inline)) void
level8_body(const float *table, const uint8_t *codes, size_t stride, size_t rows, uint32_t M,
            size_t K, float *scores, int accumulate)
{
    for (size_t r = 0; r < rows; r++, codes += stride, scores += 8) {
        v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        const float *tp = table;
        uint32_t m = 0;
        for (; m + 8 <= M; m += 8) {
            uint64_t w;
            memcpy(&w, codes + m, 8);
            a0 += LANE(tp, w & 0xFF);
            a1 += LANE(tp, K + ((w >> 8) & 0xFF));
            a2 += LANE(tp, 2 * K + ((w >> 16) & 0xFF));
            a3 += LANE(tp, 3 * K + ((w >> 24) & 0xFF));
            a0 += LANE(tp, 4 * K + ((w >> 32) & 0xFF));
            a1 += LANE(tp, 5 * K + ((w >> 40) & 0xFF));
            a2 += LANE(tp, 6 * K + ((w >> 48) & 0xFF));
            a3 += LANE(tp, 7 * K + (w >> 56));
            tp += 8 * K * 8;
        }
        for (; m < M; m++) {
            a0 += LANE(tp, codes[m]);
            tp += K * 8;
        }
        v8f s = (a0 + a1) + (a2 + a3);
        v8f *out = (v8f *)scores;
        if (accumulate) s = *out + s;  // IEEE addition commutes: the same bits as out + s
        *out = s;
    }
}

// K = 256 (HCQ's) gets its own copy: the table offsets become constants in the addressing.
#define DEFINE_KERNEL(NAME, ATTR)                                                                 \
    static ATTR void NAME(const float *t, const uint8_t *c, size_t stride, size_t rows,            \
                          uint32_t M, uint32_t K, float *s, int acc)                              \
    {                                                                                             \
        if (K == 256) level8_body(t, c, stride, rows, M, 256, s, acc);                            \
        else level8_body(t, c, stride, rows, M, K, s, acc);                                       \
    }

// The lanes of `above` (each all ones or all zeros) as bits, lane g at bit g.
typedef int v8i __attribute__((vector_size(32), aligned(4)));
static inline __attribute__((always_inline)) unsigned lane_bits_portable(v8i above)
{
    unsigned mask = 0;
    for (int g = 0; g < 8; g++) mask |= (unsigned)(above[g] & 1) << g;
    return mask;
}

static inline __attribute__((always_inline)) size_t
select8_body(float *scores, size_t rows, float scale, int apply_scale, const float *thresholds, uint32_t *rows_out,
             uint8_t *masks_out, unsigned (*lane_bits)(v8i))
{
    v8f t = *(const v8f *)thresholds, k = {scale, scale, scale, scale, scale, scale, scale, scale};
    size_t n = 0;
    for (size_t r = 0; r < rows; r++) {
        v8f *p = (v8f *)(scores + r * 8);
        v8f s = *p;
        if (apply_scale) *p = s = s * k;
        unsigned mask = lane_bits(s >= t);
        if (mask) {
            rows_out[n] = (uint32_t)r;
            masks_out[n] = (uint8_t)mask;
            n++;
        }
    }
    return n;
}

#define DEFINE_SELECT(NAME, ATTR, BITS)                                                           \
    static ATTR size_t NAME(float *s, size_t rows, float scale, int apply, const float *t, uint32_t *ro,  \
                            uint8_t *mo)                                                          \
    {                                                                                             \
        return select8_body(s, rows, scale, apply, t, ro, mo, BITS);                              \
    }

DEFINE_KERNEL(level8_generic, )
DEFINE_SELECT(select8_generic, , lane_bits_portable)

typedef void (*level8_fn)(const float *, const uint8_t *, size_t, size_t, uint32_t, uint32_t, float *, int);

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
DEFINE_KERNEL(level8_avx2, __attribute__((target("avx2"))))
static inline __attribute__((always_inline, target("avx2"))) unsigned lane_bits_avx2(v8i above)
{
    return (unsigned)_mm256_movemask_ps((__m256)above);
}
DEFINE_SELECT(select8_avx2, __attribute__((target("avx2"))), lane_bits_avx2)
static int cpu_has_avx2(void) { return __builtin_cpu_supports("avx2"); }
#else
#define level8_avx2 level8_generic
#define select8_avx2 select8_generic
static int cpu_has_avx2(void) { return 0; }
#endif

static int forced_generic = 0;

static int use_avx2(void) { return !forced_generic && cpu_has_avx2(); }

void vidx_scan_level8(const float *table, const uint8_t *codes, size_t stride, size_t rows, uint32_t M,
                      uint32_t K, float *scores, int accumulate)
{
    level8_fn f = use_avx2() ? level8_avx2 : level8_generic;
    f(table, codes, stride, rows, M, K, scores, accumulate);
}

size_t vidx_scan_select8(float *scores, size_t rows, float scale, int apply_scale, const float *thresholds,
                         uint32_t *rows_out, uint8_t *masks_out)
{
    return use_avx2() ? select8_avx2(scores, rows, scale, apply_scale, thresholds, rows_out, masks_out)
                      : select8_generic(scores, rows, scale, apply_scale, thresholds, rows_out, masks_out);
}

const char *vidx_scan_isa(void) { return use_avx2() ? "avx2" : "generic"; }

void vidx_scan_force_generic(int on) { forced_generic = on != 0; }
