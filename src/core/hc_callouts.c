/*
 * hc_callouts.c -- HTTP and gRPC call-outs: proxy_http_call, proxy_grpc_*,
 * proxy_get_status, and later the callbacks that deliver their answers
 * (proxy_on_http_call_response, proxy_on_grpc_*). Not implemented yet:
 * every one answers Unimplemented (docs/ABI.md §3.3 "HTTP callouts", "gRPC
 * callouts", "Status of callouts", §8.9).
 */
#include "core/hc.h"

/* upstream, headers (pairs), body, trailers (pairs), timeout; the call's
 * token to *ret_token. */
u32 pw_hc_http_call(PW_UNUSED void *c, PW_UNUSED u32 uptr, PW_UNUSED u32 ulen, PW_UNUSED u32 hptr,
                    PW_UNUSED u32 hlen, PW_UNUSED u32 bptr, PW_UNUSED u32 blen, PW_UNUSED u32 tptr,
                    PW_UNUSED u32 tlen, PW_UNUSED u32 timeout_ms, PW_UNUSED u32 ret_token) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

/* service, service name, method, initial metadata (pairs), message,
 * timeout; the call's token to *ret_token. */
u32 pw_hc_grpc_call(PW_UNUSED void *c, PW_UNUSED u32 sptr, PW_UNUSED u32 slen, PW_UNUSED u32 snptr,
                    PW_UNUSED u32 snlen, PW_UNUSED u32 mptr, PW_UNUSED u32 mlen,
                    PW_UNUSED u32 hptr, PW_UNUSED u32 hlen, PW_UNUSED u32 msgptr,
                    PW_UNUSED u32 msglen, PW_UNUSED u32 timeout_ms, PW_UNUSED u32 ret_token) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

/* As proxy_grpc_call without a message or timeout: opens a stream. */
u32 pw_hc_grpc_stream(PW_UNUSED void *c, PW_UNUSED u32 sptr, PW_UNUSED u32 slen,
                      PW_UNUSED u32 snptr, PW_UNUSED u32 snlen, PW_UNUSED u32 mptr,
                      PW_UNUSED u32 mlen, PW_UNUSED u32 hptr, PW_UNUSED u32 hlen,
                      PW_UNUSED u32 ret_token) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

u32 pw_hc_grpc_send(PW_UNUSED void *c, PW_UNUSED u32 token, PW_UNUSED u32 ptr, PW_UNUSED u32 len,
                    PW_UNUSED u32 end_stream) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

u32 pw_hc_grpc_cancel(PW_UNUSED void *c, PW_UNUSED u32 token) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

u32 pw_hc_grpc_close(PW_UNUSED void *c, PW_UNUSED u32 token) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

/* The status code and message of the call-out being answered. */
u32 pw_hc_get_status(PW_UNUSED void *c, PW_UNUSED u32 ret_code, PW_UNUSED u32 ret_ptr,
                     PW_UNUSED u32 ret_size) {
    return PROXY_RESULT_UNIMPLEMENTED;
}
