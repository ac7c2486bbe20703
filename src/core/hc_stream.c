/*
 * hc_stream.c -- the stream and its contexts: continue and close,
 * proxy_send_local_response, proxy_set_effective_context and proxy_done
 * (docs/ABI.md §3.3 "Stream control", "Local responses", "Contexts").
 */
#include <stdlib.h>

#include "core/hc.h"

/* §3.3: continue / close the current stream. Queued on the stream
 * (pw_stream_queue): the callback's result applies it, or the embedder
 * takes it later (§8.10). An HTTP stream has the directions request (0)
 * and response (1), a TCP stream downstream (2) and upstream (3); the
 * other kind's are BadArgument, as is any other value. Closing either side
 * of a TCP stream ends the connection. */
static u32 stream_control(pw_vm *vm, u32 type, int close) {
    if (type > PROXY_STREAM_TYPE_MAX)
        return PROXY_RESULT_BAD_ARGUMENT;
    pw_ctx *ctx = pw_vm_ctx(vm);
    pw_stream *s = ctx ? ctx->stream : NULL;
    if (!s || !s->host_stream)
        return PROXY_RESULT_NOT_FOUND;
    if ((type > PROXY_STREAM_HTTP_RESPONSE) != (s->tcp != 0))
        return PROXY_RESULT_BAD_ARGUMENT;
    static const unsigned cont[] = {PW_PENDING_CONTINUE_REQUEST, PW_PENDING_CONTINUE_RESPONSE,
                                    PW_PENDING_CONTINUE_DOWNSTREAM, PW_PENDING_CONTINUE_UPSTREAM};
    pw_stream_queue(s, close ? PW_PENDING_CLOSE : cont[type]);
    return OK;
}

u32 pw_hc_continue_stream(void *c, u32 type) {
    return stream_control(VM, type, 0);
}

u32 pw_hc_close_stream(void *c, u32 type) {
    return stream_control(VM, type, 1);
}

/* 0.1.0's names for continuing either direction. */
u32 pw_hc_continue_request(void *c) {
    return stream_control(VM, PROXY_STREAM_HTTP_REQUEST, 0);
}

u32 pw_hc_continue_response(void *c) {
    return stream_control(VM, PROXY_STREAM_HTTP_RESPONSE, 0);
}

/* 0.1.0: writing :path already makes nginx choose the location again. Not
 * implemented: Unimplemented. */
u32 pw_hc_clear_route_cache(PW_UNUSED void *c) {
    return PROXY_RESULT_UNIMPLEMENTED;
}

/* ------------------------------------------------------ local response */

u32 pw_hc_send_local_response(void *c, u32 status, u32 dptr, u32 dlen, u32 bptr, u32 blen,
                              u32 hptr, u32 hlen, u32 grpc) {
    static const char call[] = "proxy_send_local_response";
    pw_str details, body;
    PW_GUEST_STR(VM, details, dptr, dlen);
    PW_GUEST_STR(VM, body, bptr, blen);
    pw_kv *hdrs;
    size_t n;
    proxy_status_t st = pw_parse_pairs(VM, hptr, hlen, &hdrs, &n);
    if (st != OK)
        return st;
    pw_ctx *ctx = pw_vm_ctx(VM);
    pw_stream *s = ctx ? ctx->stream : NULL;
    if (!s) {
        free(hdrs);
        return PROXY_RESULT_NOT_FOUND;
    }
    /* 200..599 only: a 1xx is interim (nginx would send it, then the body
     * as a second response); 204 and 304 have no body. */
    if (!pw_hc_status_ok(status))
        st = pw_vm_refuse(VM, "%s: status %u (200..599 only)", call, status);
    else if ((status == 204 || status == 304) && body.len)
        st = pw_vm_refuse(VM, "%s: status %u with a body", call, status);
    else if (!pw_header_value_ok(details))
        st = pw_vm_refuse(VM, "%s: status details with CR, LF or NUL", call);
    else if ((st = pw_hc_pairs_ok(VM, call, PW_HC_LOCAL_RESPONSE_MAP, hdrs, n)) == OK)
        st = pw_hc_charge(VM, call, (uint64_t)details.len + body.len);
    if (st != OK) {
        free(hdrs);
        return st;
    }
    /* Copy everything into the stream's buffer: the headers array, then
     * the strings. It is applied by the embedder after the callback. */
    size_t need = n * sizeof(pw_kv) + details.len + body.len;
    for (size_t i = 0; i < n; i++)
        need += hdrs[i].key.len + hdrs[i].value.len;
    if (need > s->lr_cap || !s->lr_buf) {
        /* At least one byte: the strings' pointers are made from it even
         * when everything is empty (no arithmetic on NULL). */
        size_t cap = need ? need : 1;
        char *b = realloc(s->lr_buf, cap);
        if (!b) {
            free(hdrs);
            return PROXY_RESULT_INTERNAL_FAILURE;
        }
        s->lr_buf = b;
        s->lr_cap = cap;
    }
    pw_kv *out = (pw_kv *)(void *)s->lr_buf;
    char *p = s->lr_buf + n * sizeof(pw_kv);
#define COPY(dst, src)                                                                            \
    do {                                                                                          \
        if ((src).len)                                                                            \
            memcpy(p, (src).data, (src).len);                                                     \
        (dst).data = p;                                                                           \
        (dst).len = (src).len;                                                                    \
        p += (src).len;                                                                           \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        COPY(out[i].key, hdrs[i].key);
        COPY(out[i].value, hdrs[i].value);
    }
    COPY(s->lr.details, details);
    COPY(s->lr.body, body);
#undef COPY
    free(hdrs);
    s->lr.headers = out;
    s->lr.nheaders = n;
    s->lr.status = status;
    s->lr.grpc_status = (int32_t)grpc;
    s->has_local_response = 1;
    /* Asked for a stream none of whose callbacks runs: no callback result
     * will say it, the pending bit does (§8.8, §8.10). */
    if (!s->in_cb)
        pw_stream_queue(s, PW_PENDING_LOCAL_RESPONSE);
    return OK;
}

/* ------------------------------------------------------------ contexts */

u32 pw_hc_set_effective_context(void *c, u32 id) {
    pw_ctx *ctx = pw_ctx_lookup(VM, id);
    if (!ctx)
        return PROXY_RESULT_BAD_ARGUMENT;
    VM->eff = ctx;
    return OK;
}

/* §8.4: no root context ever waits for proxy_done in this version. */
u32 pw_hc_done(PW_UNUSED void *c) {
    return PROXY_RESULT_NOT_FOUND;
}
