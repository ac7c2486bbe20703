/*
 * hc_metrics.c -- metrics: counters, gauges and histograms a plugin defines
 * and updates, in the VM's store (store.c; docs/ABI.md §3.3 "Metrics").
 * Without a store every one answers Unimplemented.
 */
#include "core/hc.h"

/* Defines the metric `name` of a proxy_metric_type_t; its id to *ret_id
 * (the same name and type give the same id, in every process). */
u32 pw_hc_define_metric(void *c, u32 type, u32 nptr, u32 nlen, u32 ret_id) {
    pw_str name;
    PW_GUEST_STR(VM, name, nptr, nlen);
    pw_store *st = pw_vm_store(VM);
    if (!st)
        return PROXY_RESULT_UNIMPLEMENTED;
    if (!pw_mem(VM, ret_id, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    uint32_t id;
    proxy_status_t rc = pw_store_metric_define(st, type, name, &id);
    if (rc == PROXY_RESULT_INTERNAL_FAILURE)
        pw_vm_log(VM, PROXY_LOG_ERROR,
                  "proxy_define_metric: no room in the shared memory for metric \"%.*s\"",
                  (int)(name.len > 64 ? 64 : name.len), name.data);
    if (rc == OK)
        pw_mem_put_u32(VM, ret_id, id);
    return rc;
}

/* Adds a signed delta (counters: positive only). */
u32 pw_hc_increment_metric(void *c, u32 id, u64 delta) {
    pw_store *st = pw_vm_store(VM);
    return st ? pw_store_metric_increment(st, id, (int64_t)delta) : PROXY_RESULT_UNIMPLEMENTED;
}

/* A counter adds the value, a gauge takes it, a histogram records it. */
u32 pw_hc_record_metric(void *c, u32 id, u64 value) {
    pw_store *st = pw_vm_store(VM);
    return st ? pw_store_metric_record(st, id, value) : PROXY_RESULT_UNIMPLEMENTED;
}

/* A counter's (summed over processes) or a gauge's value, as a u64. */
u32 pw_hc_get_metric(void *c, u32 id, u32 ret_value) {
    pw_store *st = pw_vm_store(VM);
    if (!st)
        return PROXY_RESULT_UNIMPLEMENTED;
    if (!pw_mem(VM, ret_value, 8))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    int64_t v;
    proxy_status_t rc = pw_store_metric_get(st, id, &v);
    if (rc == OK)
        pw_mem_put_u64(VM, ret_value, (uint64_t)v);
    return rc;
}
