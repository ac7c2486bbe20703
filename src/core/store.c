/*
 * store.c -- the shared store: shared data, shared queues and metrics in
 * memory the embedder provides (pw_store in pwasm.h). Not implemented yet:
 * pw_store_open fails.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"

int pw_store_open(const pw_store_mem *mem, const pw_store_config *cfg, void *root,
                  pw_store **out, char *err, size_t errlen) {
    (void)mem;
    (void)cfg;
    (void)root;
    *out = NULL;
    if (err && errlen)
        snprintf(err, errlen, "the shared store is not implemented yet");
    return PW_EINVAL;
}

void *pw_store_root(const pw_store *st) {
    (void)st;
    return NULL;
}

void pw_store_set_slot(pw_store *st, uint32_t slot) {
    (void)st;
    (void)slot;
}

void pw_store_close(pw_store *st) {
    (void)st;
}

void pw_store_stats_get(pw_store *st, pw_store_stats *out) {
    (void)st;
    memset(out, 0, sizeof *out);
}

proxy_status_t pw_store_get(pw_store *st, pw_str vm_id, pw_str key, char **value, size_t *len,
                            uint32_t *cas) {
    (void)st, (void)vm_id, (void)key, (void)value, (void)len, (void)cas;
    return PROXY_RESULT_NOT_FOUND;
}

proxy_status_t pw_store_set(pw_store *st, pw_str vm_id, pw_str key, pw_str value, uint32_t cas,
                            int *refused) {
    (void)st, (void)vm_id, (void)key, (void)value, (void)cas, (void)refused;
    return PROXY_RESULT_CAS_MISMATCH;
}

proxy_status_t pw_store_metric(pw_store *st, pw_str name, uint32_t type, int64_t *value) {
    (void)st, (void)name, (void)type, (void)value;
    return PROXY_RESULT_NOT_FOUND;
}

int pw_store_prometheus(pw_store *st, void (*write)(void *data, const char *p, size_t n),
                        void *data) {
    (void)st, (void)write, (void)data;
    return PW_OK;
}

int pw_plugin_on_tick(pw_plugin *p) {
    (void)p;
    return PW_OK;
}

int pw_vm_deliver_queues(pw_vm *vm) {
    (void)vm;
    return 0;
}
