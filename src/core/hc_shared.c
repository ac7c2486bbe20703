/*
 * hc_shared.c -- shared key/value data: proxy_get_shared_data and
 * proxy_set_shared_data, with compare-and-swap. Not implemented yet: both
 * answer Unimplemented (docs/ABI.md §3.3 "Shared key/value data", §6.4).
 */
#include "core/hc.h"

/* The value of a key (returned as out-bytes) and its CAS token. */
u32 pw_hc_get_shared_data(PW_UNUSED void *c, PW_UNUSED u32 kptr, PW_UNUSED u32 klen,
                          PW_UNUSED u32 ret_ptr, PW_UNUSED u32 ret_size, PW_UNUSED u32 ret_cas) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

/* Sets a key's value if `cas` is 0 or still the key's CAS token. */
u32 pw_hc_set_shared_data(PW_UNUSED void *c, PW_UNUSED u32 kptr, PW_UNUSED u32 klen,
                          PW_UNUSED u32 vptr, PW_UNUSED u32 vlen, PW_UNUSED u32 cas) {
    return PROXY_RESULT_UNIMPLEMENTED;
}
