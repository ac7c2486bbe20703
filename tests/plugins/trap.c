/*
 * trap.wasm (C SDK): traps on request, to test that the host survives.
 *
 * Request header `x-trap: KIND` traps in proxy_on_request_headers; request
 * header `x-trap-response: KIND` (read with the request headers, remembered
 * per context) traps in proxy_on_response_headers. KIND:
 *   unreachable  __builtin_trap()            (wasm `unreachable`)
 *   oob          load from 0xFFFFFFF0         (out-of-bounds memory access)
 *   stack        unbounded non-tail recursion (call stack exhausted)
 *   div          integer division by zero     (wasm `i32.div_s` trap)
 *   exit         WASI proc_exit(3)
 * Any other KIND behaves as `unreachable`. Before trapping the plugin logs
 * `trap: <kind> in <callback> <context_id>` at INFO. Without the headers it
 * continues.
 */
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

#include "proxy_wasm.h"

static volatile uint32_t sink;
/* Volatile operands: with a constant numerator clang lowers `1 / x` to a
 * select (division by zero being UB) and no i32.div_s would be left. */
static volatile int32_t numerator = 1, zero;
/* Read at run time, so the address is not folded into the load's offset. */
static uint32_t *volatile oob_address = (uint32_t *)(uintptr_t)0xFFFFFFF0u;
static volatile uint32_t stop_recursion; /* never set: hides the recursion's end */

/* Not a tail call (the volatile store after it), so no loop. Uses no shadow
 * stack either, so it exhausts the wasm call stack, not linear memory. */
__attribute__((noinline)) static uint32_t recurse(uint32_t n) {
    if (stop_recursion)
        return n;
    uint32_t r = recurse(n + 1);
    sink = r;
    return r + n;
}

static void trap(const char *kind, const char *callback, uint32_t ctx) {
    pw_logf(PROXY_LOG_INFO, "trap: %s in %s %u", kind, callback, ctx);
    if (strcmp(kind, "oob") == 0) {
        sink = *(volatile uint32_t *)oob_address;
    } else if (strcmp(kind, "stack") == 0) {
        sink = recurse(0);
    } else if (strcmp(kind, "div") == 0) {
        sink = (uint32_t)(numerator / zero);
    } else if (strcmp(kind, "exit") == 0) {
        __wasi_proc_exit(3);
    }
    __builtin_trap(); /* "unreachable", and the fallback if one returned */
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)nheaders;
    (void)end_of_stream;
    char *kind;
    size_t len;
    if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-trap-response", &kind, &len) ==
        PROXY_RESULT_OK) {
        free(pw_get_context_data(ctx));
        pw_set_context_data(ctx, kind ? kind : strdup(""));
    }
    if (pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, "x-trap", &kind, &len) == PROXY_RESULT_OK)
        trap(kind ? kind : "", "proxy_on_request_headers", ctx);
    return PROXY_ACTION_CONTINUE;
}

static proxy_action_t on_response_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)nheaders;
    (void)end_of_stream;
    const char *kind = pw_get_context_data(ctx);
    if (kind)
        trap(kind, "proxy_on_response_headers", ctx);
    return PROXY_ACTION_CONTINUE;
}

static void on_delete(uint32_t ctx) {
    free(pw_get_context_data(ctx));
}

const pw_plugin_t pw_plugin = {
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
    .on_delete = on_delete,
};
