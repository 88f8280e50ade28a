#include "vidx_ffmpeg_shim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <libavutil/avutil.h>
#include <libavutil/error.h>
#include <libavutil/log.h>

int vidx_averror(int posix_errno) { return AVERROR(posix_errno); }
int vidx_averror_eof(void) { return AVERROR_EOF; }
int vidx_averror_invaliddata(void) { return AVERROR_INVALIDDATA; }
int vidx_averror_decoder_not_found(void) { return AVERROR_DECODER_NOT_FOUND; }
int vidx_averror_exit(void) { return AVERROR_EXIT; }
int64_t vidx_av_nopts_value(void) { return AV_NOPTS_VALUE; }

static _Thread_local char last_error[512];
static int log_verbose = 0;

static void capture_callback(void *avcl, int level, const char *fmt, va_list vl) {
    (void)avcl;
    if (level > AV_LOG_WARNING) return;
    if (level > AV_LOG_ERROR) {
        if (log_verbose) {
            va_list copy;
            va_copy(copy, vl);
            vfprintf(stderr, fmt, copy);
            va_end(copy);
        }
        return;
    }
    char line[512];
    vsnprintf(line, sizeof line, fmt, vl);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    if (n > 0) memcpy(last_error, line, n + 1);
}

void vidx_log_capture_install(int verbose) {
    log_verbose = verbose;
    av_log_set_callback(capture_callback);
}

size_t vidx_log_take_last_error(char *buf, size_t size) {
    size_t n = strlen(last_error);
    if (size == 0) return n;
    size_t copy = n < size - 1 ? n : size - 1;
    memcpy(buf, last_error, copy);
    buf[copy] = '\0';
    last_error[0] = '\0';
    return n;
}
