/*
 * test_callout.c -- HTTP and gRPC call-outs through the core
 * (hc_callouts.c) with tests/plugins/callout.c: what the embedder's hooks
 * receive, the answers delivered to the caller's root context with the
 * caller made effective, the maps, buffers and proxy_get_status of each
 * answer, cancellation (stream ending, grpc_cancel, close of a unary call),
 * and the statuses the SDKs accept.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "memhost.h"

#define S(lit) ((pw_str){lit, sizeof(lit) - 1})

/* What the hooks saw. */
static struct {
    char log[4096];
    size_t len;
    uint32_t last_token;
    proxy_status_t answer;      /* what http_call / grpc_call return */
    int deliver_inside;         /* try a delivery from inside the hook */
    int inside_rc;
    pw_vm *vm;
} co;

static void co_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void co_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(co.log + co.len, sizeof co.log - co.len, fmt, ap);
    va_end(ap);
    if (n > 0 && co.len + (size_t)n < sizeof co.log)
        co.len += (size_t)n;
}

static const char *header(const pw_kv *kv, size_t n, const char *name) {
    static char buf[256];
    for (size_t i = 0; i < n; i++)
        if (kv[i].key.len == strlen(name) && !memcmp(kv[i].key.data, name, kv[i].key.len)) {
            snprintf(buf, sizeof buf, "%.*s", (int)kv[i].value.len, kv[i].value.data);
            return buf;
        }
    return "-";
}

static proxy_status_t co_http_call(void *host, pw_plugin *plugin, uint32_t token,
                                   const pw_http_callout *c) {
    (void)host;
    co_log("http %s %u %.*s %.*s %.*s %.*s x-a=%s body=%.*s timeout=%u;", pw_plugin_name(plugin),
           token, (int)c->upstream.len, c->upstream.data, (int)c->method.len, c->method.data,
           (int)c->path.len, c->path.data, (int)c->authority.len, c->authority.data,
           header(c->headers, c->nheaders, "x-a"), (int)c->body.len, c->body.data, c->timeout_ms);
    co.last_token = token;
    if (co.deliver_inside)
        co.inside_rc = pw_vm_http_call_response(co.vm, token, NULL, S("inside"));
    return co.answer;
}

static proxy_status_t co_grpc_call(void *host, pw_plugin *plugin, uint32_t token,
                                   const pw_grpc_callout *c) {
    (void)host, (void)plugin;
    co_log("grpc %u %s %.*s /%.*s/%.*s md=%s msg=%.*s timeout=%u;", token,
           c->stream ? "stream" : "call", (int)c->upstream.len, c->upstream.data,
           (int)c->service.len, c->service.data, (int)c->method.len, c->method.data,
           header(c->metadata, c->nmetadata, "md"), (int)c->message.len, c->message.data,
           c->timeout_ms);
    co.last_token = token;
    return co.answer;
}

static proxy_status_t co_grpc_send(void *host, uint32_t token, pw_str msg, int eos) {
    (void)host;
    co_log("send %u %.*s eos=%d;", token, (int)msg.len, msg.data, eos);
    return PROXY_RESULT_OK;
}

static proxy_status_t co_grpc_close(void *host, uint32_t token) {
    (void)host;
    co_log("halfclose %u;", token);
    return PROXY_RESULT_OK;
}

static void co_cancel(void *host, uint32_t token) {
    (void)host;
    co_log("cancel %u;", token);
}

static const pw_host_callout_ops co_ops = {
    .http_call = co_http_call,
    .grpc_call = co_grpc_call,
    .grpc_send = co_grpc_send,
    .grpc_close = co_grpc_close,
    .cancel = co_cancel,
};

static pw_runtime *crt;
static mh_host host;
static pw_vm *vm;
static pw_plugin *plugin;
static char err[PW_ERRLEN];

/* A stream whose request headers carry x-call: what; its
 * on_request_headers result in *a. */
