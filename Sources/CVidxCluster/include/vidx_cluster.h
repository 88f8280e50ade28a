// The inner loops of codebook fitting (VidxCodebooks' SphericalKMeans): the argmax of
// score rows after an sgemm, and k-means++'s nearest-distance update. One body each,
// compiled for AVX2 (with FMA) and for the x86-64 baseline and chosen at run time. Every
// sum runs in a fixed order, so a machine gives the same bits whatever the threads; the
// AVX2 assignment rounds once per multiply-add, so another CPU may differ in the last bit.
#ifndef VIDX_CLUSTER_H
#define VIDX_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

// For each of `rows` rows of `count` floats (row r at scores + r * ld): the first index
// of the largest value (argmax's rule) into index[r * index_stride] and that value into
// value[r * value_stride]. The values must not be NaN.
void vidx_argmax_rows(const float *scores, size_t rows, size_t count, size_t ld,
                      int32_t *index, size_t index_stride, float *value, size_t value_stride);

// Assignment of `n` points of 16 floats (point i at points + i * 16) to the largest of
// `count` dot products with the codewords, given transposed: columns[j * count + k] is
// dimension j of codeword k; `count` a multiple of 16. Each dot product sums its 16
// products in order (fused multiply-adds in the AVX2 build). index[i] gets the first k of the largest, value[i] that value.
void vidx_assign16(const float *points, size_t n, const float *columns, size_t count, int32_t *index, float *value);

// For each of `n` points of 16 floats, transposed (dimension j of point i at
// points[j * n + i]): the squared distance between unit vectors, max(0, 2 - 2 <p, word>),
// lowers nearest[i] when smaller. Then blocks[b] = the sum of nearest[64 b ..< 64 b + 64]
// for every block of 64 points (the last may be shorter), in a fixed order. Returns the sum
// of blocks[] in order, in double.
double vidx_nearest_update16(const float *points, size_t n, const float *word, float *nearest, double *blocks);

#endif
