/*
 * tcp.c -- a test plugin of TCP stream contexts (network filters) with the
 * C SDK's dispatch. Every callback logs "<callback> ctx=<id> ..." at info.
 *
 *   on_new_connection   Pause when the plugin configuration is "hold",
 *                       else Continue; tries proxy_continue_stream(0) (an
 *                       HTTP direction: BadArgument) and logs its status
 *   on_downstream_data  holds (Pause) until the bytes held end with "\n",
 *                       then replaces them all with their upper case and
 *                       continues; bytes starting "close" close the
 *                       downstream instead
 *   on_upstream_data    prepends "<" to each chunk
 *   on_*_close          log the peer type
 *   on_done, on_log     log (the order is the test's)
 */
#include <stdlib.h>

#include "proxy_wasm.h"

static int hold;

static int on_configure(uint32_t root_id, size_t size) {
    (void)root_id;
    char *cfg = NULL;
    size_t len;
    if (size && pw_get_plugin_config(&cfg, &len) == PROXY_RESULT_OK && cfg)
        hold = !strcmp(cfg, "hold");
    free(cfg);
    return 1;
}

static proxy_action_t on_new_connection(uint32_t ctx) {
    pw_logf(PROXY_LOG_INFO, "on_new_connection ctx=%u http_continue=%d", ctx,
            proxy_continue_stream(PROXY_STREAM_HTTP_REQUEST));
    return hold ? PROXY_ACTION_PAUSE : PROXY_ACTION_CONTINUE;
}

static proxy_action_t on_downstream_data(uint32_t ctx, size_t size, int eos) {
    char *data = NULL;
    size_t len = 0;
    pw_get_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, 0, (uint32_t)size, &data, &len);
    pw_logf(PROXY_LOG_INFO, "on_downstream_data ctx=%u size=%zu eos=%d data=%.*s", ctx, size,
            eos, (int)len, data ? data : "");
    proxy_action_t a = PROXY_ACTION_CONTINUE;
    if (len >= 5 && !memcmp(data, "close", 5)) {
        pw_logf(PROXY_LOG_INFO, "close %d", pw_close_stream(PROXY_STREAM_DOWNSTREAM));
    } else if (!len || data[len - 1] != '\n') {
        a = eos ? PROXY_ACTION_CONTINUE : PROXY_ACTION_PAUSE;
    } else {
        for (size_t i = 0; i < len; i++)
            if (data[i] >= 'a' && data[i] <= 'z')
                data[i] = (char)(data[i] - 'a' + 'A');
        pw_replace_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, data, len);
    }
    free(data);
    return a;
}

static proxy_action_t on_upstream_data(uint32_t ctx, size_t size, int eos) {
    pw_logf(PROXY_LOG_INFO, "on_upstream_data ctx=%u size=%zu eos=%d", ctx, size, eos);
    pw_prepend_buffer(PROXY_BUFFER_UPSTREAM_DATA, "<", 1);
    return PROXY_ACTION_CONTINUE;
}

static void on_downstream_close(uint32_t ctx, proxy_peer_type_t peer) {
    pw_logf(PROXY_LOG_INFO, "on_downstream_close ctx=%u peer=%d", ctx, (int)peer);
}

static void on_upstream_close(uint32_t ctx, proxy_peer_type_t peer) {
    pw_logf(PROXY_LOG_INFO, "on_upstream_close ctx=%u peer=%d", ctx, (int)peer);
}

static int on_done(uint32_t ctx) {
    pw_logf(PROXY_LOG_INFO, "on_done ctx=%u", ctx);
    return 1;
}

static void on_log(uint32_t ctx) {
    pw_logf(PROXY_LOG_INFO, "on_log ctx=%u", ctx);
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_new_connection = on_new_connection,
    .on_downstream_data = on_downstream_data,
    .on_upstream_data = on_upstream_data,
    .on_downstream_close = on_downstream_close,
    .on_upstream_close = on_upstream_close,
    .on_done = on_done,
    .on_log = on_log,
};
