/*
 * hc_timers.c -- timers: proxy_set_tick_period_milliseconds, and later the
 * proxy_on_tick callbacks it asks for. Not implemented yet: Unimplemented
 * (docs/ABI.md §3.3 "Logging, time, timers", §8.5).
 */
#include "core/hc.h"

u32 pw_hc_set_tick_period(PW_UNUSED void *c, PW_UNUSED u32 period_ms) {
    return PROXY_RESULT_UNIMPLEMENTED;
}
