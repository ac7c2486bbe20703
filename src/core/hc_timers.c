/*
 * hc_timers.c -- timers: proxy_set_tick_period_milliseconds; the ticks are
 * pw_plugin_on_tick (vm.c), driven by the embedder's timer
 * (pw_host_timer_ops; docs/ABI.md §3.3 "Logging, time, timers", §8.5).
 */
#include "core/hc.h"

/* The period of the current plugin's root context (from a stream context,
 * its root's, as in Envoy); 0 stops its ticks. */
u32 pw_hc_set_tick_period(void *c, u32 period_ms) {
    if (!VM->hooks.timers->set_tick)
        return PROXY_RESULT_UNIMPLEMENTED;
    pw_ctx *ctx = pw_vm_ctx(VM);
    if (!ctx || !ctx->plugin)
        return PROXY_RESULT_OK; /* a start function: no root context to tick */
    pw_plugin *p = ctx->plugin;
    p->tick_period = period_ms;
    VM->hooks.timers->set_tick(VM->host, p, period_ms);
    return PROXY_RESULT_OK;
}
