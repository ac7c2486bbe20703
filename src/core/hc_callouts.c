/*
 * hc_callouts.c -- HTTP and gRPC call-outs: the hostcalls proxy_http_call,
 * proxy_grpc_call / _stream / _send / _close / _cancel and
 * proxy_get_status; the VM's table of outstanding calls; and the delivery
 * of their answers (pw_vm_http_call_response, pw_vm_grpc_event) to
 * proxy_on_http_call_response and proxy_on_grpc_* on the caller's root
 * context, with the call-out maps and buffers readable meanwhile
 * (docs/ABI.md §3.3 "HTTP callouts", "gRPC callouts", "Status of
 * callouts", §8.9).
 */
#include <stdlib.h>

#include "core/hc.h"

/* Envoy's WasmResult BrokenConnection, what proxy_get_status answers after
 * a failed HTTP call. */
#define PW_STATUS_BROKEN_CONNECTION 11u

/* ------------------------------------------------------------- the table */

static pw_call *call_find(pw_vm *vm, uint32_t token) {
    for (uint32_t i = 0; i < vm->ncalls; i++)
        if (vm->calls[i].token == token)
            return &vm->calls[i];
    return NULL;
}

static void call_remove(pw_vm *vm, pw_call *c) {
    *c = vm->calls[--vm->ncalls];
}

/* A token no outstanding call of the VM has, never 0. */
static uint32_t token_new(pw_vm *vm) {
    for (;;) {
        uint32_t t = ++vm->next_token;
        if (t && !call_find(vm, t))
            return t;
    }
}

/* Room for one more call; 0, or -1 (no memory, or the VM has
 * lim.max_callouts outstanding: refused, logged and counted). */
static int calls_reserve(pw_vm *vm, const char *call) {
    if (vm->ncalls >= vm->lim.max_callouts && vm->lim.max_callouts != UINT32_MAX) {
        pw_host_limit_hit(vm, "callouts");
        pw_vm_refuse(vm, "%s: %u call-outs of this VM outstanding (limit %u): InternalFailure",
                     call, vm->ncalls, vm->lim.max_callouts);
        return -1;
    }
    if (vm->ncalls < vm->calls_cap)
        return 0;
    uint32_t cap = vm->calls_cap ? vm->calls_cap * 2 : 16;
    pw_call *n = realloc(vm->calls, cap * sizeof *n);
    if (!n)
        return -1;
    vm->calls = n;
    vm->calls_cap = cap;
    return 0;
}

void pw_callouts_cancel(pw_vm *vm, uint32_t owner) {
    uint32_t i = 0;
    while (i < vm->ncalls) {
        pw_call *c = &vm->calls[i];
        if (owner && c->owner != owner) {
            i++;
            continue;
        }
        uint32_t token = c->token;
        call_remove(vm, c);
        if (vm->hooks.callouts->cancel)
            vm->hooks.callouts->cancel(vm->host, token);
    }
    if (!vm->ncalls && vm->calls_cap > 1024) {
        free(vm->calls); /* a burst is over: do not keep its table */
        vm->calls = NULL;
        vm->calls_cap = 0;
    }
}

size_t pw_vm_callouts(const pw_vm *vm) {
    return vm->ncalls;
}

size_t pw_stream_callouts(const pw_stream *s) {
    if (!s || !s->plugin || !s->plugin->vm)
        return 0;
    const pw_vm *vm = s->plugin->vm;
    size_t n = 0;
    for (uint32_t i = 0; i < vm->ncalls; i++)
        if (vm->calls[i].owner == s->ctx.id)
            n++;
    return n;
}

/* Records the call the embedder accepted; its token to the plugin. */
static proxy_status_t call_started(pw_vm *vm, pw_ctx *ctx, enum pw_call_kind kind,
                                   uint32_t token, u32 ret_token) {
    vm->calls[vm->ncalls++] = (pw_call){
        .token = token, .owner = ctx->id, .plugin = ctx->plugin, .kind = (uint8_t)kind};
    pw_mem_put_u32(vm, ret_token, token); /* checked before the call */
    return OK;
}

