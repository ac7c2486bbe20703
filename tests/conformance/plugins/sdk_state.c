/*
 * sdk_state.wasm (C SDK, with dispatch): runs each helper of the SDK for
 * state across requests (shared data, queues, tick period, metrics; sdk/c
 * "State across requests and workers") once and logs what it returned, as
 * "NAME -> STATUS[ VALUE]". tests/conformance/sdk_state.yaml checks the
 * lines and the store.
 *
 *   on_configure        pw_register_queue("sdk_q"); pw_define_metric of
 *                       sdk_requests (counter), sdk_level (gauge),
 *                       sdk_latency (histogram), sdk_requests again
 *   on_request_headers  the shared data, queue, metric and tick helpers
 *   on_queue_ready      pw_dequeue until EMPTY
 *   on_tick             "tick N" and pw_set_tick_period(0)
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

static const char *name_of(proxy_status_t st) {
    static const char *const n[] = {
        "Ok",           "NotFound",       "BadArgument",         "SerializationFailure",
        "ParseFailure", "BadExpression",  "InvalidMemoryAccess", "Empty",
        "CasMismatch",  "ResultMismatch", "InternalFailure",     "BrokenConnection",
        "Unimplemented"};
    return (unsigned)st < 13 ? n[st] : "?";
}

static void report(const char *what, proxy_status_t st) {
    pw_logf(PROXY_LOG_INFO, "%s -> %s", what, name_of(st));
}

static void report_u64(const char *what, proxy_status_t st, uint64_t v) {
    pw_logf(PROXY_LOG_INFO, "%s -> %s %lld", what, name_of(st), (long long)v);
}

static void report_bytes(const char *what, proxy_status_t st, char *data, size_t len) {
    pw_logf(PROXY_LOG_INFO, "%s -> %s %s\"%.*s\"", what, name_of(st), data ? "" : "NULL ",
            (int)len, data ? data : "");
    free(data);
}

static uint32_t queue, requests, requests2, level, latency;

static int on_configure(uint32_t root_id, size_t size) {
    (void)root_id;
    (void)size;
    report("register_queue", pw_register_queue("sdk_q", &queue));
    report("define counter", pw_define_metric(PROXY_METRIC_COUNTER, "sdk_requests", &requests));
    report("define gauge", pw_define_metric(PROXY_METRIC_GAUGE, "sdk_level", &level));
    report("define histogram", pw_define_metric(PROXY_METRIC_HISTOGRAM, "sdk_latency", &latency));
    report("define counter again",
           pw_define_metric(PROXY_METRIC_COUNTER, "sdk_requests", &requests2));
    pw_logf(PROXY_LOG_INFO, "same id -> %s", requests == requests2 ? "yes" : "no");
    return 1;
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t n, int eos) {
    (void)ctx;
    (void)n;
    (void)eos;
    uint64_t v = 0;
    uint32_t cas = 0;
    char *data;
    size_t len;
    /* shared data */
    report_u64("u64_add 5", pw_shared_u64_add("n", 5, &v), v);
    report_u64("u64_add 2", pw_shared_u64_add("n", 2, &v), v);
    proxy_status_t st = pw_get_shared_u64("n", &v, &cas);
    pw_logf(PROXY_LOG_INFO, "get_u64 -> %s %llu cas %s", name_of(st), (unsigned long long)v,
            cas ? "set" : "0");
    report("set s", pw_set_shared_data("s", "abc", 3, 0));
    report_bytes("get s", pw_get_shared_data("s", &data, &len, &cas), data, len);
    report_u64("u64_add s", pw_shared_u64_add("s", 1, &v), v);
    report("set s stale", pw_set_shared_data("s", "def", 3, cas + 1000));
    report("remove s stale", pw_remove_shared_data("s", cas + 1000));
    report("remove s", pw_remove_shared_data("s", cas));
    report_bytes("get s", pw_get_shared_data("s", &data, &len, NULL), data, len);
    report("set empty", pw_set_shared_data("e", NULL, 0, 0));
    report_bytes("get empty", pw_get_shared_data("e", &data, &len, NULL), data, len);
    /* queues */
    uint32_t q = 0;
    report("resolve_queue", pw_resolve_queue(NULL, "sdk_q", &q));
    pw_logf(PROXY_LOG_INFO, "same queue -> %s", q == queue ? "yes" : "no");
    report("resolve_queue nope", pw_resolve_queue("", "nope", &q));
    report("enqueue x", pw_enqueue(queue, "x", 1));
    report("enqueue empty", pw_enqueue(queue, NULL, 0));
    report("enqueue 999", pw_enqueue(999, "x", 1));
    /* metrics */
    report("increment counter 3", pw_increment_metric(requests, 3));
    report("increment counter -1", pw_increment_metric(requests, -1));
    report_u64("get counter", pw_get_metric(requests, &v), v);
    report("record gauge 10", pw_record_metric(level, 10));
    report("increment gauge -4", pw_increment_metric(level, -4));
    report_u64("get gauge", pw_get_metric(level, &v), v);
    report("record histogram 5", pw_record_metric(latency, 5));
    report("get histogram", pw_get_metric(latency, &v));
    /* timer (a stream context sets its root's) */
    report("set_tick_period 1000", pw_set_tick_period(1000));
    return PROXY_ACTION_CONTINUE;
}

static void on_queue_ready(uint32_t root_id, uint32_t queue_id) {
    pw_logf(PROXY_LOG_INFO, "queue_ready root %u queue %s", root_id,
            queue_id == queue ? "sdk_q" : "?");
    char *data;
    size_t len;
    proxy_status_t st;
    while ((st = pw_dequeue(queue_id, &data, &len)) == PROXY_RESULT_OK)
        report_bytes("dequeue", st, data, len);
    report("dequeue", st);
}

static void on_tick(uint32_t root_id) {
    static int ticks;
    (void)root_id;
    char what[48];
    pw_snprintf(what, sizeof what, "tick %d, set_tick_period 0", ++ticks);
    report(what, pw_set_tick_period(0));
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_tick = on_tick,
    .on_queue_ready = on_queue_ready,
    .on_request_headers = on_request_headers,
};
