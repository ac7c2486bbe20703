/*
 * deny: answers 403 "forbidden\n" to every request that lacks a header.
 *
 * Plugin configuration: the name of the request header that lets a request
 * through, e.g. `x-api-key` (whitespace trimmed, compared case-insensitively
 * by the host; any value, even empty, counts as present). An empty or
 * malformed name makes on_configure fail, with a log line why.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

static const char body[] = "forbidden\n";

/* Per root context: the lower-cased header name (malloc'ed). */
static int on_configure(uint32_t root_id, size_t config_size) {
    char *text = NULL;
    size_t size = 0;
    const char *why = NULL;
    if (pw_get_plugin_config(&text, &size) != PROXY_RESULT_OK)
        why = "cannot read the plugin configuration";
    else if (size && memchr(text, '\0', size))
        why = "configuration contains a NUL byte";
    char *name = why || !size ? "" : pw_trim(text);
    if (!why && !*name)
        why = "empty configuration, expected a header name";
    else if (!why && !pw_is_header_name(name, strlen(name)))
        why = "configuration is not an HTTP header name";
    if (why) {
        pw_logf(PROXY_LOG_ERROR, "bad configuration (%zu bytes): %s", config_size, why);
        free(text);
        return 0;
    }
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    memmove(text, name, strlen(name) + 1);
    free(pw_get_context_data(root_id)); /* a reconfiguration replaces the old name */
    pw_set_context_data(root_id, text);
    pw_logf(PROXY_LOG_INFO, "root %u requires request header %s", root_id, text);
    return 1;
}

static void on_root_delete(uint32_t root_id) {
    free(pw_get_context_data(root_id));
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)nheaders;
    (void)end_of_stream;
    const char *name = pw_get_context_data(pw_get_root_id(ctx));
    char *value = NULL;
    size_t size = 0;
    proxy_status_t st = name ? pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, name, &value, &size)
                             : PROXY_RESULT_NOT_FOUND;
    free(value);
    if (st == PROXY_RESULT_OK)
        return PROXY_ACTION_CONTINUE;
    if (st != PROXY_RESULT_NOT_FOUND)
        pw_logf(PROXY_LOG_WARN, "reading header %s failed (status %d), denying", name, st);
    pw_logf(PROXY_LOG_DEBUG, "context %u: no %s header, answering 403", ctx,
            name ? name : "(unconfigured)");
    pw_pair_t headers[] = {pw_pair("content-type", "text/plain")};
    pw_send_local_response(403, body, sizeof body - 1, headers, 1);
    return PROXY_ACTION_PAUSE;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_root_delete = on_root_delete,
    .on_request_headers = on_request_headers,
};