static pw_stream *start(mh_stream *ms, const char *what, pw_action *a) {
    mh_stream_init(ms);
    mh_add(&ms->req, ":path", "/");
    mh_add(&ms->req, "x-call", what);
    pw_stream *s = NULL;
    CHECK(pw_stream_new(plugin, ms, &s, err, sizeof err) == PW_OK);
    if (s)
        *a = pw_stream_call(s, PW_ON_REQUEST_HEADERS, ms->req.n, 1);
    return s;
}

static void reset_logs(void) {
    co.len = 0;
    co.log[0] = 0;
    host.log_len = 0;
    host.log[0] = 0;
}

static char *fmt(const char *f, unsigned a) {
    static char buf[256];
    snprintf(buf, sizeof buf, f, a);
    return buf;
}

TEST(callout_http_pause_answer_continue) {
    reset_logs();
    mh_stream ms;
    pw_action a;
    pw_stream *s = start(&ms, "http", &a);
    CHECK(a == PW_ACTION_PAUSE);
    uint32_t t = co.last_token;
    CHECK(t != 0);
    CHECK_STR(co.log, fmt("http callout %u svc GET /auth auth.test x-a=1 body=ping timeout=100;", t));
    CHECK_CONTAINS(host.log, fmt("http_call 0 token=%u", t));
    CHECK(pw_vm_callouts(vm) == 1);

    pw_kv hdrs[] = {{S(":status"), S("200")}, {S("x-user"), S("ann")}};
    pw_kv trl[] = {{S("x-t"), S("1")}};
    pw_http_response resp = {hdrs, 2, S("ok"), trl, 1};
    CHECK(pw_vm_http_call_response(vm, t, &resp, S("")) == PW_OK);
    /* to the root, the stream made effective by the SDK */
    CHECK_CONTAINS(host.log, fmt("token=%u headers=2 body=2 trailers=1", t));
    CHECK_CONTAINS(host.log, "response status 0 code=0 msg=\n");
    CHECK_CONTAINS(host.log, "answer status=200 body=ok trailer=0:1");
    CHECK_CONTAINS(host.log, "continue 0");
    CHECK_STR(mh_get(&ms.req, "x-auth"), "200");
    /* the continue came from outside the stream's own callback: announced */
    CHECK_STR(ms.events, "wake ");
    CHECK(pw_stream_take(s, PW_PENDING_CONTINUE_REQUEST) == PW_PENDING_CONTINUE_REQUEST);
    CHECK(pw_vm_callouts(vm) == 0);
    CHECK(pw_stream_callouts(s) == 0);
    /* the token is spent: a second answer is dropped */
    size_t before = host.log_len;
    CHECK(pw_vm_http_call_response(vm, t, &resp, S("")) == PW_OK);
    CHECK(host.log_len == before);
    pw_stream_free(s);
}

TEST(callout_http_failure_and_refusals) {
    reset_logs();
    mh_stream ms;
    pw_action a;
    pw_stream *s = start(&ms, "http", &a);
    uint32_t t = co.last_token;
    CHECK(pw_vm_http_call_response(vm, t, NULL, S("timeout")) == PW_OK);
    CHECK_CONTAINS(host.log, fmt("token=%u headers=0 body=0 trailers=0", t));
    CHECK_CONTAINS(host.log, "response status 0 code=11 msg=timeout");
    CHECK(pw_stream_pending(s) & PW_PENDING_LOCAL_RESPONSE);
    const pw_local_response *lr = pw_stream_local_response(s);
    CHECK(lr && lr->status == 504);
    pw_stream_free(s);

    /* no :authority: BadArgument, nothing reaches the embedder */
    reset_logs();
    s = start(&ms, "bad", &a);
    CHECK(a == PW_ACTION_CONTINUE);
    CHECK_CONTAINS(host.log, "http_call 2 token=0");
    CHECK_STR(co.log, "");
    pw_stream_free(s);

    /* the embedder refuses the upstream: BadArgument; any other refusal is
     * InternalFailure (the SDKs accept no other status) */
    co.answer = PROXY_RESULT_BAD_ARGUMENT;
    reset_logs();
    s = start(&ms, "http", &a);
    CHECK_CONTAINS(host.log, "http_call 2 token=0");
    pw_stream_free(s);
    co.answer = PROXY_RESULT_NOT_FOUND;
    reset_logs();
    s = start(&ms, "http", &a);
    CHECK_CONTAINS(host.log, "http_call 10 token=0");
    pw_stream_free(s);
    co.answer = PROXY_RESULT_OK;
    CHECK(pw_vm_callouts(vm) == 0);

    /* an answer from inside a plugin call is refused */
    reset_logs();
    co.deliver_inside = 1;
    s = start(&ms, "http", &a);
    co.deliver_inside = 0;
    CHECK(co.inside_rc == PW_EINVAL);
    CHECK(pw_vm_callouts(vm) == 1);
    pw_stream_free(s);
}

