/*
 * shared_counter: a request counter in shared data, kept by one plugin and
 * shown by another.
 *
 * Both plugins are this module on the same vm_id, so they share the key
 * "requests" (8 bytes, little-endian; the Go and Rust SDK examples'
 * encoding). Plugin configuration:
 *
 *   writer [KEY]   on_configure (the first callback that knows the role:
 *                  on_vm_start sees only the VM configuration) creates the
 *                  counter (0) unless it exists, so that a worker that
 *                  starts later does not reset it; every request
 *                  increments it in on_request_headers:
 *                  get it with its CAS token, write count+1 with that
 *                  token, start again on CasMismatch (another worker, or
 *                  another plugin, wrote in between). Also counts the
 *                  requests in the metric shared_counter_requests_total.
 *   reader [KEY]   on_response_headers reads the counter, logs it and adds
 *                  it to the response as `x-count` (so curl shows it rise).
 *
 * An empty configuration is `reader`; anything else makes on_configure
 * fail with a log line why. KEY defaults to "requests".
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

/* Per root context: its role and key. */
struct config {
    int writer;
    char key[64];
    uint32_t metric; /* writer: shared_counter_requests_total */
};

static void put_u64(unsigned char b[8], uint64_t v) {
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

/* The counter under key and its CAS token; a missing key is 0 with token
 * 0 (then the first write is unconditional). */
static proxy_status_t read_counter(const char *key, uint64_t *n, uint32_t *cas) {
    proxy_status_t st = pw_get_shared_u64(key, n, cas);
    if (st == PROXY_RESULT_NOT_FOUND) {
        *n = 0;
        *cas = 0;
        return PROXY_RESULT_OK;
    }
    return st;
}

/* Parses "writer|reader [KEY]" into c; returns why not, or NULL. */
static const char *parse(char *text, struct config *c) {
    char *role = pw_trim(text), *key = role;
    while (*key && *key != ' ' && *key != '\t')
        key++;
    if (*key)
        *key++ = '\0';
    key = pw_trim(key);
    if (!*role || !strcmp(role, "reader"))
        c->writer = 0;
    else if (!strcmp(role, "writer"))
        c->writer = 1;
    else
        return "expected `writer [KEY]` or `reader [KEY]`";
    if (!*key)
        key = "requests";
    if (strlen(key) >= sizeof c->key)
        return "the key is longer than 63 bytes";
    strcpy(c->key, key);
    return NULL;
}

static int on_configure(uint32_t root_id, size_t size) {
    char *text = NULL;
    size_t len = 0;
    pw_get_plugin_config(&text, &len);
    struct config *c = calloc(1, sizeof *c);
    const char *why = !c ? "out of memory" : text && strlen(text) != len ? "a NUL byte" : NULL;
    if (!why)
        why = parse(text ? text : (char[1]){0}, c);
    free(text);
    if (why) {
        pw_logf(PROXY_LOG_ERROR, "shared_counter: bad configuration: %s", why);
        free(c);
        return 0;
    }
    (void)size;
    if (c->writer) {
        /* Create the counter unless a plugin of this vm_id (in this or
         * another worker, or before a restart of this VM) already has. */
        uint64_t n;
        uint32_t cas;
        if (pw_get_shared_u64(c->key, &n, &cas) == PROXY_RESULT_NOT_FOUND) {
            unsigned char zero[8] = {0};
            pw_set_shared_data(c->key, (const char *)zero, 8, 0);
        }
        pw_define_metric(PROXY_METRIC_COUNTER, "shared_counter_requests_total", &c->metric);
    }
    pw_logf(PROXY_LOG_INFO, "shared_counter: root %u is the %s of \"%s\"", root_id,
            c->writer ? "writer" : "reader", c->key);
    pw_set_context_data(root_id, c);
    return 1;
}

static void on_root_delete(uint32_t root_id) {
    free(pw_get_context_data(root_id));
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int eos) {
    (void)nheaders;
    (void)eos;
    struct config *c = pw_get_context_data(pw_get_root_id(ctx));
    if (!c || !c->writer)
        return PROXY_ACTION_CONTINUE;
    for (int attempt = 1; attempt <= PW_SHARED_RETRIES; attempt++) {
        uint64_t n;
        uint32_t cas;
        proxy_status_t st = read_counter(c->key, &n, &cas);
        if (st != PROXY_RESULT_OK) {
            pw_logf(PROXY_LOG_ERROR, "shared_counter: cannot read \"%s\": %s", c->key,
                    st == PROXY_RESULT_PARSE_FAILURE ? "not 8 bytes" : "no shared data");
            break;
        }
        unsigned char b[8];
        put_u64(b, n + 1);
        st = pw_set_shared_data(c->key, (const char *)b, 8, cas);
        if (st == PROXY_RESULT_OK) {
            pw_logf(PROXY_LOG_DEBUG, "shared_counter: %s = %llu", c->key,
                    (unsigned long long)(n + 1));
            break;
        }
        if (st != PROXY_RESULT_CAS_MISMATCH) {
            pw_logf(PROXY_LOG_ERROR, "shared_counter: cannot write \"%s\" (status %u)", c->key,
                    (unsigned)st);
            break;
        }
        pw_logf(PROXY_LOG_DEBUG, "shared_counter: %s changed under us, attempt %d", c->key,
                attempt + 1);
    }
    pw_increment_metric(c->metric, 1);
    return PROXY_ACTION_CONTINUE;
}

static proxy_action_t on_response_headers(uint32_t ctx, size_t nheaders, int eos) {
    (void)nheaders;
    (void)eos;
    struct config *c = pw_get_context_data(pw_get_root_id(ctx));
    if (!c || c->writer)
        return PROXY_ACTION_CONTINUE;
    uint64_t n;
    uint32_t cas;
    proxy_status_t st = pw_get_shared_u64(c->key, &n, &cas);
    if (st != PROXY_RESULT_OK) {
        pw_logf(PROXY_LOG_WARN, "shared_counter: no counter \"%s\" (status %u)", c->key,
                (unsigned)st);
        return PROXY_ACTION_CONTINUE;
    }
    char text[24];
    pw_snprintf(text, sizeof text, "%llu", (unsigned long long)n);
    pw_logf(PROXY_LOG_INFO, "shared_counter: %s = %s", c->key, text);
    pw_replace_header(PROXY_MAP_HTTP_RESPONSE_HEADERS, "x-count", text);
    return PROXY_ACTION_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_root_delete = on_root_delete,
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
};
