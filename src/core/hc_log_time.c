/*
 * hc_log_time.c -- logging and time: proxy_log, proxy_get_log_level,
 * proxy_get_current_time_nanoseconds, and the clock WASI shares
 * (docs/ABI.md §3.3 "Logging, time, timers").
 */
#include <time.h>

#include "core/hc.h"

/* Escaped, truncated and rate-limited in pw_plugin_log (limits.c); a
 * dropped line is still Ok (the Rust SDK panics on anything else). */
u32 pw_hc_log(void *c, u32 level, u32 ptr, u32 len) {
    if (level > PROXY_LOG_CRITICAL)
        return PROXY_RESULT_BAD_ARGUMENT;
    pw_str msg;
    PW_GUEST_STR(VM, msg, ptr, len);
    pw_plugin_log(VM, (proxy_log_level_t)level, msg.data, msg.len, msg.len);
    return OK;
}

u32 pw_hc_get_log_level(void *c, u32 ret) {
    u32 level =
        VM->hooks.log->log_level ? (u32)VM->hooks.log->log_level(VM->host) : PROXY_LOG_INFO;
    if (level > PROXY_LOG_CRITICAL)
        level = PROXY_LOG_CRITICAL; /* §3.2: Rust panics on 6 */
    return pw_mem_put_u32(VM, ret, level) ? PROXY_RESULT_INVALID_MEMORY_ACCESS : OK;
}

uint64_t pw_vm_now_ns(pw_vm *vm) {
    if (vm->hooks.clock->now_ns)
        return vm->hooks.clock->now_ns(vm->host);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

u32 pw_hc_get_current_time(void *c, u32 ret) {
    return pw_mem_put_u64(VM, ret, pw_vm_now_ns(VM)) ? PROXY_RESULT_INVALID_MEMORY_ACCESS : OK;
}