TEST(callout_cancelled_with_its_stream) {
    reset_logs();
    mh_stream ms;
    pw_action a;
    pw_stream *s = start(&ms, "two", &a);
    CHECK(pw_vm_callouts(vm) == 2);
    uint32_t t2 = co.last_token;
    pw_stream_free(s);
    CHECK(pw_vm_callouts(vm) == 0);
    CHECK_CONTAINS(co.log, fmt("cancel %u;", t2));
    size_t before = host.log_len;
    CHECK(pw_vm_http_call_response(vm, t2, NULL, S("late")) == PW_OK);
    CHECK(host.log_len == before); /* never called back */
}

TEST(callout_two_calls_answered_out_of_order) {
    reset_logs();
    mh_stream ms;
    pw_action a;
    pw_stream *s = start(&ms, "two", &a);
    uint32_t t2 = co.last_token, t1 = 0;
    CHECK(sscanf(co.log, "http callout %u", &t1) == 1);
    CHECK(t1 && t2 && t1 != t2);
    pw_kv hdrs[] = {{S(":status"), S("201")}};
    pw_http_response resp = {hdrs, 1, S(""), NULL, 0};
    CHECK(pw_vm_http_call_response(vm, t2, &resp, S("")) == PW_OK);
    CHECK(pw_vm_http_call_response(vm, t1, &resp, S("")) == PW_OK);
    CHECK_CONTAINS(host.log, fmt("token=%u headers=1", t2));
    CHECK_CONTAINS(host.log, fmt("token=%u headers=1", t1));
    CHECK(strstr(host.log, fmt("token=%u headers=1", t2)) <
          strstr(host.log, fmt("token=%u headers=1", t1)));
    pw_stream_free(s);
}

TEST(callout_from_tick) {
    reset_logs();
    CHECK(pw_plugin_on_tick(plugin) == PW_OK);
    uint32_t t = co.last_token;
    CHECK_CONTAINS(co.log, "http callout");
    pw_kv hdrs[] = {{S(":status"), S("204")}};
    pw_http_response resp = {hdrs, 1, S(""), NULL, 0};
    CHECK(pw_vm_http_call_response(vm, t, &resp, S("")) == PW_OK);
    CHECK_CONTAINS(host.log, fmt("ctx=1 token=%u headers=1", t));
    CHECK_CONTAINS(host.log, "answer status=204");
}

