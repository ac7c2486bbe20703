/*
 * sdk_maps.wasm (C SDK, with dispatch): maps read with pw_get_headers while
 * others are still held, the cases of the SDK's spare buffers (sdk/c
 * proxy_wasm.c: one map at a time reads into memory the SDK keeps; one
 * read while that is lent, or a larger one, gets memory of its own).
 * tests/conformance/sdk_maps.yaml checks the lines it logs.
 *
 *   on_request_headers   two reads held at once, a third after the first
 *                        is freed; the request map kept for later; a map
 *                        over 16 KiB (30 headers of 600 bytes added)
 *   on_response_headers  the response map read while the request map is
 *                        still held, which is then checked unchanged
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

static pw_pairs_t kept;
static char kept_copy[4096];
static size_t kept_copy_len;

/* "k=v, k=v, ..." of a map, in out (truncated to fit). */
static size_t render(const pw_pairs_t *m, char *out, size_t size) {
    size_t n = 0;
    for (size_t i = 0; i < m->count && n < size; i++)
        n += (size_t)pw_snprintf(out + n, size - n, "%s%.*s=%.*s", i ? ", " : "",
                                 (int)m->pairs[i].key_len, m->pairs[i].key,
                                 (int)m->pairs[i].value_len, m->pairs[i].value);
    return n < size ? n : size - 1;
}

static int same(const pw_pairs_t *a, const pw_pairs_t *b) {
    char x[4096], y[4096];
    size_t nx = render(a, x, sizeof x), ny = render(b, y, sizeof y);
    return a->count == b->count && nx == ny && memcmp(x, y, nx) == 0;
}

static proxy_action_t on_request_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)ctx;
    (void)nheaders;
    (void)end_of_stream;
    pw_pairs_t a = {0}, b = {0}, c = {0};
    proxy_status_t sa = pw_get_headers(PROXY_MAP_HTTP_REQUEST_HEADERS, &a);
    proxy_status_t sb = pw_get_headers(PROXY_MAP_HTTP_REQUEST_HEADERS, &b);
    pw_logf(PROXY_LOG_INFO, "two held: %d %d, %u and %u pairs, %s, %s", sa, sb,
            (unsigned)a.count, (unsigned)b.count, same(&a, &b) ? "equal" : "DIFFERENT",
            a.raw != b.raw && a.pairs != b.pairs ? "apart" : "SHARED");
    char first[4096];
    size_t nfirst = render(&a, first, sizeof first);
    pw_pairs_free(&a);
    proxy_status_t sc = pw_get_headers(PROXY_MAP_HTTP_REQUEST_HEADERS, &c);
    pw_logf(PROXY_LOG_INFO, "after a free: %d, %s, %s", sc, same(&b, &c) ? "equal" : "DIFFERENT",
            b.raw != c.raw && b.pairs != c.pairs ? "apart" : "SHARED");
    pw_pairs_free(&b);
    pw_pairs_free(&c);
    pw_logf(PROXY_LOG_INFO, "request: %.*s", (int)nfirst, first);

    /* kept until the response */
    pw_get_headers(PROXY_MAP_HTTP_REQUEST_HEADERS, &kept);
    kept_copy_len = render(&kept, kept_copy, sizeof kept_copy);

    /* a larger map than the spare buffer */
    char value[601];
    memset(value, 'v', 600);
    value[600] = '\0';
    for (int i = 0; i < 30; i++) {
        char name[16];
        pw_snprintf(name, sizeof name, "x-fill-%d", i);
        pw_add_header(PROXY_MAP_HTTP_REQUEST_HEADERS, name, value);
    }
    pw_pairs_t big = {0};
    proxy_status_t sg = pw_get_headers(PROXY_MAP_HTTP_REQUEST_HEADERS, &big);
    size_t bytes = 0;
    for (size_t i = 0; i < big.count; i++)
        bytes += big.pairs[i].value_len;
    pw_logf(PROXY_LOG_INFO, "big: %d, %u pairs, %u value bytes, last %.*s", sg,
            (unsigned)big.count, (unsigned)bytes,
            big.count ? (int)big.pairs[big.count - 1].key_len : 0,
            big.count ? big.pairs[big.count - 1].key : "");
    pw_pairs_free(&big);
    for (int i = 0; i < 30; i++) {
        char name[16];
        pw_snprintf(name, sizeof name, "x-fill-%d", i);
        pw_remove_header(PROXY_MAP_HTTP_REQUEST_HEADERS, name);
    }
    return PROXY_ACTION_CONTINUE;
}

static proxy_action_t on_response_headers(uint32_t ctx, size_t nheaders, int end_of_stream) {
    (void)ctx;
    (void)nheaders;
    (void)end_of_stream;
    pw_pairs_t r = {0};
    proxy_status_t st = pw_get_headers(PROXY_MAP_HTTP_RESPONSE_HEADERS, &r);
    char text[4096];
    size_t n = render(&r, text, sizeof text);
    pw_logf(PROXY_LOG_INFO, "response: %d %.*s", st, (int)n, text);
    n = render(&kept, text, sizeof text);
    pw_logf(PROXY_LOG_INFO, "kept request map: %s",
            n == kept_copy_len && memcmp(text, kept_copy, n) == 0 ? "unchanged" : "CHANGED");
    pw_pairs_free(&r);
    pw_pairs_free(&kept);
    return PROXY_ACTION_CONTINUE;
}

const pw_plugin_t pw_plugin = {
    .on_request_headers = on_request_headers,
    .on_response_headers = on_response_headers,
};
