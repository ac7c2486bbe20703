/*
 * hc_foreign.c -- foreign functions: proxy_call_foreign_function, the
 * host's own extensions called by name. Not implemented yet: Unimplemented
 * (docs/ABI.md §3.3 "Foreign functions", §6.6).
 */
#include "core/hc.h"

/* Calls the host function `name` with `args`; its results as out-bytes. */
u32 pw_hc_call_foreign_function(PW_UNUSED void *c, PW_UNUSED u32 nptr, PW_UNUSED u32 nlen,
                                PW_UNUSED u32 aptr, PW_UNUSED u32 alen, PW_UNUSED u32 ret_ptr,
                                PW_UNUSED u32 ret_size) {
    return PROXY_RESULT_UNIMPLEMENTED;
}
