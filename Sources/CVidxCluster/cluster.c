// See include/vidx_cluster.h.
#include "vidx_cluster.h"

#include <string.h>

typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef int v8i __attribute__((vector_size(32), aligned(4)));

static inline __attribute__((always_inline)) v8f load8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) v8f splat8(float f)
{
    v8f v = {f, f, f, f, f, f, f, f};
    return v;
}

static inline __attribute__((always_inline)) v8f max8(v8f a, v8f b)
{
    v8i gt = a > b;
    return (v8f)(((v8i)a & gt) | ((v8i)b & ~gt));
}

static inline __attribute__((always_inline)) void
argmax_body(const float *scores, size_t rows, size_t count, size_t ld, int32_t *index, size_t index_stride,
            float *value, size_t value_stride)
{
    size_t wide = count / 16 * 16;
    for (size_t r = 0; r < rows; r++) {
        const float *row = scores + r * ld;
        float top;
        if (wide >= 16) {
            v8f a = load8(row), b = load8(row + 8);
            for (size_t k = 16; k < wide; k += 16) {
                a = max8(a, load8(row + k));
                b = max8(b, load8(row + k + 8));
            }
            a = max8(a, b);
            top = a[0];
            for (int g = 1; g < 8; g++) top = a[g] > top ? a[g] : top;
            for (size_t k = wide; k < count; k++) top = row[k] > top ? row[k] : top;
        } else {
            top = row[0];
            for (size_t k = 1; k < count; k++) top = row[k] > top ? row[k] : top;
        }
        size_t at = 0;
        while (row[at] != top) at++;
        index[r * index_stride] = (int32_t)at;
        value[r * value_stride] = top;
    }
}

static inline __attribute__((always_inline)) double
nearest_body(const float *points, size_t n, const float *word, float *nearest, double *blocks)
{
    // Points transposed (dimension j of point i at points[j * n + i]): eight points a step,
    // each dot product summed over j in order.
    size_t i = 0;
    v8f two = {2, 2, 2, 2, 2, 2, 2, 2}, zero = {0};
    for (; i + 32 <= n; i += 32) {
        // Four groups of eight points: four independent chains of additions.
        v8f acc[4] = {{0}, {0}, {0}, {0}};
        for (int j = 0; j < 16; j++) {
            const float *row = points + (size_t)j * n + i;
            for (int g = 0; g < 4; g++) acc[g] += load8(row + 8 * g) * word[j];
        }
        for (int g = 0; g < 4; g++) {
            v8f dist = max8(two - acc[g] * 2.0f, zero);
            v8f near = load8(nearest + i + 8 * g);
            v8i lower = dist < near;
            near = (v8f)(((v8i)dist & lower) | ((v8i)near & ~lower));
            memcpy(nearest + i + 8 * g, &near, sizeof near);
        }
    }
    for (; i < n; i++) {
        float dot = 0;
        for (int j = 0; j < 16; j++) dot += points[(size_t)j * n + i] * word[j];
        float dist = 2.0f - dot * 2.0f;
        if (dist < 0) dist = 0;
        if (dist < nearest[i]) nearest[i] = dist;
    }
    // Block sums: eight float lanes over the block's points, then the lanes in double.
    double total = 0;
    for (size_t b = 0; b * 64 < n; b++) {
        size_t start = b * 64, end = start + 64 < n ? start + 64 : n;
        double sum = 0;
        if (end - start == 64) {
            v8f lanes = {0};
            for (size_t k = start; k < end; k += 8) lanes += load8(nearest + k);
            for (int g = 0; g < 8; g++) sum += (double)lanes[g];
        } else {
            for (size_t k = start; k < end; k++) sum += (double)nearest[k];
        }
        blocks[b] = sum;
        total += sum;
    }
    return total;
}

// One point's running maximum over blocks of 8 codewords: per lane (k mod 8) the largest
// value seen and the first block index holding it.
typedef struct { v8f best; v8i at; } lane_max;

static inline __attribute__((always_inline)) void lane_update(lane_max *m, v8f s, v8i k)
{
    v8i gt = s > m->best;
    m->best = (v8f)(((v8i)s & gt) | ((v8i)m->best & ~gt));
    m->at = (k & gt) | (m->at & ~gt);
}

static inline __attribute__((always_inline)) void lane_finish(const lane_max *m, int32_t *index, float *value)
{
    float top = m->best[0];
    int32_t at = m->at[0];
    for (int g = 1; g < 8; g++) {
        float v = m->best[g];
        if (v > top || (v == top && m->at[g] < at)) { top = v; at = m->at[g]; }
    }
    *index = at;
    *value = top;
}

// acc + a * b: one rounding with FMA (the AVX2 build), two without.
#define MADD(acc, a, b, fused) ((fused) ? __builtin_elementwise_fma((a), (b), (acc)) : (acc) + (a) * (b))

