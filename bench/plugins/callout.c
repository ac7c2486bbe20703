/*
 * callout.c -- the call-out benchmark plugin (bench/nginx/callout.conf.in,
 * docs/PERFORMANCE.md "Call-outs").
 *
 * As a filter (no configuration): on_request_headers calls the upstream
 * block `bench_auth` (GET /auth) and pauses; a 200 answer continues the
 * request, anything else answers 403 locally. The flow of an auth plugin.
 *
 * As a service (configuration "pump N"): at its first tick it starts N
 * calls to `bench_auth`, and each answer starts the next one, for ever;
 * every answer (200 or not) increments the counter bench_callouts_total
 * (200s) or bench_callout_failures_total, which the benchmark reads from
 * the metrics endpoint twice to get call-outs per second per worker.
 */
#include <stdlib.h>

#include "proxy_wasm.h"

static int pump;              /* calls kept in flight; 0: filter */
static uint32_t done_metric, failed_metric;

static const pw_pair_t auth_headers[] = {
    {":method", 7, "GET", 3},
    {":path", 5, "/auth", 5},
    {":authority", 10, "bench", 5},
};

static proxy_status_t call(void) {
    uint32_t token;
    return pw_http_call("bench_auth", auth_headers, 3, NULL, 0, 5000, &token);
}

static int on_configure(uint32_t root_id, size_t size) {
    (void)root_id;
    char *cfg = NULL;
    size_t len;
    if (size && pw_get_plugin_config(&cfg, &len) == PROXY_RESULT_OK && cfg &&
        !strncmp(cfg, "pump ", 5))
        pump = atoi(cfg + 5);
    free(cfg);
    if (pump) {
        pw_define_metric(PROXY_METRIC_COUNTER, "bench_callouts_total", &done_metric);
        pw_define_metric(PROXY_METRIC_COUNTER, "bench_callout_failures_total", &failed_metric);
        pw_set_tick_period(10);
    }
    return 1;
}

static void on_tick(uint32_t root_id) {
    (void)root_id;
    pw_set_tick_period(0); /* once: the answers keep it going */
    for (int i = 0; i < pump; i++)
        if (call() != PROXY_RESULT_OK)
            pw_log(PROXY_LOG_ERROR, "bench: call refused");
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t n, int eos) {
    (void)ctx, (void)n, (void)eos;
    if (call() != PROXY_RESULT_OK) {
        pw_send_local_response(500, "call refused\n", 13, NULL, 0);
        return PROXY_ACTION_PAUSE;
    }
    return PROXY_ACTION_PAUSE;
}

/* the :status of the answer is 200 */
static int answer_ok(size_t nheaders) {
    char *status = NULL;
    size_t len;
    int ok = nheaders &&
             pw_get_header(PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS, ":status", &status, &len) ==
                 PROXY_RESULT_OK &&
             len == 3 && !memcmp(status, "200", 3);
    free(status);
    return ok;
}

static void on_http_call_response(uint32_t ctx, uint32_t token, size_t nheaders,
                                  size_t body_size, size_t ntrailers) {
    (void)token, (void)body_size, (void)ntrailers;
    int ok = answer_ok(nheaders);
    if (pump) {
        pw_increment_metric(ok ? done_metric : failed_metric, 1);
        call();
        return;
    }
    (void)ctx;
    if (ok)
        pw_continue_request();
    else
        pw_send_local_response(403, "denied\n", 7, NULL, 0);
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_tick = on_tick,
    .on_request_headers = on_request_headers,
    .on_http_call_response = on_http_call_response,
};
