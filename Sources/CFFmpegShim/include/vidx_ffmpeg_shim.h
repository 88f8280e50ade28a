// vidx_ffmpeg_shim: the few FFmpeg constructs Swift cannot import.
// Each one exists because it is a function-like or expression macro in FFmpeg's
// headers (AVERROR, FFERRTAG, AV_NOPTS_VALUE) or a variadic callback (av_log).
#ifndef VIDX_FFMPEG_SHIM_H
#define VIDX_FFMPEG_SHIM_H

#include <stdint.h>
#include <stddef.h>

/// AVERROR(posix_errno): FFmpeg's negative error code for a POSIX errno value.
int vidx_averror(int posix_errno);
/// AVERROR_EOF: the end of the stream (control flow, not an error).
int vidx_averror_eof(void);
/// AVERROR_INVALIDDATA: FFmpeg's "invalid data found when processing input".
int vidx_averror_invaliddata(void);
/// AVERROR_DECODER_NOT_FOUND.
int vidx_averror_decoder_not_found(void);
/// AVERROR_EXIT: returned by FFmpeg when the interrupt callback asked it to stop.
int vidx_averror_exit(void);
/// AV_NOPTS_VALUE: "no timestamp".
int64_t vidx_av_nopts_value(void);

/// Routes FFmpeg's log through a callback that keeps, per thread, the last message
/// at error level or worse instead of printing it (printing would interleave with the
/// tool's own output). Idempotent. `verbose` non-zero also prints warnings to stderr.
void vidx_log_capture_install(int verbose);
/// Copies the calling thread's last captured FFmpeg error message into `buf`
/// (NUL-terminated, at most `size` bytes) and clears it. Returns its length (0: none).
size_t vidx_log_take_last_error(char *buf, size_t size);

#endif