/* The context a call belongs to: the current one, with a plugin. */
static pw_ctx *caller(pw_vm *vm) {
    pw_ctx *ctx = pw_vm_ctx(vm);
    return ctx && ctx->plugin ? ctx : NULL;
}

/* The value of pseudo-header `name` among pairs, or 0. */
static int pseudo(const pw_kv *pairs, size_t n, const char *name, size_t len, pw_str *out) {
    for (size_t i = 0; i < n; i++)
        if (pairs[i].key.len == len && !memcmp(pairs[i].key.data, name, len)) {
            *out = pairs[i].value;
            return 1;
        }
    return 0;
}

/* --------------------------------------------------------------- HTTP */

/* upstream, headers (pairs), body, trailers (pairs), timeout; the call's
 * token to *ret_token. §3.3: BadArgument without :method, :path and
 * :authority, with a negative timeout, or when the embedder refuses the
 * upstream; InternalFailure when it cannot start the call. */
u32 pw_hc_http_call(void *c, u32 uptr, u32 ulen, u32 hptr, u32 hlen, u32 bptr, u32 blen,
                    u32 tptr, u32 tlen, u32 timeout_ms, u32 ret_token) {
    static const char call[] = "proxy_http_call";
    pw_vm *vm = VM;
    if (!vm->hooks.callouts->http_call)
        return PROXY_RESULT_UNIMPLEMENTED;
    pw_http_callout hc = {.timeout_ms = timeout_ms};
    PW_GUEST_STR(vm, hc.upstream, uptr, ulen);
    PW_GUEST_STR(vm, hc.body, bptr, blen);
    if (!pw_mem(vm, ret_token, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    pw_ctx *ctx = caller(vm);
    if (!ctx)
        return PROXY_RESULT_INTERNAL_FAILURE; /* no context to answer */
    if (timeout_ms > INT32_MAX)
        return pw_vm_refuse(vm, "%s: negative timeout (%d ms)", call, (int32_t)timeout_ms);
    pw_kv *headers = NULL, *trailers = NULL;
    size_t nh = 0, nt = 0;
    proxy_status_t st = pw_parse_pairs(vm, hptr, hlen, &headers, &nh);
    if (st != OK)
        return st;
    if ((st = pw_parse_pairs(vm, tptr, tlen, &trailers, &nt)) != OK)
        goto out;
    pw_str scheme = {"", 0};
    if (!pseudo(headers, nh, ":method", 7, &hc.method) || !hc.method.len ||
        !pseudo(headers, nh, ":path", 5, &hc.path) || !hc.path.len ||
        !pseudo(headers, nh, ":authority", 10, &hc.authority) || !hc.authority.len) {
        st = pw_vm_refuse(vm, "%s: the headers need :method, :path and :authority", call);
        goto out;
    }
    pseudo(headers, nh, ":scheme", 7, &scheme);
    hc.scheme = scheme;
    hc.headers = headers;
    hc.nheaders = nh;
    hc.trailers = trailers;
    hc.ntrailers = nt;
    if ((st = pw_hc_pairs_ok(vm, call, PW_HC_LOCAL_RESPONSE_MAP, headers, nh)) != OK ||
        (st = pw_hc_pairs_ok(vm, call, PW_HC_LOCAL_RESPONSE_MAP, trailers, nt)) != OK ||
        (st = pw_hc_charge(vm, call, hc.body.len)) != OK)
        goto out;
    if (calls_reserve(vm, call) != 0) {
        st = PROXY_RESULT_INTERNAL_FAILURE;
        goto out;
    }
    uint32_t token = token_new(vm);
    st = vm->hooks.callouts->http_call(vm->host, ctx->plugin, token, &hc);
    if (st == OK)
        st = call_started(vm, ctx, PW_CALL_HTTP, token, ret_token);
    else if (st != PROXY_RESULT_BAD_ARGUMENT)
        st = PROXY_RESULT_INTERNAL_FAILURE; /* the SDKs accept no other */
out:
    free(headers);
    free(trailers);
    return st;
}

/* --------------------------------------------------------------- gRPC */

static u32 grpc_start(pw_vm *vm, u32 sptr, u32 slen, u32 snptr, u32 snlen, u32 mptr, u32 mlen,
                      u32 hptr, u32 hlen, u32 msgptr, u32 msglen, u32 timeout_ms, int stream,
                      u32 ret_token) {
    const char *call = stream ? "proxy_grpc_stream" : "proxy_grpc_call";
    if (!vm->hooks.callouts->grpc_call)
        return PROXY_RESULT_UNIMPLEMENTED;
    pw_grpc_callout gc = {.timeout_ms = timeout_ms, .stream = stream};
    PW_GUEST_STR(vm, gc.upstream, sptr, slen);
    PW_GUEST_STR(vm, gc.service, snptr, snlen);
    PW_GUEST_STR(vm, gc.method, mptr, mlen);
    PW_GUEST_STR(vm, gc.message, msgptr, msglen);
    if (!pw_mem(vm, ret_token, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    pw_ctx *ctx = caller(vm);
    if (!ctx)
        return PROXY_RESULT_INTERNAL_FAILURE;
    pw_kv *md = NULL;
    size_t n = 0;
    proxy_status_t st = pw_parse_pairs(vm, hptr, hlen, &md, &n);
    if (st == PROXY_RESULT_BAD_ARGUMENT) /* malformed: the SDKs accept no BadArgument */
        return pw_vm_refuse(vm, "%s: malformed initial metadata", call),
               PROXY_RESULT_PARSE_FAILURE;
    if (st != OK)
        return st;
    gc.metadata = md;
    gc.nmetadata = n;
    if (!gc.service.len || !gc.method.len) {
        pw_vm_refuse(vm, "%s: empty service or method name", call);
        st = PROXY_RESULT_PARSE_FAILURE;
    } else if (pw_hc_pairs_ok(vm, call, PW_HC_LOCAL_RESPONSE_MAP, md, n) != OK ||
               pw_hc_charge(vm, call, gc.message.len) != OK) {
        st = PROXY_RESULT_INTERNAL_FAILURE; /* over a limit (logged) */
    } else if (calls_reserve(vm, call) != 0) {
        st = PROXY_RESULT_INTERNAL_FAILURE;
    } else {
        uint32_t token = token_new(vm);
        st = vm->hooks.callouts->grpc_call(vm->host, ctx->plugin, token, &gc);
        if (st == OK)
            st = call_started(vm, ctx, stream ? PW_CALL_GRPC_STREAM : PW_CALL_GRPC, token,
                              ret_token);
        else if (st != PROXY_RESULT_PARSE_FAILURE)
            st = PROXY_RESULT_INTERNAL_FAILURE;
    }
    free(md);
    return st;
}

/* service, service name, method, initial metadata (pairs), message,
 * timeout; the call's token to *ret_token. */
u32 pw_hc_grpc_call(void *c, u32 sptr, u32 slen, u32 snptr, u32 snlen, u32 mptr, u32 mlen,
                    u32 hptr, u32 hlen, u32 msgptr, u32 msglen, u32 timeout_ms, u32 ret_token) {
    return grpc_start(VM, sptr, slen, snptr, snlen, mptr, mlen, hptr, hlen, msgptr, msglen,
                      timeout_ms, 0, ret_token);
}

/* As proxy_grpc_call without a message or timeout: opens a stream. */
u32 pw_hc_grpc_stream(void *c, u32 sptr, u32 slen, u32 snptr, u32 snlen, u32 mptr, u32 mlen,
                      u32 hptr, u32 hlen, u32 ret_token) {
    return grpc_start(VM, sptr, slen, snptr, snlen, mptr, mlen, hptr, hlen, 0, 0, 0, 1,
                      ret_token);
}

/* A message on an open stream: NotFound for an unknown token,
 * BadArgument for a unary call's. */
u32 pw_hc_grpc_send(void *c, u32 token, u32 ptr, u32 len, u32 end_stream) {
    pw_vm *vm = VM;
    pw_str msg;
    if (!vm->hooks.callouts->grpc_call)
        return PROXY_RESULT_UNIMPLEMENTED;
    PW_GUEST_STR(vm, msg, ptr, len);
    pw_call *call = call_find(vm, token);
    if (!call || call->kind == PW_CALL_HTTP)
        return PROXY_RESULT_NOT_FOUND;
    if (call->kind != PW_CALL_GRPC_STREAM || !vm->hooks.callouts->grpc_send)
        return PROXY_RESULT_BAD_ARGUMENT;
    proxy_status_t st = pw_hc_charge(vm, "proxy_grpc_send", len);
    if (st != OK)
        return st;
    return vm->hooks.callouts->grpc_send(vm->host, token, msg, end_stream != 0);
}

/* Ends call `token` without an answer. */
static void call_cancel(pw_vm *vm, pw_call *call) {
    uint32_t token = call->token;
    call_remove(vm, call);
    if (vm->hooks.callouts->cancel)
        vm->hooks.callouts->cancel(vm->host, token);
}

/* Envoy: cancel resets the call or stream; no callback follows. */
u32 pw_hc_grpc_cancel(void *c, u32 token) {
    pw_vm *vm = VM;
    if (!vm->hooks.callouts->grpc_call)
        return PROXY_RESULT_UNIMPLEMENTED;
    pw_call *call = call_find(vm, token);
    if (!call || call->kind == PW_CALL_HTTP)
        return PROXY_RESULT_NOT_FOUND;
    call_cancel(vm, call);
    return OK;
}

/* Envoy: close half-closes a stream (its answers go on until
 * on_grpc_close), and cancels a unary call. */
u32 pw_hc_grpc_close(void *c, u32 token) {
    pw_vm *vm = VM;
    if (!vm->hooks.callouts->grpc_call)
        return PROXY_RESULT_UNIMPLEMENTED;
    pw_call *call = call_find(vm, token);
    if (!call || call->kind == PW_CALL_HTTP)
        return PROXY_RESULT_NOT_FOUND;
    if (call->kind == PW_CALL_GRPC || !vm->hooks.callouts->grpc_close) {
        call_cancel(vm, call);
        return OK;
    }
    return vm->hooks.callouts->grpc_close(vm->host, token);
}

/* The status of the answer being delivered: a gRPC close's status and
 * message, 11 (BrokenConnection) and the reason after a failed HTTP call,
 * else 0 and "". */
u32 pw_hc_get_status(void *c, u32 ret_code, u32 ret_ptr, u32 ret_size) {
    pw_vm *vm = VM;
    if (!pw_mem(vm, ret_code, 4))
        return PROXY_RESULT_INVALID_MEMORY_ACCESS;
    uint32_t code = vm->dlv.kind ? vm->dlv.status : 0;
    pw_str msg = vm->dlv.kind ? vm->dlv.status_message : (pw_str){NULL, 0};
    proxy_status_t st = pw_out_bytes(vm, msg.data, msg.len, ret_ptr, ret_size);
    if (st == OK)
        pw_mem_put_u32(vm, ret_code, code);
    return st;
}

/* ------------------------------------------- what the callbacks read */

proxy_status_t pw_callout_map(pw_vm *vm, uint32_t map, const pw_kv **pairs, size_t *n) {
    const pw_delivery *d = &vm->dlv;
    if (d->kind == PW_CALL_HTTP && d->http) {
        if (map == PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS) {
            *pairs = d->http->headers;
            *n = d->http->nheaders;
            return OK;
        }
        if (map == PROXY_MAP_HTTP_CALL_RESPONSE_TRAILERS) {
            *pairs = d->http->trailers;
            *n = d->http->ntrailers;
            return OK;
        }
    } else if (d->grpc && ((map == PROXY_MAP_GRPC_RECEIVE_INITIAL_METADATA &&
                            d->grpc->kind == PW_GRPC_INITIAL_METADATA) ||
                           (map == PROXY_MAP_GRPC_RECEIVE_TRAILING_METADATA &&
                            d->grpc->kind == PW_GRPC_TRAILING_METADATA))) {
        *pairs = d->grpc->metadata;
        *n = d->grpc->nmetadata;
        return OK;
    }
    return PROXY_RESULT_NOT_FOUND;
}

proxy_status_t pw_callout_buffer(pw_vm *vm, uint32_t type, pw_str *out) {
    const pw_delivery *d = &vm->dlv;
    if (type == PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY && d->kind == PW_CALL_HTTP && d->http) {
        *out = d->http->body;
        return OK;
    }
    if (type == PROXY_BUFFER_GRPC_RECEIVE_BUFFER && d->grpc && d->grpc->kind == PW_GRPC_MESSAGE) {
        *out = d->grpc->message;
        return OK;
    }
    return PROXY_RESULT_NOT_FOUND;
}

/* ------------------------------------------------------------ delivery */

/* Calls callback cb(root, token, a, b, c) of the plugin that made `call`,
 * with `d` readable meanwhile. The call is spent when `last`. */
static int deliver(pw_vm *vm, pw_call *call, int last, enum pw_cb cb, const pw_delivery *d,
                   uint32_t a, uint32_t b, uint32_t n3) {
    pw_plugin *p = call->plugin;
    uint32_t token = call->token;
    if (last)
        call_remove(vm, call);
    if (!p->started)
        return PW_OK; /* the plugin is not running (cannot happen while calls are
                         cancelled with their VM's instance) */
    uint32_t args[5] = {p->ctx.id, token, a, b, n3};
    vm->dlv = *d;
    int rc = pw_vm_callback(vm, &p->ctx, cb, args, NULL);
    vm->dlv = (pw_delivery){0};
    return rc < 0 ? PW_ETRAP : PW_OK;
}

static uint32_t count32(size_t n) {
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* The outstanding call `token` of kind test, or NULL; PW_EINVAL/PW_EDEAD
 * to *rc when nothing may be delivered. */
static pw_call *deliverable(pw_vm *vm, uint32_t token, int grpc, int *rc) {
    *rc = PW_OK;
    if (vm->depth || vm->dlv.kind) {
        *rc = PW_EINVAL; /* from inside a plugin call */
        return NULL;
    }
    if (vm->dead) {
        *rc = PW_EDEAD;
        return NULL;
    }
    pw_call *call = call_find(vm, token);
    if (!call || (call->kind == PW_CALL_HTTP) == grpc)
        return NULL;
    return call;
}

int pw_vm_http_call_response(pw_vm *vm, uint32_t token, const pw_http_response *resp,
                             pw_str reason) {
    int rc;
    pw_call *call = deliverable(vm, token, 0, &rc);
    if (!call)
        return rc;
    pw_delivery d = {.kind = PW_CALL_HTTP, .http = resp};
    if (!resp) {
        d.status = PW_STATUS_BROKEN_CONNECTION;
        d.status_message = reason;
        return deliver(vm, call, 1, PW_CB_ON_HTTP_CALL_RESPONSE, &d, 0, 0, 0);
    }
    return deliver(vm, call, 1, PW_CB_ON_HTTP_CALL_RESPONSE, &d, count32(resp->nheaders),
                   count32(resp->body.len), count32(resp->ntrailers));
}

int pw_vm_grpc_event(pw_vm *vm, uint32_t token, const pw_grpc_event *ev) {
    int rc;
    pw_call *call = deliverable(vm, token, 1, &rc);
    if (!call)
        return rc;
    pw_delivery d = {.kind = call->kind, .grpc = ev};
    switch (ev->kind) {
    case PW_GRPC_INITIAL_METADATA:
        return deliver(vm, call, 0, PW_CB_ON_GRPC_RECEIVE_INITIAL_METADATA, &d,
                       count32(ev->nmetadata), 0, 0);
    case PW_GRPC_MESSAGE:
        return deliver(vm, call, 0, PW_CB_ON_GRPC_RECEIVE, &d, count32(ev->message.len), 0, 0);
    case PW_GRPC_TRAILING_METADATA:
        return deliver(vm, call, 0, PW_CB_ON_GRPC_RECEIVE_TRAILING_METADATA, &d,
                       count32(ev->nmetadata), 0, 0);
    case PW_GRPC_CLOSE:
        d.status = ev->status;
        d.status_message = ev->message;
        return deliver(vm, call, 1, PW_CB_ON_GRPC_CLOSE, &d, ev->status, 0, 0);
    }
    return PW_EINVAL;
}
