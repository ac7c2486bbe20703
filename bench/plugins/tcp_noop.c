/*
 * tcp_noop.c -- the TCP benchmark's no-op network filter
 * (bench/nginx/stream.conf.in): exports the TCP callbacks, each returns
 * Continue at once. What the host costs per connection and per chunk.
 */
#include "proxy_wasm.h"

static proxy_action_t on_new_connection(uint32_t ctx) {
    (void)ctx;
    return PROXY_ACTION_CONTINUE;
}

static proxy_action_t on_data(uint32_t ctx, size_t size, int eos) {
    (void)ctx, (void)size, (void)eos;
    return PROXY_ACTION_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_new_connection = on_new_connection,
    .on_downstream_data = on_data,
    .on_upstream_data = on_data,
};
