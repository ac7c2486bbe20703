/*
 * headers: reads every request header and adds one response header
 * (benchmark scenario 3; scenarios 4 to 6 do the same in Lua, njs and
 * AssemblyScript).
 *
 * on_request_headers fetches the whole request map (one
 * proxy_get_header_map_pairs), counts the entries and the bytes of their
 * values; on_response_headers adds `x-bench: <count>/<bytes>`. The counts
 * include the pseudo-headers (:method, :path, :authority, :scheme) the host
 * lists first. Using the result keeps the work honest: nothing can be
 * skipped, and the harness checks the header before measuring.
 */
#include <stdint.h>

#include "proxy_wasm.h"

/* What on_request_headers found, kept for on_response_headers in the
 * stream's context data slot as (count << 20 | bytes): no allocation. */
static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)nheaders;
    (void)end_of_stream;
    pw_pairs_t h = {0};
    if (pw_get_headers(PROXY_MAP_HTTP_REQUEST_HEADERS, &h) != PROXY_RESULT_OK)
        return PROXY_ACTION_CONTINUE;
    uintptr_t bytes = 0;
    for (size_t i = 0; i < h.count; i++)
        bytes += h.pairs[i].value_len;
    if (bytes >= (1u << 20))
        bytes = (1u << 20) - 1;
    pw_set_context_data(ctx, (void *)((uintptr_t)h.count << 20 | bytes | 1u << 31));
    pw_pairs_free(&h);
    return PROXY_ACTION_CONTINUE;
}

static proxy_action_t on_response_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)nheaders;
    (void)end_of_stream;
    uintptr_t v = (uintptr_t)pw_get_context_data(ctx);
    char value[32];
    pw_snprintf(value, sizeof value, "%u/%u", (unsigned)(v >> 20 & 0x7ff),
                (unsigned)(v & 0xfffff));
    pw_add_header(PROXY_MAP_HTTP_RESPONSE_HEADERS, "x-bench", value);
    return PROXY_ACTION_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
};
