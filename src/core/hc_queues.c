/*
 * hc_queues.c -- shared queues: register, resolve, enqueue, dequeue, in the
 * VM's store (store.c; docs/ABI.md §3.3 "Shared queues", §6.5); the
 * proxy_on_queue_ready deliveries are pw_vm_deliver_queues (vm.c). Without
 * a store every one answers Unimplemented.
 */
#include <stdlib.h>

#include "core/hc.h"

/* Registers the queue `name` of this VM for the current plugin's root
 * context; its id to *ret_id. */
u32 pw_hc_register_shared_queue(void *c, u32 nptr, u32 nlen, u32 ret_id) {
    pw_str name;
    PW_GUEST_STR(VM, name, nptr, nlen);
    pw_store *st = pw_vm_store(VM);
    if (!st)
        return PROXY_RESULT_UNIMPLEMENTED;
    pw_ctx *ctx = pw_vm_ctx(VM);
    if (!ctx || !ctx->plugin)
        return PROXY_RESULT_NOT_FOUND; /* no root context to deliver to */
    if (!pw_mem(VM, ret_id, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    uint32_t id;
    pw_plugin *p = ctx->plugin;
    proxy_status_t rc = pw_store_queue_register(st, (pw_str){VM->vm_id, VM->vm_id_len}, name,
                                                (pw_str){p->root_id, p->root_id_len},
                                                VM->queue_owner, &id);
    if (rc != OK) {
        pw_vm_log(VM, PROXY_LOG_ERROR,
                  "proxy_register_shared_queue: no room in the shared memory for queue \"%.*s\"",
                  (int)(name.len > 64 ? 64 : name.len), name.data);
        return rc;
    }
    pw_mem_put_u32(VM, ret_id, id);
    return OK;
}

/* The id of the queue `name` registered by VM `vm_id` (empty: this
 * VM's). */
u32 pw_hc_resolve_shared_queue(void *c, u32 vptr, u32 vlen, u32 nptr, u32 nlen, u32 ret_id) {
    pw_str vm_id, name;
    PW_GUEST_STR(VM, vm_id, vptr, vlen);
    PW_GUEST_STR(VM, name, nptr, nlen);
    pw_store *st = pw_vm_store(VM);
    if (!st)
        return PROXY_RESULT_UNIMPLEMENTED;
    if (!pw_mem(VM, ret_id, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    if (!vm_id.len)
        vm_id = (pw_str){VM->vm_id, VM->vm_id_len};
    uint32_t id;
    proxy_status_t rc = pw_store_queue_resolve(st, vm_id, name, &id);
    if (rc == OK)
        pw_mem_put_u32(VM, ret_id, id);
    return rc;
}

/* Appends an item; the registering process is woken. Ok or NotFound: an
 * item that does not fit is dropped (counted, logged), still Ok. */
u32 pw_hc_enqueue_shared_queue(void *c, u32 id, u32 ptr, u32 len) {
    static const char call[] = "proxy_enqueue_shared_queue";
    pw_str value;
    PW_GUEST_STR(VM, value, ptr, len);
    pw_store *st = pw_vm_store(VM);
    if (!st)
        return PROXY_RESULT_UNIMPLEMENTED;
    if (!pw_vm_take(VM, call, value.len))
        return PROXY_RESULT_NOT_FOUND; /* over the budget: not queued */
    uint32_t owner;
    uint64_t dropped;
    proxy_status_t rc = pw_store_queue_enqueue(st, id, value, &owner, &dropped);
    if (rc != OK)
        return rc;
    if (dropped && !VM->refusal_logged) {
        VM->refusal_logged = 1;
        pw_vm_log(VM, PROXY_LOG_WARN,
                  "%s: the shared memory is full: %llu item(s) of queue %u dropped", call,
                  (unsigned long long)dropped, id);
    }
    if (VM->hooks.shared->queue_ready)
        VM->hooks.shared->queue_ready(VM->host, owner);
    return OK;
}

/* The oldest item of the queue, as out-bytes; Empty when there is none. */
u32 pw_hc_dequeue_shared_queue(void *c, u32 id, u32 ret_ptr, u32 ret_size) {
    pw_store *st = pw_vm_store(VM);
    if (!st)
        return PROXY_RESULT_UNIMPLEMENTED;
    char *value;
    size_t len;
    proxy_status_t rc = pw_store_queue_dequeue(st, id, &value, &len);
    if (rc == PROXY_RESULT_INTERNAL_FAILURE)
        rc = PROXY_RESULT_EMPTY; /* no host memory: leave it queued */
    if (rc != OK)
        return rc;
    rc = pw_out_bytes(VM, value, len, ret_ptr, ret_size);
    free(value);
    return rc;
}
