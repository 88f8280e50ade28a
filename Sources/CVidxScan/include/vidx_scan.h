// The search scan's inner loop: table sums for eight queries at once (VidxSearch).
//
// A lane group holds the lookup tables of 8 queries interleaved, entry (m, c) of one
// level at floats ((m * K) + c) * 8 ..< +8, so one code byte selects one 32-byte vector
// that serves all 8 queries. For every row, lane g's sum is formed exactly as
// Searcher.tableSum forms query g's: four partial sums a0..a3 (sub-space m into a[m % 4]
// for the whole multiples of 8, the rest into a0), then (a0 + a1) + (a2 + a3). Only
// additions, so every lane gets the same bits as the scalar sum, on any instruction set.
#ifndef VIDX_SCAN_H
#define VIDX_SCAN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Queries per lane group.
#define VIDX_SCAN_LANES 8

/// For r < rows: s = the 8 lanes' table sums of row r's M codes (codes + r * stride),
/// then scores[r * 8 ..< +8] = s, or += s when `accumulate` is non-zero.
/// `table` is one level's lane-group table, M * K * 8 floats; every code must be < K.
void vidx_scan_level8(const float *table, const uint8_t *codes, size_t stride, size_t rows,
                      uint32_t M, uint32_t K, float *scores, int accumulate);

/// For r < rows: multiplies scores[r * 8 ..< +8] by `scale` in place when `apply_scale`
/// is non-zero, and when some lane g of the row is >= thresholds[g], appends r to
/// `rows_out` and the bit mask of those lanes to `masks_out`. Returns how many rows it
/// appended (at most `rows`).
size_t vidx_scan_select8(float *scores, size_t rows, float scale, int apply_scale, const float *thresholds,
                         uint32_t *rows_out, uint8_t *masks_out);

/// The instruction set vidx_scan_level8 uses: "avx2" or "generic".
const char *vidx_scan_isa(void);

/// Forces the portable kernel (non-zero) or restores the automatic choice (0); for tests,
/// which check that both give the same bytes. Not thread-safe against running scans.
void vidx_scan_force_generic(int on);

#ifdef __cplusplus
}
#endif

#endif
