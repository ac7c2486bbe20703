/*
 * callout.c -- a test plugin of HTTP and gRPC call-outs, with the C SDK's
 * dispatch. The request header `x-call` says what on_request_headers does:
 *
 *   http      pw_http_call("svc", GET /auth, :authority auth.test, x-a: 1,
 *             body "ping", timeout 100 ms); Pause
 *   two       the same call twice; Pause (continued by the second answer)
 *   bad       the call without :authority; logs its status; Continue
 *   grpc      pw_grpc_call("svc", "pkg.Svc", "Check", {md: v}, "req",
 *             timeout 100); Pause
 *   stream    pw_grpc_stream("svc", "pkg.Svc", "Chat", {}), then
 *             pw_grpc_send "a", then "b" with end_of_stream; Pause
 *   cancel    pw_grpc_stream, pw_grpc_cancel, then pw_grpc_send and
 *             pw_grpc_cancel on the cancelled token; Continue
 *   close     pw_grpc_call, pw_grpc_close (cancels a unary call); Continue
 *   sendcall  pw_grpc_call, then pw_grpc_send on its token; Continue
 *   trap      the `http` call, then a trap
 *
 * Every hostcall's status and every callback are logged at info as
 * "<what> ..." lines (the test reads the log). An HTTP answer: logs its
 * :status, body, trailer x-t and pw_get_status; a failed one (no headers)
 * answers 504 locally, else the request goes on with x-auth: <status>.
 * gRPC: logs metadata, messages and the close (status, message), and
 * continues the request at the close. on_tick makes the `http` call from
 * the root context.
 */
#include <stdlib.h>

#include "proxy_wasm.h"

static void call_http(int with_authority) {
    pw_pair_t h[] = {pw_pair(":method", "GET"), pw_pair(":path", "/auth"), pw_pair("x-a", "1"),
                     pw_pair(":authority", "auth.test")};
    uint32_t token;
    proxy_status_t st = pw_http_call("svc", h, with_authority ? 4 : 3, "ping", 4, 100, &token);
    pw_logf(PROXY_LOG_INFO, "http_call %d token=%u", st, token);
}

static void log_status(const char *what) {
    uint32_t code;
    char *msg;
    size_t len;
    proxy_status_t st = pw_get_status(&code, &msg, &len);
    pw_logf(PROXY_LOG_INFO, "%s status %d code=%u msg=%.*s", what, st, code, (int)len,
            msg ? msg : "");
    free(msg);
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t n, int eos) {
    (void)ctx, (void)n, (void)eos;
    char *what = NULL;
    size_t len;
    if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-call", &what, &len) != PROXY_RESULT_OK)
        return PROXY_ACTION_CONTINUE;
    proxy_action_t a = PROXY_ACTION_PAUSE;
    uint32_t token = 0;
    proxy_status_t st;
    pw_pair_t md[] = {pw_pair("md", "v")};
    if (!strcmp(what, "http")) {
        call_http(1);
    } else if (!strcmp(what, "two")) {
        call_http(1);
        call_http(1);
    } else if (!strcmp(what, "bad")) {
        call_http(0);
        a = PROXY_ACTION_CONTINUE;
    } else if (!strcmp(what, "grpc")) {
        st = pw_grpc_call("svc", "pkg.Svc", "Check", md, 1, "req", 3, 100, &token);
        pw_logf(PROXY_LOG_INFO, "grpc_call %d token=%u", st, token);
    } else if (!strcmp(what, "stream")) {
        st = pw_grpc_stream("svc", "pkg.Svc", "Chat", NULL, 0, &token);
        pw_logf(PROXY_LOG_INFO, "grpc_stream %d token=%u", st, token);
        pw_logf(PROXY_LOG_INFO, "grpc_send %d", pw_grpc_send(token, "a", 1, 0));
        pw_logf(PROXY_LOG_INFO, "grpc_send %d", pw_grpc_send(token, "b", 1, 1));
    } else if (!strcmp(what, "cancel")) {
        st = pw_grpc_stream("svc", "pkg.Svc", "Chat", NULL, 0, &token);
        pw_logf(PROXY_LOG_INFO, "grpc_cancel %d", pw_grpc_cancel(token));
        pw_logf(PROXY_LOG_INFO, "after cancel: send %d cancel %d",
                pw_grpc_send(token, "a", 1, 0), pw_grpc_cancel(token));
        a = PROXY_ACTION_CONTINUE;
    } else if (!strcmp(what, "close")) {
        st = pw_grpc_call("svc", "pkg.Svc", "Check", NULL, 0, "req", 3, 0, &token);
        pw_logf(PROXY_LOG_INFO, "grpc_close %d", pw_grpc_close(token));
        a = PROXY_ACTION_CONTINUE;
    } else if (!strcmp(what, "trap")) {
        call_http(1);
        __builtin_trap();
    } else if (!strcmp(what, "sendcall")) {
        st = pw_grpc_call("svc", "pkg.Svc", "Check", NULL, 0, "req", 3, 0, &token);
        pw_logf(PROXY_LOG_INFO, "send on a call %d", pw_grpc_send(token, "a", 1, 0));
        a = PROXY_ACTION_CONTINUE;
    }
    free(what);
    return a;
}

