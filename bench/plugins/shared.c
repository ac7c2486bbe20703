/*
 * shared: the shared store's cost per operation (vmbench store; issue 10's
 * targets). Its plugin configuration picks the work of each
 * on_request_headers:
 *
 *   pairs N     N x (proxy_get_shared_data of the 8-byte counter "bench",
 *               then proxy_set_shared_data of it + 1 with the CAS just read,
 *               again while CasMismatch): the counting plugin's hot path
 *   metric N    N x proxy_increment_metric of one counter
 *
 * The counter's final value is checked by vmbench (every increment must
 * count), so nothing can be skipped.
 */
#include <stdint.h>
#include <stdlib.h>

#include "proxy_wasm.h"

static int metric_mode;
static uint32_t iterations = 1, metric_id;

static int on_configure(uint32_t root_id, size_t size) {
    (void)root_id;
    (void)size;
    char *cfg = NULL;
    size_t len = 0;
    if (pw_get_plugin_config(&cfg, &len) != PROXY_RESULT_OK || !cfg)
        return 1;
    metric_mode = !strncmp(cfg, "metric ", 7);
    const char *n = metric_mode ? cfg + 7 : !strncmp(cfg, "pairs ", 6) ? cfg + 6 : "1";
    iterations = (uint32_t)strtoul(n, NULL, 10);
    free(cfg);
    return proxy_define_metric(PROXY_METRIC_COUNTER, "bench_total", 11, &metric_id) ==
           PROXY_RESULT_OK;
}

static void increment(void) {
    for (;;) {
        char *v = NULL;
        size_t n = 0;
        uint32_t cas = 0;
        uint64_t count = 0;
        if (proxy_get_shared_data("bench", 5, &v, &n, &cas) == PROXY_RESULT_OK && n == 8)
            memcpy(&count, v, 8);
        free(v);
        count++;
        if (proxy_set_shared_data("bench", 5, (const char *)&count, 8, cas) !=
            PROXY_RESULT_CAS_MISMATCH)
            return;
    }
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)ctx;
    (void)nheaders;
    (void)end_of_stream;
    for (uint32_t i = 0; i < iterations; i++) {
        if (metric_mode)
            proxy_increment_metric(metric_id, 1);
        else
            increment();
    }
    return PROXY_ACTION_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_request_headers = on_request_headers,
};
