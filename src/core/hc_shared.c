/*
 * hc_shared.c -- shared key/value data: proxy_get_shared_data and
 * proxy_set_shared_data, with compare-and-swap, in the VM's store
 * (store.c; docs/ABI.md §3.3 "Shared key/value data", §6.4). Without a
 * store (pw_host_shared_ops) both answer Unimplemented.
 */
#include <stdlib.h>

#include "core/hc.h"

static pw_str vm_id_of(pw_vm *vm) {
    return (pw_str){vm->vm_id, vm->vm_id_len};
}

/* The value of a key (returned as out-bytes) and its CAS token. */
u32 pw_hc_get_shared_data(void *c, u32 kptr, u32 klen, u32 ret_ptr, u32 ret_size, u32 ret_cas) {
    pw_str key;
    PW_GUEST_STR(VM, key, kptr, klen);
    pw_store *st = pw_vm_store(VM);
    if (!st)
        return PROXY_RESULT_UNIMPLEMENTED;
    if (!pw_mem(VM, ret_cas, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    char small[256], *value;
    size_t len;
    uint32_t cas = 0;
    proxy_status_t rc =
        pw_store_get_into(st, vm_id_of(VM), key, small, sizeof small, &value, &len, &cas);
    if (rc != OK)
        return rc == PROXY_RESULT_NOT_FOUND ? rc : PROXY_RESULT_NOT_FOUND;
    /* the store's lock is released: the plugin's allocator may run */
    rc = pw_out_bytes(VM, value, len, ret_ptr, ret_size);
    if (value != small)
        free(value);
    if (rc == OK && pw_mem_put_u32(VM, ret_cas, cas) != 0)
        rc = PROXY_RESULT_INVALID_MEMORY_ACCESS;
    return rc;
}

/* Sets a key's value if `cas` is 0 or still the key's CAS token; a NULL
 * value pointer deletes the key (the Rust SDK's remove_shared_data). */
u32 pw_hc_set_shared_data(void *c, u32 kptr, u32 klen, u32 vptr, u32 vlen, u32 cas) {
    static const char call[] = "proxy_set_shared_data";
    pw_str key, value = {NULL, 0};
    PW_GUEST_STR(VM, key, kptr, klen);
    if (vptr)
        PW_GUEST_STR(VM, value, vptr, vlen);
    pw_store *st = pw_vm_store(VM);
    if (!st)
        return PROXY_RESULT_UNIMPLEMENTED;
    /* what the plugin hands over counts against its callback's budget;
     * over it, the write did not happen: CasMismatch, the failure the
     * SDKs accept here */
    if (!pw_vm_take(VM, call, (uint64_t)key.len + value.len))
        return PROXY_RESULT_CAS_MISMATCH;
    int refused;
    proxy_status_t rc = pw_store_set(st, vm_id_of(VM), key, value, cas, &refused);
    if (refused == 2)
        pw_host_limit_hit(VM, "shm_quota");
    if (refused && !VM->refusal_logged) {
        VM->refusal_logged = 1;
        pw_vm_log(VM, PROXY_LOG_ERROR,
                  "%s: %s for %zu bytes (key \"%.*s\"); not written (CasMismatch)", call,
                  refused == 2 ? "over the shared memory quota of this vm_id"
                               : "no room in the shared memory",
                  key.len + value.len, (int)(key.len > 64 ? 64 : key.len), key.data);
    }
    return rc;
}
