/*
 * leak.wasm -- a plugin that leaks linear memory until the VM's memory
 * limit stops it (the C SDK with its dispatch), for the soak run.
 *
 * A request with the header `x-leak: N` (1..16384) grows the linear memory
 * by N pages of 64 KiB in proxy_on_request_headers and never gives them
 * back; it writes one byte in each new page, so the worker's RSS grows by
 * one OS page per Wasm page. When `memory.grow` fails (the VM's memory
 * limit), the plugin logs "leak: memory limit reached at <pages> pages" and
 * traps, as a C program whose malloc returned NULL would abort: its VM is
 * discarded with all that memory and the next request gets a fresh one.
 * Every request is answered by the upstream otherwise (the plugin
 * continues), with the response header `x-leak-pages: <pages>` (the linear
 * memory size in pages when the request was seen).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

static volatile unsigned char sink;

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)ctx, (void)nheaders, (void)end_of_stream;
    char *v;
    size_t len;
    if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-leak", &v, &len) != PROXY_RESULT_OK)
        return PROXY_ACTION_CONTINUE;
    long pages = v ? strtol(v, NULL, 10) : 0;
    free(v);
    if (pages < 1 || pages > 16384)
        return PROXY_ACTION_CONTINUE;
    long old = __builtin_wasm_memory_grow(0, (unsigned long)pages);
    if (old < 0) {
        pw_logf(PROXY_LOG_INFO, "leak: memory limit reached at %lu pages",
                (unsigned long)__builtin_wasm_memory_size(0));
        __builtin_trap();
    }
    unsigned char *base = (unsigned char *)((unsigned long)old * 65536);
    for (long i = 0; i < pages; i++)
        base[i * 65536] = (unsigned char)(i + 1);
    sink = base[0];
    return PROXY_ACTION_CONTINUE;
}

static proxy_action_t on_response_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)ctx, (void)nheaders, (void)end_of_stream;
    char num[16];
    int len = snprintf(num, sizeof(num), "%lu", (unsigned long)__builtin_wasm_memory_size(0));
    proxy_add_header_map_value(PROXY_MAP_HTTP_RESPONSE_HEADERS, "x-leak-pages", 12, num,
                               (size_t)len);
    return PROXY_ACTION_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
};
