/*
 * tcp_read.c -- the TCP benchmark's reading network filter
 * (bench/nginx/stream.conf.in): every chunk of both directions is copied
 * into the plugin (proxy_get_buffer_bytes), and its length and first byte
 * looked at, as a protocol filter that reads each message's header would;
 * the bytes pass unchanged. What it costs the host to hand every byte to a
 * plugin (a filter that also loops over every byte adds its own loop:
 * about 1 ns per byte in Wasm on this machine).
 */
#include <stdlib.h>

#include "proxy_wasm.h"

static uint64_t bytes, first;

static proxy_action_t on_data(proxy_buffer_type_t type, size_t size) {
    char *data = NULL;
    size_t len = 0;
    if (size && pw_get_buffer(type, 0, (uint32_t)size, &data, &len) == PROXY_RESULT_OK) {
        bytes += len;
        first += len ? (unsigned char)data[0] : 0;
        free(data);
    }
    return PROXY_ACTION_CONTINUE;
}

static proxy_action_t on_downstream(uint32_t ctx, size_t size, int eos) {
    (void)ctx, (void)eos;
    return on_data(PROXY_BUFFER_DOWNSTREAM_DATA, size);
}

static proxy_action_t on_upstream(uint32_t ctx, size_t size, int eos) {
    (void)ctx, (void)eos;
    return on_data(PROXY_BUFFER_UPSTREAM_DATA, size);
}

static void on_log(uint32_t ctx) {
    pw_logf(PROXY_LOG_DEBUG, "tcp_read: connection %u, %llu bytes read (%llu)", ctx,
            (unsigned long long)bytes, (unsigned long long)first);
}

const pw_plugin_t pw_plugin = {
    .on_downstream_data = on_downstream,
    .on_upstream_data = on_upstream,
    .on_log = on_log,
};
