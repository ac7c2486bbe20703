/*
 * limits.c -- what one plugin may make the host do (docs/ENGINE.md
 * "Limits"): the per-callback byte budget's refusals, and the plugin log
 * path (escaping, truncation, rate limit) shared by proxy_log and WASI
 * stdout/stderr.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "core/core.h"

pw_limits pw_limits_resolve(const pw_limits *in) {
    pw_limits l = in ? *in : (pw_limits){0};
    if (!l.max_header_name_bytes)
        l.max_header_name_bytes = 8192;
    if (!l.max_header_value_bytes)
        l.max_header_value_bytes = 65536;
    if (!l.max_callback_bytes)
        l.max_callback_bytes = 32ull << 20;
    if (!l.max_log_lines_per_sec)
        l.max_log_lines_per_sec = 10000;
    if (!l.max_log_bytes_per_sec)
        l.max_log_bytes_per_sec = 1ull << 20;
    if (!l.max_callouts)
        l.max_callouts = 1024;
    if (!l.max_map_pairs)
        l.max_map_pairs = 8192;
    if (!l.max_map_bytes)
        l.max_map_bytes = 1u << 20;
    if (!l.max_buffer_bytes)
        l.max_buffer_bytes = 64u << 20;
    if (!l.brake_traps)
        l.brake_traps = 5;
    if (!l.brake_window_ms)
        l.brake_window_ms = 10000;
    if (!l.brake_backoff_ms)
        l.brake_backoff_ms = 1000;
    if (!l.brake_max_backoff_ms)
        l.brake_max_backoff_ms = 60000;
    if (l.brake_max_backoff_ms < l.brake_backoff_ms)
        l.brake_max_backoff_ms = l.brake_backoff_ms;
    return l;
}

/* A host notice about ctx's plugin, at WARN, outside the rate limit. */
static void notice(pw_vm *vm, pw_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void notice(pw_vm *vm, pw_ctx *ctx, const char *fmt, ...) {
    char buf[PW_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || !vm->hooks.log->log)
        return;
    pw_str name = pw_ctx_name(vm, ctx);
    vm->hooks.log->log(vm->host, pw_ctx_host_stream(ctx), name, PROXY_LOG_WARN,
                       (pw_str){buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1});
}

proxy_status_t pw_vm_refuse(pw_vm *vm, const char *fmt, ...) {
    if (vm->refusal_logged)
        return PROXY_RESULT_BAD_ARGUMENT;
    vm->refusal_logged = 1;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    pw_ctx *ctx = pw_vm_ctx(vm);
    notice(vm, ctx,
           "plugin \"%s\": refused %s (further refusals in this callback "
           "are not logged)",
           pw_ctx_name(vm, ctx).data, why);
    return PROXY_RESULT_BAD_ARGUMENT;
}

int pw_vm_over_budget(pw_vm *vm, const char *call, uint64_t n) {
    pw_host_limit_hit(vm, "callback_bytes");
    pw_vm_refuse(vm, "%s: %llu bytes over the callback's budget of %llu bytes", call,
                 (unsigned long long)n, (unsigned long long)vm->lim.max_callback_bytes);
    return 0;
}

/* ------------------------------------------------------------ plugin log */

/* 1 if a line of `bytes` fits in the plugin's window, else counts it as
 * dropped. Notices when dropping starts and, at the first line of a later
 * window, how many lines were dropped. */
static int rate_admit(pw_vm *vm, pw_ctx *ctx, uint64_t bytes) {
    pw_log_rate *r = ctx && ctx->plugin ? &ctx->plugin->log_rate : &vm->log_rate;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    if ((int64_t)ts.tv_sec != r->window) {
        if (r->dropped)
            notice(vm, ctx, "plugin \"%s\": log rate limit: %llu lines dropped",
                   pw_ctx_name(vm, ctx).data, (unsigned long long)r->dropped);
        r->window = (int64_t)ts.tv_sec;
        r->lines = 0;
        r->bytes = 0;
        r->dropped = 0;
    }
    if (r->lines >= vm->lim.max_log_lines_per_sec ||
        r->bytes + bytes > vm->lim.max_log_bytes_per_sec) {
        if (r->dropped++ == 0)
            notice(vm, ctx,
                   "plugin \"%s\": log rate limit reached (%u lines or %llu "
                   "bytes per second), dropping lines",
                   pw_ctx_name(vm, ctx).data, vm->lim.max_log_lines_per_sec,
                   (unsigned long long)vm->lim.max_log_bytes_per_sec);
        return 0;
    }
    r->lines++;
    r->bytes += bytes;
    return 1;
}

static int is_ctl(unsigned char c) {
    return c < 0x20 && c != '\t';
}

/* 1 if msg has a character log_escaped would escape. Eight bytes at a
 * time: (x - 0x20..) & ~x & 0x80.. is non-zero exactly when a byte of x
 * is below 0x20; only then are the bytes looked at one by one (TAB is
 * allowed). Every plugin log line goes through here. */
static int has_ctl(const char *msg, size_t n) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, msg + i, 8);
        if (__builtin_expect(((x - 0x20 * ones) & ~x & highs) != 0, 0))
            for (size_t k = i; k < i + 8; k++)
                if (is_ctl((unsigned char)msg[k]))
                    return 1;
    }
    for (; i < n; i++)
        if (is_ctl((unsigned char)msg[i]))
            return 1;
    return 0;
}

/* The slow path: escape into a stack buffer, cut, mark. */
static __attribute__((noinline)) void log_escaped(pw_vm *vm, pw_ctx *ctx, proxy_log_level_t level,
                                                  const char *msg, size_t avail, uint64_t len) {
    static const char hex[] = "0123456789abcdef";
    char out[PW_LOG_LINE_MAX + 48];
    size_t o = 0, i = 0;
    for (; i < avail; i++) {
        unsigned char c = (unsigned char)msg[i];
        size_t n = !is_ctl(c) ? 1 : c == '\n' || c == '\r' ? 2 : 4;
        if (o + n > PW_LOG_LINE_MAX)
            break;
        if (n == 1) {
            out[o++] = (char)c;
            continue;
        }
        out[o++] = '\\';
        if (n == 2) {
            out[o++] = c == '\n' ? 'n' : 'r';
        } else {
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (i < len)
        o += (size_t)snprintf(out + o, sizeof out - o, "...(%llu bytes truncated)",
                              (unsigned long long)(len - i));
    vm->hooks.log->log(vm->host, pw_ctx_host_stream(ctx), pw_ctx_name(vm, ctx), level,
                       (pw_str){out, o});
}

void pw_plugin_log(pw_vm *vm, proxy_log_level_t level, const char *msg, size_t avail,
                   uint64_t len) {
    const pw_host_log_ops *ops = vm->hooks.log;
    if (!ops->log)
        return;
    pw_ctx *ctx = pw_vm_ctx(vm);
    /* Lines under the embedder's level are dropped by it: not counted. */
    if ((!ops->log_level || level >= ops->log_level(vm->host)) &&
        !rate_admit(vm, ctx, len < PW_LOG_LINE_MAX ? len : PW_LOG_LINE_MAX))
        return;
    int clean = avail == len && len <= PW_LOG_LINE_MAX && !has_ctl(msg, avail);
    if (!clean) {
        log_escaped(vm, ctx, level, msg, avail, len);
        return;
    }
    ops->log(vm->host, pw_ctx_host_stream(ctx), pw_ctx_name(vm, ctx), level, (pw_str){msg, avail});
}