TEST(callout_grpc_unary) {
    reset_logs();
    mh_stream ms;
    pw_action a;
    pw_stream *s = start(&ms, "grpc", &a);
    CHECK(a == PW_ACTION_PAUSE);
    uint32_t t = co.last_token;
    CHECK_STR(co.log, fmt("grpc %u call svc /pkg.Svc/Check md=v msg=req timeout=100;", t));
    pw_kv md[] = {{S("a"), S("1")}};
    pw_kv tr[] = {{S("t"), S("x")}};
    pw_grpc_event ev = {.kind = PW_GRPC_INITIAL_METADATA, .metadata = md, .nmetadata = 1};
    CHECK(pw_vm_grpc_event(vm, t, &ev) == PW_OK);
    ev = (pw_grpc_event){.kind = PW_GRPC_MESSAGE, .message = S("resp")};
    CHECK(pw_vm_grpc_event(vm, t, &ev) == PW_OK);
    ev = (pw_grpc_event){.kind = PW_GRPC_TRAILING_METADATA, .metadata = tr, .nmetadata = 1};
    CHECK(pw_vm_grpc_event(vm, t, &ev) == PW_OK);
    ev = (pw_grpc_event){.kind = PW_GRPC_CLOSE, .status = 0};
    CHECK(pw_vm_grpc_event(vm, t, &ev) == PW_OK);
    CHECK_CONTAINS(host.log, fmt("token=%u n=1 first=a", t));
    CHECK_CONTAINS(host.log, fmt("grpc message token=%u resp", t));
    CHECK_CONTAINS(host.log, fmt("grpc trailing token=%u n=1 t=x", t));
    CHECK_CONTAINS(host.log, fmt("grpc close token=%u status=0", t));
    CHECK_CONTAINS(host.log, "grpc close status 0 code=0 msg=\n");
    CHECK(pw_stream_take(s, PW_PENDING_CONTINUE_REQUEST) == PW_PENDING_CONTINUE_REQUEST);
    CHECK(pw_vm_callouts(vm) == 0);
    /* an HTTP answer for a gRPC token is not delivered */
    size_t before = host.log_len;
    CHECK(pw_vm_http_call_response(vm, t, NULL, S("")) == PW_OK);
    CHECK(host.log_len == before);
    pw_stream_free(s);
}

TEST(callout_grpc_stream_send_close_cancel) {
    reset_logs();
    mh_stream ms;
    pw_action a;
    pw_stream *s = start(&ms, "stream", &a);
    uint32_t t = co.last_token;
    CHECK_CONTAINS(co.log, fmt("grpc %u stream svc /pkg.Svc/Chat md=- msg= timeout=0;", t));
    CHECK_CONTAINS(co.log, fmt("send %u a eos=0;", t));
    CHECK_CONTAINS(co.log, fmt("send %u b eos=1;", t));
    CHECK_CONTAINS(host.log, "grpc_send 0");
    pw_grpc_event ev = {.kind = PW_GRPC_CLOSE, .status = 13, .message = S("boom")};
    CHECK(pw_vm_grpc_event(vm, t, &ev) == PW_OK);
    CHECK_CONTAINS(host.log, fmt("grpc close token=%u status=13", t));
    CHECK_CONTAINS(host.log, "grpc close status 0 code=13 msg=boom");
    pw_stream_free(s);

    reset_logs();
    s = start(&ms, "cancel", &a);
    t = co.last_token;
    CHECK_CONTAINS(co.log, fmt("cancel %u;", t));
    CHECK_CONTAINS(host.log, "grpc_cancel 0");
    CHECK_CONTAINS(host.log, "after cancel: send 1 cancel 1"); /* NotFound */
    ev = (pw_grpc_event){.kind = PW_GRPC_MESSAGE, .message = S("late")};
    size_t before = host.log_len;
    CHECK(pw_vm_grpc_event(vm, t, &ev) == PW_OK);
    CHECK(host.log_len == before);
    pw_stream_free(s);

    reset_logs();
    s = start(&ms, "close", &a);
    CHECK_CONTAINS(co.log, fmt("cancel %u;", co.last_token)); /* a unary call: cancelled */
    CHECK_CONTAINS(host.log, "grpc_close 0");
    pw_stream_free(s);

    reset_logs();
    s = start(&ms, "sendcall", &a);
    CHECK_CONTAINS(host.log, "send on a call 2");
    pw_stream_free(s);
    CHECK(pw_vm_callouts(vm) == 0);

    /* an unknown target: ParseFailure, as the SDKs expect */
    co.answer = PROXY_RESULT_PARSE_FAILURE;
    reset_logs();
    s = start(&ms, "grpc", &a);
    CHECK_CONTAINS(host.log, "grpc_call 4 token=0");
    co.answer = PROXY_RESULT_OK;
    pw_stream_free(s);
}

