/*
 * queue: the latency from an enqueue in a request to proxy_on_queue_ready
 * (bench/run.py, part "queue"; issue 10's target: p99 <= 1 ms between
 * workers).
 *
 * Every worker's root context registers the queue "lat" when it starts (the
 * last to register receives). Each request enqueues its worker's pid and
 * the time (proxy_get_current_time_nanoseconds); on_queue_ready dequeues
 * every item and logs `queue_latency_ns=N from=PID`, which the bench reads
 * beside the receiving worker's pid in the log line.
 */
#include <stdint.h>
#include <stdlib.h>

#include "proxy_wasm.h"

static uint32_t queue_id;

static int on_vm_start(uint32_t root_id, size_t size) {
    (void)root_id;
    (void)size;
    return proxy_register_shared_queue("lat", 3, &queue_id) == PROXY_RESULT_OK;
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)ctx;
    (void)nheaders;
    (void)end_of_stream;
    char *pid = NULL;
    size_t n = 0;
    char item[64];
    uint64_t now = 0;
    pw_get_property(PW_PATH("ngx", "pid"), &pid, &n);
    proxy_get_current_time_nanoseconds(&now);
    int len = pw_snprintf(item, sizeof item, "%llu %.*s", (unsigned long long)now, (int)n,
                          pid ? pid : "");
    free(pid);
    proxy_enqueue_shared_queue(queue_id, item, (size_t)len);
    return PROXY_ACTION_CONTINUE;
}

static void on_queue_ready(uint32_t root_id, uint32_t id) {
    (void)root_id;
    for (;;) {
        char *item = NULL;
        size_t n = 0;
        if (proxy_dequeue_shared_queue(id, &item, &n) != PROXY_RESULT_OK)
            return;
        uint64_t now = 0, then = strtoull(item ? item : "0", NULL, 10);
        const char *from = item ? memchr(item, ' ', n) : NULL;
        proxy_get_current_time_nanoseconds(&now);
        pw_logf(PROXY_LOG_INFO, "queue_latency_ns=%llu from=%.*s",
                (unsigned long long)(now - then), from ? (int)(n - (size_t)(from + 1 - item)) : 0,
                from ? from + 1 : "");
        free(item);
    }
}

const pw_plugin_t pw_plugin = {
    .on_vm_start = on_vm_start,
    .on_request_headers = on_request_headers,
    .on_queue_ready = on_queue_ready,
};
