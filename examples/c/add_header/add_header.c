/*
 * add_header: adds one response header to every response.
 *
 * Plugin configuration: `name=value`, e.g. `x-powered-by=pwasm`. Whitespace
 * around the name and the value is trimmed; the name must be an HTTP token,
 * the value may be empty but must not hold control characters. An empty or
 * malformed configuration makes on_configure fail, with a log line why.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

/* Per root context (one per plugin instance): the parsed configuration. */
struct config {
    char *buf; /* the configuration bytes, cut in place */
    const char *name;
    const char *value;
};

static int value_ok(const char *v) {
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 && *v != '\t')
            return 0;
    return 1;
}

/* Parses `text` (ours, NUL-terminated) into `c`; on error returns why. */
static const char *parse(char *text, size_t size, struct config *c) {
    if (size && strlen(text) != size)
        return "configuration contains a NUL byte";
    text = size ? pw_trim(text) : "";
    if (!*text)
        return "empty configuration, expected name=value";
    char *eq = strchr(text, '=');
    if (!eq)
        return "no '=' in configuration, expected name=value";
    *eq = '\0';
    c->name = pw_trim(text);
    c->value = pw_trim(eq + 1);
    if (!pw_is_header_name(c->name, strlen(c->name)))
        return "header name is empty or not an HTTP token";
    if (!value_ok(c->value))
        return "header value contains a control character";
    return NULL;
}

static void drop_config(uint32_t root_id) {
    struct config *c = pw_get_context_data(root_id);
    if (c)
        free(c->buf);
    free(c);
    pw_set_context_data(root_id, NULL);
}

static int on_configure(uint32_t root_id, size_t config_size) {
    struct config *c = calloc(1, sizeof *c);
    size_t size = 0;
    if (!c || pw_get_plugin_config(&c->buf, &size) != PROXY_RESULT_OK) {
        pw_log(PROXY_LOG_ERROR, "cannot read the plugin configuration");
        free(c);
        return 0;
    }
    const char *why = parse(c->buf, size, c);
    if (why) {
        pw_logf(PROXY_LOG_ERROR, "bad configuration (%zu bytes): %s", config_size,
                why);
        free(c->buf);
        free(c);
        return 0;
    }
    drop_config(root_id); /* a reconfiguration replaces the previous one */
    pw_set_context_data(root_id, c);
    pw_logf(PROXY_LOG_INFO, "root %u adds \"%s: %s\" to responses", root_id, c->name,
            c->value);
    return 1;
}

static proxy_action_t on_response_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    const struct config *c = pw_get_context_data(pw_get_root_id(ctx));
    if (!c)
        return PROXY_ACTION_CONTINUE;
    proxy_status_t st = pw_add_header(PROXY_MAP_HTTP_RESPONSE_HEADERS, c->name, c->value);
    pw_logf(PROXY_LOG_DEBUG, "context %u (%zu headers, eos %d): added %s, status %d",
            ctx, nheaders, end_of_stream, c->name, st);
    return PROXY_ACTION_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_root_delete = drop_config,
    .on_response_headers = on_response_headers,
};