TEST(callout_without_the_area) {
    /* an embedder without callouts: Unimplemented, as before */
    pw_module *m = NULL;
    CHECK(pw_module_load_file(crt, "callout", "build/tests/plugins/callout.wasm", &m, err,
                              sizeof err) == PW_OK);
    mh_host h2 = {.level = PROXY_LOG_TRACE};
    pw_vm *v2 = NULL;
    pw_plugin *p2 = NULL;
    CHECK(pw_vm_new(m, S(""), S(""), &mh_ops, &h2, &v2, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(v2, S("callout"), S(""), S(""), &p2, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_on_tick(p2) == PW_OK);
    CHECK_CONTAINS(h2.log, "http_call 12 token=0");
    /* callouts without cancel: refused */
    pw_host_callout_ops half = {.http_call = co_http_call};
    pw_host_ops ops = mh_ops;
    ops.callouts = &half;
    pw_vm *v3 = NULL;
    CHECK(pw_vm_new(m, S(""), S(""), &ops, &h2, &v3, err, sizeof err) == PW_EINVAL);
    CHECK_CONTAINS(err, "without cancel");
    pw_vm_free(v2);
    pw_module_free(m);
}

TEST(callout_trap_cancels_every_call) {
    reset_logs();
    CHECK(pw_plugin_on_tick(plugin) == PW_OK);
    uint32_t t1 = co.last_token;
    mh_stream ms;
    pw_action a;
    pw_stream *s = start(&ms, "trap", &a);
    uint32_t t2 = co.last_token;
    CHECK(a == PW_ACTION_ERROR && pw_vm_dead(vm));
    /* the instance's calls mean nothing to the next one: all cancelled,
     * the one made by the trapping callback too */
    CHECK(pw_vm_callouts(vm) == 0);
    CHECK_CONTAINS(co.log, fmt("cancel %u;", t1));
    CHECK_CONTAINS(co.log, fmt("cancel %u;", t2));
    CHECK(pw_vm_http_call_response(vm, t1, NULL, S("")) == PW_EDEAD);
    pw_stream_free(s);
    CHECK(pw_vm_recover(vm, err, sizeof err) == PW_OK);
}

void run_callout_tests(void);
void run_callout_tests(void) {
    if (pw_runtime_new(NULL, &crt, err, sizeof err) != PW_OK) {
        printf("runtime: %s\n", err);
        t_failed++;
        return;
    }
    pw_module *m = NULL;
    if (pw_module_load_file(crt, "callout", "build/tests/plugins/callout.wasm", &m, err,
                            sizeof err) != PW_OK) {
        printf("callout.wasm: %s\n", err);
        t_failed++;
        pw_runtime_free(crt);
        return;
    }
    host.level = PROXY_LOG_TRACE;
    pw_host_ops ops = mh_ops;
    ops.callouts = &co_ops;
    if (pw_vm_new(m, S(""), S(""), &ops, &host, &vm, err, sizeof err) != PW_OK ||
        pw_plugin_new(vm, S("callout"), S(""), S(""), &plugin, err, sizeof err) != PW_OK) {
        printf("vm: %s\n", err);
        t_failed++;
    } else {
        co.vm = vm;
        RUN(callout_http_pause_answer_continue);
        RUN(callout_http_failure_and_refusals);
        RUN(callout_cancelled_with_its_stream);
        RUN(callout_two_calls_answered_out_of_order);
        RUN(callout_from_tick);
        RUN(callout_grpc_unary);
        RUN(callout_grpc_stream_send_close_cancel);
        RUN(callout_trap_cancels_every_call);
        /* freeing the VM cancels what is left */
        co.len = 0;
        pw_vm_free(vm);
        CHECK(strstr(co.log, "cancel ") != NULL);
        RUN(callout_without_the_area);
    }
    pw_module_free(m);
    pw_runtime_free(crt);
}