static void on_http_call_response(uint32_t ctx, uint32_t token, size_t nh, size_t body,
                                  size_t nt) {
    pw_logf(PROXY_LOG_INFO, "response ctx=%u token=%u headers=%zu body=%zu trailers=%zu", ctx,
            token, nh, body, nt);
    log_status("response");
    if (!nh) {
        pw_send_local_response(504, "callout failed\n", 15, NULL, 0);
        return;
    }
    char *status = NULL, *data = NULL, *t = NULL;
    size_t len, blen, tlen;
    pw_get_header(PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS, ":status", &status, &len);
    pw_get_buffer(PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY, 0, (uint32_t)body, &data, &blen);
    proxy_status_t tst = pw_get_header(PROXY_MAP_HTTP_CALL_RESPONSE_TRAILERS, "x-t", &t, &tlen);
    pw_logf(PROXY_LOG_INFO, "answer status=%s body=%.*s trailer=%d:%s", status ? status : "",
            (int)blen, data ? data : "", tst, t ? t : "");
    if (ctx != pw_get_root_id(ctx)) {
        pw_add_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-auth", status ? status : "");
        pw_logf(PROXY_LOG_INFO, "continue %d", pw_continue_request());
    }
    free(status);
    free(data);
    free(t);
}

static void on_grpc_initial_metadata(uint32_t ctx, uint32_t token, size_t n) {
    pw_pairs_t md = {0};
    pw_get_headers(PROXY_MAP_GRPC_RECEIVE_INITIAL_METADATA, &md);
    pw_logf(PROXY_LOG_INFO, "grpc initial ctx=%u token=%u n=%zu first=%s", ctx, token, n,
            md.count ? md.pairs[0].key : "");
    pw_pairs_free(&md);
}

static void on_grpc_receive(uint32_t ctx, uint32_t token, size_t size) {
    (void)ctx;
    char *msg = NULL;
    size_t len;
    pw_get_buffer(PROXY_BUFFER_GRPC_RECEIVE_BUFFER, 0, (uint32_t)size, &msg, &len);
    pw_logf(PROXY_LOG_INFO, "grpc message token=%u %.*s", token, (int)len, msg ? msg : "");
    free(msg);
}

static void on_grpc_trailing_metadata(uint32_t ctx, uint32_t token, size_t n) {
    (void)ctx;
    char *v = NULL;
    size_t len;
    pw_get_header(PROXY_MAP_GRPC_RECEIVE_TRAILING_METADATA, "t", &v, &len);
    pw_logf(PROXY_LOG_INFO, "grpc trailing token=%u n=%zu t=%s", token, n, v ? v : "");
    free(v);
}

static void on_grpc_close(uint32_t ctx, uint32_t token, uint32_t status) {
    pw_logf(PROXY_LOG_INFO, "grpc close token=%u status=%u", token, status);
    log_status("grpc close");
    if (ctx != pw_get_root_id(ctx))
        pw_continue_request();
}

static int on_vm_start(uint32_t root_id, size_t size) {
    (void)root_id, (void)size;
    return 1;
}

static void on_tick(uint32_t root_id) {
    (void)root_id;
    call_http(1);
}

const pw_plugin_t pw_plugin = {
    .on_vm_start = on_vm_start,
    .on_tick = on_tick,
    .on_request_headers = on_request_headers,
    .on_http_call_response = on_http_call_response,
    .on_grpc_initial_metadata = on_grpc_initial_metadata,
    .on_grpc_receive = on_grpc_receive,
    .on_grpc_trailing_metadata = on_grpc_trailing_metadata,
    .on_grpc_close = on_grpc_close,
};
