/*
 * tcp_auth.c -- a network filter that asks an HTTP service whether a
 * connection may go on: HTTP callouts from stream plugins (nginx stream
 * tests; C SDK dispatch).
 *
 * The plugin configuration is the call's target (default "auth_service":
 * an upstream{} block of http{}, or a host:port that stream{}'s
 * proxy_wasm_callout_allow allows). on_new_connection calls it (GET
 * /check?client=<source.address>, :authority auth.test, 5 s timeout) and
 * pauses: the client's bytes wait. The answer 200 continues the connection
 * (proxy_continue_stream(Downstream)); another status or a failed call
 * closes it (proxy_close_stream); a refused call closes it at once.
 *
 * Log lines (INFO): "tcp_auth: ctx=<id> call <status>", "tcp_auth:
 * ctx=<id> status <s>: continue|close", "tcp_auth: ctx=<id> failed:
 * <reason>: close".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

static char target[256] = "auth_service";

static int on_configure(uint32_t root_id, size_t size) {
    char *cfg = NULL;
    size_t len = 0;
    (void)root_id;
    if (size && pw_get_plugin_config(&cfg, &len) == PROXY_RESULT_OK && cfg && len &&
        len < sizeof target) {
        memcpy(target, cfg, len);
        target[len] = '\0';
    }
    free(cfg);
    return 1;
}

static proxy_action_t on_new_connection(uint32_t ctx) {
    char *addr = NULL, path[320];
    size_t alen = 0;
    uint32_t token = 0;
    pw_get_property(PW_PATH("source", "address"), &addr, &alen);
    snprintf(path, sizeof path, "/check?client=%.*s", (int)alen, addr ? addr : "");
    free(addr);
    pw_pair_t headers[] = {
        pw_pair(":method", "GET"),
        pw_pair(":path", path),
        pw_pair(":authority", "auth.test"),
    };
    proxy_status_t st = pw_http_call(target, headers, 3, NULL, 0, 5000, &token);
    pw_logf(PROXY_LOG_INFO, "tcp_auth: ctx=%u call %d", ctx, (int)st);
    if (st != PROXY_RESULT_OK) {
        pw_close_stream(PROXY_STREAM_DOWNSTREAM);
        return PROXY_ACTION_CONTINUE;
    }
    return PROXY_ACTION_PAUSE;
}

static void on_http_call_response(uint32_t ctx, uint32_t token, size_t nheaders, size_t body_size,
                                  size_t ntrailers) {
    (void)token;
    (void)body_size;
    (void)ntrailers;
    if (nheaders == 0) {
        uint32_t code = 0;
        char *msg = NULL;
        size_t mlen = 0;
        pw_get_status(&code, &msg, &mlen);
        pw_logf(PROXY_LOG_INFO, "tcp_auth: ctx=%u failed: %.*s: close", ctx, (int)mlen,
                msg ? msg : "");
        free(msg);
        pw_close_stream(PROXY_STREAM_DOWNSTREAM);
        return;
    }
    char *status = NULL;
    size_t slen = 0;
    pw_get_header(PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS, ":status", &status, &slen);
    int ok = slen == 3 && status && !memcmp(status, "200", 3);
    pw_logf(PROXY_LOG_INFO, "tcp_auth: ctx=%u status %.*s: %s", ctx, (int)slen,
            status ? status : "", ok ? "continue" : "close");
    free(status);
    if (ok)
        pw_continue_stream(PROXY_STREAM_DOWNSTREAM);
    else
        pw_close_stream(PROXY_STREAM_DOWNSTREAM);
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_new_connection = on_new_connection,
    .on_http_call_response = on_http_call_response,
};