// Four points against 16 codewords at a time: 8 accumulators, as a gemm micro-kernel.
static inline __attribute__((always_inline)) void
assign_body(const float *points, size_t n, const float *columns, size_t count, int32_t *index, float *value, int fused)
{
    const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *p = points + i * 16;
        lane_max mx[4];
        for (int q = 0; q < 4; q++) { mx[q].best = (v8f){0} - __builtin_inff(); mx[q].at = (v8i){0}; }
        for (size_t k = 0; k < count; k += 16) {
            v8f a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0};
            for (int j = 0; j < 16; j++) {
                v8f lo = load8(columns + j * count + k), hi = load8(columns + j * count + k + 8);
                float pa = p[j], pb = p[16 + j], pc = p[32 + j], pd = p[48 + j];
                v8f xa = splat8(pa), xb = splat8(pb), xc = splat8(pc), xd = splat8(pd);
                a0 = MADD(a0, lo, xa, fused); a1 = MADD(a1, hi, xa, fused);
                b0 = MADD(b0, lo, xb, fused); b1 = MADD(b1, hi, xb, fused);
                c0 = MADD(c0, lo, xc, fused); c1 = MADD(c1, hi, xc, fused);
                d0 = MADD(d0, lo, xd, fused); d1 = MADD(d1, hi, xd, fused);
            }
            v8i k0 = lane + (int)k, k1 = lane + (int)(k + 8);
            lane_update(&mx[0], a0, k0); lane_update(&mx[0], a1, k1);
            lane_update(&mx[1], b0, k0); lane_update(&mx[1], b1, k1);
            lane_update(&mx[2], c0, k0); lane_update(&mx[2], c1, k1);
            lane_update(&mx[3], d0, k0); lane_update(&mx[3], d1, k1);
        }
        for (int q = 0; q < 4; q++) lane_finish(&mx[q], index + i + q, value + i + q);
    }
    for (; i < n; i++) {
        const float *p = points + i * 16;
        lane_max mx = {(v8f){0} - __builtin_inff(), (v8i){0}};
        for (size_t k = 0; k < count; k += 16) {
            v8f a0 = {0}, a1 = {0};
            for (int j = 0; j < 16; j++) {
                v8f x = splat8(p[j]);
                a0 = MADD(a0, load8(columns + j * count + k), x, fused);
                a1 = MADD(a1, load8(columns + j * count + k + 8), x, fused);
            }
            lane_update(&mx, a0, lane + (int)k);
            lane_update(&mx, a1, lane + (int)(k + 8));
        }
        lane_finish(&mx, index + i, value + i);
    }
}

#define DEFINE(SUFFIX, ATTR, FUSED)                                                                \
    static ATTR void argmax_##SUFFIX(const float *s, size_t rows, size_t count, size_t ld, int32_t *ix,  \
                                     size_t is, float *v, size_t vs)                               \
    {                                                                                              \
        if (count == 256) argmax_body(s, rows, 256, ld, ix, is, v, vs);                            \
        else argmax_body(s, rows, count, ld, ix, is, v, vs);                                       \
    }                                                                                              \
    static ATTR void assign_##SUFFIX(const float *p, size_t n, const float *c, size_t count, int32_t *ix, float *v) \
    {                                                                                              \
        if (count == 256) assign_body(p, n, c, 256, ix, v, FUSED);                                 \
        else assign_body(p, n, c, count, ix, v, FUSED);                                            \
    }                                                                                              \
    static ATTR double nearest_##SUFFIX(const float *p, size_t n, const float *w, float *near, double *b) \
    {                                                                                              \
        return nearest_body(p, n, w, near, b);                                                     \
    }

#pragma clang fp contract(off)
DEFINE(generic, , 0)
#if defined(__x86_64__) && defined(__clang__)
DEFINE(avx2, __attribute__((target("avx2,fma"))), 1)
static int use_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#else
#define argmax_avx2 argmax_generic
#define nearest_avx2 nearest_generic
#define assign_avx2 assign_generic
static int use_avx2(void) { return 0; }
#endif

void vidx_argmax_rows(const float *scores, size_t rows, size_t count, size_t ld, int32_t *index, size_t index_stride,
                      float *value, size_t value_stride)
{
    if (use_avx2()) argmax_avx2(scores, rows, count, ld, index, index_stride, value, value_stride);
    else argmax_generic(scores, rows, count, ld, index, index_stride, value, value_stride);
}

double vidx_nearest_update16(const float *points, size_t n, const float *word, float *nearest, double *blocks)
{
    return use_avx2() ? nearest_avx2(points, n, word, nearest, blocks) : nearest_generic(points, n, word, nearest, blocks);
}

void vidx_assign16(const float *points, size_t n, const float *columns, size_t count, int32_t *index, float *value)
{
    if (use_avx2()) assign_avx2(points, n, columns, count, index, value);
    else assign_generic(points, n, columns, count, index, value);
}
