/*
 * token_refresh: a credential renewed on a timer, published in shared data
 * and announced on a shared queue, added by request filters to every
 * request that goes upstream.
 *
 * Two plugins of this module on the same vm_id. Plugin configuration:
 *
 *   refresher [PERIOD_MS]  on_configure asks for a tick every PERIOD_MS
 *                          (default 1000). Each tick renews the token once
 *                          per period for all workers: every worker ticks,
 *                          the one whose compare-and-swap of the key
 *                          "token_period" (the period's number) wins makes
 *                          the new token ("tok-N", N counting renewals in
 *                          "token_generation"; a real plugin would fetch
 *                          one with an HTTP call-out), stores it under
 *                          "token", counts it in the metric
 *                          token_refresh_renewals_total and enqueues it on
 *                          the queue "token_events".
 *   filter                 on_configure registers the queue "token_events"
 *                          and logs each token it announces
 *                          (on_queue_ready; with several workers only the
 *                          last to register hears them). Every request gets
 *                          `authorization: Bearer TOKEN` from shared data,
 *                          or a local 503 while there is no token yet.
 *
 * Anything else makes on_configure fail with a log line why.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

#define QUEUE "token_events"

/* Per root context. */
struct config {
    int refresher;
    uint32_t period_ms;
    uint32_t metric; /* refresher: token_refresh_renewals_total */
};

static proxy_status_t put_u64(const char *key, uint64_t v, uint32_t cas) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return pw_set_shared_data(key, (const char *)b, 8, cas);
}

static const char *parse(char *text, struct config *c) {
    char *role = pw_trim(text), *arg = role;
    while (*arg && *arg != ' ' && *arg != '\t')
        arg++;
    if (*arg)
        *arg++ = '\0';
    arg = pw_trim(arg);
    if (!strcmp(role, "filter") && !*arg)
        return NULL;
    if (strcmp(role, "refresher"))
        return "expected `refresher [PERIOD_MS]` or `filter`";
    c->refresher = 1;
    c->period_ms = 1000;
    if (*arg) {
        char *end;
        unsigned long ms = strtoul(arg, &end, 10);
        if (*end || ms == 0 || ms > 86400000)
            return "PERIOD_MS: expected 1 to 86400000";
        c->period_ms = (uint32_t)ms;
    }
    return NULL;
}

static int on_configure(uint32_t root_id, size_t size) {
    (void)size;
    char *text = NULL;
    size_t len = 0;
    pw_get_plugin_config(&text, &len);
    struct config *c = calloc(1, sizeof *c);
    const char *why = !c ? "out of memory" : text && strlen(text) != len ? "a NUL byte" : NULL;
    if (!why)
        why = parse(text ? text : (char[1]){0}, c);
    free(text);
    if (!why && c->refresher) {
        pw_define_metric(PROXY_METRIC_COUNTER, "token_refresh_renewals_total", &c->metric);
        if (pw_set_tick_period(c->period_ms) != PROXY_RESULT_OK)
            why = "the host has no timers";
    } else if (!why) {
        uint32_t q;
        if (pw_register_queue(QUEUE, &q) != PROXY_RESULT_OK)
            why = "the host has no shared queues";
    }
    if (why) {
        pw_logf(PROXY_LOG_ERROR, "token_refresh: %s", why);
        free(c);
        return 0;
    }
    pw_set_context_data(root_id, c);
    return 1;
}

static void on_root_delete(uint32_t root_id) {
    free(pw_get_context_data(root_id));
}

/* Renews the token if no worker has in this period. */
static void on_tick(uint32_t root_id) {
    struct config *c = pw_get_context_data(root_id);
    uint64_t now_ns, last;
    uint32_t cas;
    if (!c || pw_get_current_time_ns(&now_ns) != PROXY_RESULT_OK)
        return;
    uint64_t period = now_ns / ((uint64_t)c->period_ms * 1000000u);
    proxy_status_t st = pw_get_shared_u64("token_period", &last, &cas);
    if (st == PROXY_RESULT_NOT_FOUND)
        last = 0, cas = 0;
    else if (st != PROXY_RESULT_OK || period <= last)
        return; /* renewed in this period already */
    if (put_u64("token_period", period, cas) != PROXY_RESULT_OK)
        return; /* another worker won this period */
    uint64_t n = 0;
    if (pw_shared_u64_add("token_generation", 1, &n) != PROXY_RESULT_OK)
        return;
    char token[32];
    int tlen = pw_snprintf(token, sizeof token, "tok-%llu", (unsigned long long)n);
    if (pw_set_shared_data("token", token, (size_t)tlen, 0) != PROXY_RESULT_OK) {
        pw_log(PROXY_LOG_ERROR, "token_refresh: cannot store the token");
        return;
    }
    pw_increment_metric(c->metric, 1);
    uint32_t q;
    if (pw_resolve_queue(NULL, QUEUE, &q) == PROXY_RESULT_OK)
        pw_enqueue(q, token, (size_t)tlen);
    pw_logf(PROXY_LOG_INFO, "token_refresh: renewed: %s", token);
}

static void on_queue_ready(uint32_t root_id, uint32_t queue_id) {
    char *item;
    size_t len;
    while (pw_dequeue(queue_id, &item, &len) == PROXY_RESULT_OK) {
        pw_logf(PROXY_LOG_INFO, "token_refresh: root %u heard of %.*s", root_id, (int)len,
                item ? item : "");
        free(item);
    }
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int eos) {
    (void)nheaders;
    (void)eos;
    struct config *c = pw_get_context_data(pw_get_root_id(ctx));
    if (!c || c->refresher)
        return PROXY_ACTION_CONTINUE;
    char *token;
    size_t len;
    if (pw_get_shared_data("token", &token, &len, NULL) != PROXY_RESULT_OK || !token) {
        pw_pair_t h[] = {pw_pair("retry-after", "1")};
        pw_send_local_response(503, "no token yet\n", 13, h, 1);
        return PROXY_ACTION_PAUSE;
    }
    char header[64];
    pw_snprintf(header, sizeof header, "Bearer %.*s", (int)(len < 48 ? len : 48), token);
    free(token);
    pw_replace_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "authorization", header);
    return PROXY_ACTION_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_root_delete = on_root_delete,
    .on_tick = on_tick,
    .on_queue_ready = on_queue_ready,
    .on_request_headers = on_request_headers,
};
