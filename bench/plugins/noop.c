/*
 * noop: a Proxy-Wasm plugin that does nothing (benchmark scenario 2).
 *
 * The C SDK still exports every callback and keeps its context table, so a
 * request costs the host what any SDK plugin costs it: proxy_on_context_create,
 * proxy_on_request_headers, proxy_on_response_headers, proxy_on_log,
 * proxy_on_done and proxy_on_delete, each answered by the SDK's defaults.
 */
#include "proxy_wasm.h"

const pw_plugin_t pw_plugin = {
    .on_request_headers = NULL,
};
