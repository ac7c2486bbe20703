/*
 * hc_queues.c -- shared queues: register, resolve, enqueue, dequeue, and
 * later the proxy_on_queue_ready callbacks. Not implemented yet: every one
 * answers Unimplemented (docs/ABI.md §3.3 "Shared queues", §6.5).
 */
#include "core/hc.h"

/* Registers the queue `name` of this VM; its id to *ret_id. */
u32 pw_hc_register_shared_queue(PW_UNUSED void *c, PW_UNUSED u32 nptr, PW_UNUSED u32 nlen,
                                PW_UNUSED u32 ret_id) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

/* The id of the queue `name` registered by VM `vm_id`. */
u32 pw_hc_resolve_shared_queue(PW_UNUSED void *c, PW_UNUSED u32 vptr, PW_UNUSED u32 vlen,
                               PW_UNUSED u32 nptr, PW_UNUSED u32 nlen, PW_UNUSED u32 ret_id) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

u32 pw_hc_enqueue_shared_queue(PW_UNUSED void *c, PW_UNUSED u32 id, PW_UNUSED u32 ptr,
                               PW_UNUSED u32 len) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

/* The oldest item of the queue, as out-bytes; Empty when there is none. */
u32 pw_hc_dequeue_shared_queue(PW_UNUSED void *c, PW_UNUSED u32 id, PW_UNUSED u32 ret_ptr,
                               PW_UNUSED u32 ret_size) {
    return PROXY_RESULT_UNIMPLEMENTED;
}
