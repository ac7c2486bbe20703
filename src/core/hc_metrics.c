/*
 * hc_metrics.c -- metrics: counters, gauges and histograms a plugin defines
 * and updates. Not implemented yet: every one answers Unimplemented
 * (docs/ABI.md §3.3 "Metrics").
 */
#include "core/hc.h"

/* Defines the metric `name` of a proxy_metric_type_t; its id to *ret_id. */
u32 pw_hc_define_metric(PW_UNUSED void *c, PW_UNUSED u32 type, PW_UNUSED u32 nptr,
                        PW_UNUSED u32 nlen, PW_UNUSED u32 ret_id) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

/* Adds a signed delta (counters: positive only). */
u32 pw_hc_increment_metric(PW_UNUSED void *c, PW_UNUSED u32 id, PW_UNUSED u64 delta) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

u32 pw_hc_record_metric(PW_UNUSED void *c, PW_UNUSED u32 id, PW_UNUSED u64 value) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

u32 pw_hc_get_metric(PW_UNUSED void *c, PW_UNUSED u32 id, PW_UNUSED u32 ret_value) {
    return PROXY_RESULT_UNIMPLEMENTED;
}
