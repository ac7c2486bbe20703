/*
 * body_replace: replaces every occurrence of a string in response bodies.
 *
 * Plugin configuration: `from=to`, e.g. `hello=howdy`. The text is split at
 * the first '='; whitespace around `from` and `to` is trimmed; `from` must
 * not be empty, `to` may be (occurrences are then deleted). A malformed
 * configuration makes on_configure fail, with a log line why.
 *
 * A body arrives in chunks and `from` may be split between two of them, so
 * the plugin returns PW_BODY_BUFFER (StopIterationAndBuffer) until
 * end_of_stream: the host keeps the body and calls again with all of it,
 * and the plugin rewrites it once with a replace-all. Compressed responses
 * (content-encoding other than identity) are passed on untouched.
 */
#define _GNU_SOURCE /* memmem in wasi-libc */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy_wasm.h"

/* Per root context data: the configuration rewritten in place as
 * "from\0to\0" (one allocation). A rule is read from it when needed. */
struct rule {
    const char *from;
    size_t from_len;
    const char *to;
    size_t to_len;
};

static struct rule rule_of(const char *text) {
    struct rule r = {text, strlen(text), NULL, 0};
    r.to = text + r.from_len + 1;
    r.to_len = strlen(r.to);
    return r;
}

/* Per stream context data: this marker when the body is left alone. */
static char skip_body;

/* Rewrites `text` (ours, NUL-terminated) as "from\0to\0"; on error returns
 * why. */
static const char *parse(char *text, size_t size) {
    if (size && strlen(text) != size)
        return "configuration contains a NUL byte";
    char *eq = size ? strchr(text, '=') : NULL;
    if (!eq)
        return "no '=' in configuration, expected from=to";
    *eq = '\0';
    const char *from = pw_trim(text), *to = pw_trim(eq + 1);
    size_t from_len = strlen(from), to_len = strlen(to);
    if (from_len == 0)
        return "nothing to replace: the text before '=' is empty";
    memmove(text, from, from_len + 1); /* both move left, in order */
    memmove(text + from_len + 1, to, to_len + 1);
    return NULL;
}

static int on_configure(uint32_t root_id, size_t config_size) {
    char *text = NULL;
    size_t size = 0;
    const char *why = pw_get_plugin_config(&text, &size) != PROXY_RESULT_OK
                          ? "cannot read the plugin configuration"
                          : parse(text, size);
    if (why) {
        pw_logf(PROXY_LOG_ERROR, "bad configuration (%zu bytes): %s", config_size,
                why);
        free(text);
        return 0;
    }
    free(pw_get_context_data(root_id)); /* a reconfiguration replaces the old rule */
    pw_set_context_data(root_id, text);
    struct rule r = rule_of(text);
    pw_logf(PROXY_LOG_INFO, "root %u replaces \"%s\" with \"%s\"", root_id, r.from,
            r.to);
    return 1;
}

static void on_root_delete(uint32_t root_id) {
    free(pw_get_context_data(root_id));
}

static proxy_action_t on_response_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)nheaders;
    (void)end_of_stream;
    const char *rule = pw_get_context_data(pw_get_root_id(ctx));
    char *enc = NULL;
    size_t len = 0;
    pw_get_header(PROXY_MAP_HTTP_RESPONSE_HEADERS, "content-encoding", &enc, &len);
    if (enc && strcasecmp(enc, "identity") != 0) {
        pw_logf(PROXY_LOG_DEBUG, "context %u: content-encoding %s, body left alone",
                ctx, enc);
        pw_set_context_data(ctx, &skip_body);
    } else if (rule && rule_of(rule).from_len != rule_of(rule).to_len) {
        /* The length changes: a stale content-length would be wrong (Envoy
         * leaves it; pwasm's nginx module would fix it up itself). */
        pw_remove_header(PROXY_MAP_HTTP_RESPONSE_HEADERS, "content-length");
    }
    free(enc);
    return PROXY_ACTION_CONTINUE;
}

/* Replaces every occurrence of rule->from in body[0, size) into a new buffer;
 * returns how many, or -1 when out of memory. */
static long replace_all(const struct rule *rule, const char *body, size_t size, char **out,
                        size_t *out_len) {
    long n = 0;
    *out = NULL;
    *out_len = size;
    if (size < rule->from_len)
        return 0;
    for (const char *p = body;
         (p = memmem(p, size - (size_t)(p - body), rule->from, rule->from_len));
         p += rule->from_len)
        n++;
    if (n == 0)
        return 0;
    *out_len = size - (size_t)n * rule->from_len + (size_t)n * rule->to_len;
    char *dst = malloc(*out_len ? *out_len : 1);
    if (!dst)
        return -1;
    char *w = dst;
    const char *r = body, *end = body + size;
    for (const char *p; (p = memmem(r, (size_t)(end - r), rule->from, rule->from_len));
         r = p + rule->from_len) {
        memcpy(w, r, (size_t)(p - r));
        w += p - r;
        memcpy(w, rule->to, rule->to_len);
        w += rule->to_len;
    }
    memcpy(w, r, (size_t)(end - r));
    *out = dst;
    return n;
}

static proxy_action_t on_response_body(uint32_t ctx, size_t body_size, int end_of_stream) {
    const char *rule = pw_get_context_data(pw_get_root_id(ctx));
    if (!rule || pw_get_context_data(ctx) == &skip_body)
        return PW_BODY_CONTINUE;
    if (!end_of_stream) {
        pw_logf(PROXY_LOG_DEBUG, "context %u: buffering, %zu bytes so far", ctx,
                body_size);
        return PW_BODY_BUFFER;
    }
    char *body = NULL, *out = NULL;
    size_t size = 0, out_len = 0;
    proxy_status_t st =
        pw_get_buffer(PROXY_BUFFER_HTTP_RESPONSE_BODY, 0, UINT32_MAX, &body, &size);
    struct rule r = rule_of(rule);
    long n = st == PROXY_RESULT_OK ? replace_all(&r, body, size, &out, &out_len) : 0;
    if (st != PROXY_RESULT_OK)
        pw_logf(PROXY_LOG_WARN, "context %u: cannot read the body (status %d)", ctx,
                st);
    else if (n < 0)
        pw_logf(PROXY_LOG_WARN, "context %u: out of memory, body unchanged", ctx);
    else if (n > 0 && (st = pw_replace_buffer(PROXY_BUFFER_HTTP_RESPONSE_BODY, out, out_len)) !=
                          PROXY_RESULT_OK)
        pw_logf(PROXY_LOG_WARN, "context %u: cannot replace the body (status %d)",
                ctx, st);
    else
        pw_logf(PROXY_LOG_DEBUG, "context %u: %ld replacements, %zu -> %zu bytes",
                ctx, n, size, out_len);
    free(body);
    free(out);
    return PW_BODY_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_root_delete = on_root_delete,
    .on_response_headers = on_response_headers,
    .on_response_body = on_response_body,
};
