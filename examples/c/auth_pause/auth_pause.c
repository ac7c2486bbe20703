/*
 * auth_pause: lets a request through only if it carries a token; requests
 * with a body are paused until the whole body has arrived, then resumed or
 * refused with 401.
 *
 * Plugin configuration: the token, e.g. `s3cret` (whitespace trimmed; 1 or
 * more printable ASCII characters, no spaces). A request is authorized when
 *   - its `authorization` header is `Bearer <token>` (scheme in any case), or
 *   - it has a body and the body contains <token> anywhere.
 *
 * Without a body (end_of_stream on the headers, or neither a content-length
 * above 0 nor a chunked transfer-encoding) on_request_headers decides at
 * once: Continue, or a local 401. With a body it returns Pause; the body
 * callbacks return PW_BODY_BUFFER so the host keeps the body, and at
 * end_of_stream the plugin either calls pw_continue_request() (the host
 * resumes the request after the callback returns and forwards the body) or
 * sends the 401.
 *
 * This relies on the host delivering the body to a plugin whose headers
 * callback paused, as pwasm does. Envoy does not (a Pause there holds the
 * body too, until resumed), so under Envoy only header authorization fits.
 */
#define _GNU_SOURCE /* memmem in wasi-libc */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy_wasm.h"

/* Per stream context data while the request waits for its body: one of
 * these markers (NULL once decided). */
static char waiting, waiting_header_ok;

static const char denied_body[] = "unauthorized\n";

/* The configuration (NUL-terminated, ours) trimmed in place; NULL if bad. */
static const char *parse(char *text, size_t size) {
    if (!size || strlen(text) != size)
        return NULL;
    char *token = pw_trim(text);
    if (!*token)
        return NULL;
    for (const char *p = token; *p; p++)
        if (*p <= ' ' || *p > '~')
            return NULL;
    return token;
}

static int on_configure(uint32_t root_id, size_t config_size) {
    char *text = NULL;
    size_t size = 0;
    const char *token = NULL;
    if (pw_get_plugin_config(&text, &size) == PROXY_RESULT_OK)
        token = parse(text, size);
    if (!token) {
        pw_logf(PROXY_LOG_ERROR,
                "bad configuration (%zu bytes): expected a token of printable "
                "characters without spaces",
                config_size);
        free(text);
        return 0;
    }
    memmove(text, token, strlen(token) + 1);
    free(pw_get_context_data(root_id)); /* a reconfiguration replaces the old token */
    pw_set_context_data(root_id, text);
    pw_logf(PROXY_LOG_INFO, "root %u configured (token of %zu bytes)", root_id,
            strlen(text));
    return 1;
}

static void on_root_delete(uint32_t root_id) {
    free(pw_get_context_data(root_id));
}

/* Compares without an early exit, so timing does not tell how much matched. */
static int same_token(const char *a, size_t alen, const char *b, size_t blen) {
    unsigned char diff = alen != blen;
    for (size_t i = 0; i < alen && i < blen; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* A request header as a C string (free it), NULL when missing or empty. */
static char *request_header(const char *name) {
    char *value = NULL;
    size_t len = 0;
    pw_get_header(PROXY_MAP_HTTP_REQUEST_HEADERS, name, &value, &len);
    return value;
}

/* 1 if the request's authorization header is "Bearer <token>". */
static int header_authorizes(const char *token) {
    char *value = request_header("authorization");
    int ok = 0;
    if (value && strncasecmp(value, "bearer ", 7) == 0) {
        const char *v = value + 7;
        while (*v == ' ')
            v++;
        ok = same_token(v, strlen(v), token, strlen(token));
    }
    free(value);
    return ok;
}

/* 1 if the request announces a body: content-length > 0 or chunked. */
static int request_has_body(void) {
    char *value = request_header("content-length");
    int body = value && strpbrk(value, "123456789") != NULL;
    free(value);
    if (!body && (value = request_header("transfer-encoding")) != NULL) {
        for (char *p = value; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        body = strstr(value, "chunked") != NULL;
        free(value);
    }
    return body;
}

static void deny(uint32_t ctx, const char *why) {
    pw_logf(PROXY_LOG_DEBUG, "context %u: %s, answering 401", ctx, why);
    pw_pair_t headers[] = {
        pw_pair("content-type", "text/plain"),
        pw_pair("www-authenticate", "Bearer"),
    };
    pw_send_local_response(401, denied_body, sizeof denied_body - 1, headers, 2);
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)nheaders;
    const char *token = pw_get_context_data(pw_get_root_id(ctx));
    int header_ok = token && header_authorizes(token);
    if (token && !end_of_stream && request_has_body()) {
        pw_logf(PROXY_LOG_DEBUG, "context %u: pausing until the body has arrived",
                ctx);
        pw_set_context_data(ctx, header_ok ? &waiting_header_ok : &waiting);
        return PROXY_ACTION_PAUSE;
    }
    if (header_ok)
        return PROXY_ACTION_CONTINUE;
    deny(ctx, token ? "no valid bearer token" : "not configured");
    return PROXY_ACTION_PAUSE;
}

static proxy_action_t on_request_body(uint32_t ctx, size_t body_size, int end_of_stream) {
    void *state = pw_get_context_data(ctx);
    if (state != &waiting && state != &waiting_header_ok)
        return PW_BODY_CONTINUE; /* decided already */
    if (!end_of_stream)
        return PW_BODY_BUFFER; /* keep it all: the token may span chunks */
    pw_set_context_data(ctx, NULL);
    const char *token = pw_get_context_data(pw_get_root_id(ctx));
    int ok = state == &waiting_header_ok;
    if (!ok && token) {
        char *body = NULL;
        size_t size = 0;
        pw_get_buffer(PROXY_BUFFER_HTTP_REQUEST_BODY, 0, UINT32_MAX, &body, &size);
        ok = size && memmem(body, size, token, strlen(token)) != NULL;
        free(body);
    }
    if (!ok) {
        deny(ctx, "no token in the header or the body");
        return PW_BODY_BUFFER;
    }
    proxy_status_t st = pw_continue_request();
    if (st != PROXY_RESULT_OK)
        pw_logf(PROXY_LOG_WARN, "context %u: cannot resume (status %d)", ctx, st);
    else
        pw_logf(PROXY_LOG_DEBUG, "context %u: authorized (%zu body bytes), resuming",
                ctx, body_size);
    return PW_BODY_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_root_delete = on_root_delete,
    .on_request_headers = on_request_headers,
    .on_request_body = on_request_body,
};
