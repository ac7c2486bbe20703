/*
 * lifecycle.wasm (raw exports, no SDK dispatch): logs one INFO line for every
 * callback the host makes, exactly as it was called:
 *
 *   lifecycle: proxy_on_context_create <context_id> <parent_context_id>
 *   lifecycle: proxy_on_vm_start <root_id> <vm_config_size>
 *   lifecycle: proxy_on_configure <root_id> <config_size> config=<config text>
 *   lifecycle: proxy_on_request_headers <context_id> <num_headers> <end_of_stream>
 *   lifecycle: proxy_on_request_body <context_id> <body_size> <end_of_stream>
 *   lifecycle: proxy_on_request_trailers <context_id> <num_trailers>
 *   lifecycle: proxy_on_response_headers <context_id> <num_headers> <end_of_stream>
 *   lifecycle: proxy_on_response_body <context_id> <body_size> <end_of_stream>
 *   lifecycle: proxy_on_response_trailers <context_id> <num_trailers>
 *   lifecycle: proxy_on_tick <root_id>
 *   lifecycle: proxy_on_log <context_id>
 *   lifecycle: proxy_on_done <context_id>
 *   lifecycle: proxy_on_delete <context_id>
 *
 * Numbers are unsigned decimal, as received. The config text is the plugin
 * configuration (bytes as they are, empty when there is none). Every
 * callback returns the neutral value (1 for vm_start/configure/done,
 * Continue for the stream callbacks). The ABI marker and the allocator come
 * from the SDK (proxy_wasm_raw.o).
 */
#include <stdlib.h>

#include "proxy_wasm.h"

#define EXPORT(name) __attribute__((export_name(#name)))
#define LOG(...) pw_logf(PROXY_LOG_INFO, "lifecycle: " __VA_ARGS__)

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t ctx, uint32_t parent) {
    LOG("proxy_on_context_create %u %u", ctx, parent);
}

EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, uint32_t size) {
    LOG("proxy_on_vm_start %u %u", root_id, size);
    return 1;
}

EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, uint32_t size) {
    char *config;
    size_t len;
    pw_get_plugin_config(&config, &len);
    LOG("proxy_on_configure %u %u config=%.*s", root_id, size, (int)len, config ? config : "");
    free(config);
    return 1;
}

EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root_id) {
    LOG("proxy_on_tick %u", root_id);
}

EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t n, uint32_t eos) {
    LOG("proxy_on_request_headers %u %u %u", ctx, n, eos);
    return PROXY_ACTION_CONTINUE;
}

EXPORT(proxy_on_request_body)
uint32_t proxy_on_request_body(uint32_t ctx, uint32_t n, uint32_t eos) {
    LOG("proxy_on_request_body %u %u %u", ctx, n, eos);
    return PROXY_ACTION_CONTINUE;
}

EXPORT(proxy_on_request_trailers) uint32_t proxy_on_request_trailers(uint32_t ctx, uint32_t n) {
    LOG("proxy_on_request_trailers %u %u", ctx, n);
    return PROXY_ACTION_CONTINUE;
}

EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t ctx, uint32_t n, uint32_t eos) {
    LOG("proxy_on_response_headers %u %u %u", ctx, n, eos);
    return PROXY_ACTION_CONTINUE;
}

EXPORT(proxy_on_response_body)
uint32_t proxy_on_response_body(uint32_t ctx, uint32_t n, uint32_t eos) {
    LOG("proxy_on_response_body %u %u %u", ctx, n, eos);
    return PROXY_ACTION_CONTINUE;
}

EXPORT(proxy_on_response_trailers) uint32_t proxy_on_response_trailers(uint32_t ctx, uint32_t n) {
    LOG("proxy_on_response_trailers %u %u", ctx, n);
    return PROXY_ACTION_CONTINUE;
}

EXPORT(proxy_on_log) void proxy_on_log(uint32_t ctx) {
    LOG("proxy_on_log %u", ctx);
}

EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) {
    LOG("proxy_on_done %u", ctx);
    return 1;
}

EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) {
    LOG("proxy_on_delete %u", ctx);
}
