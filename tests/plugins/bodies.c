/*
 * bodies.wasm (raw exports, no SDK dispatch): bodies, trailers, stream
 * control and proxy_set_property, for the core's unit tests. The request
 * header `x-mode` (read in every callback) selects what each callback does;
 * every callback logs one line at INFO:
 *
 *   request_headers <status>      modes: pause (returns 1), continue
 *                                 (proxy_continue_stream(0)), close
 *                                 (proxy_close_stream(1)), continue010
 *                                 (proxy_continue_request), badstream
 *                                 (proxy_continue_stream(9)), setprop,
 *                                 pausecontinue (proxy_continue_stream(0)
 *                                 and returns 1), tcpstream
 *                                 (proxy_continue_stream(2))
 *                                 (proxy_set_property("my\0key", "v"));
 *                                 <status> is that hostcall's status, or -
 *   request_body <size> <eos> <result> body=<bytes after the callback>
 *      modes: buffer (return 1 until eos), nobuffer (return 3), splice (at
 *      eos: prepend "[", append "]", replace 3 bytes at offset 2 with "XYZ"),
 *      replace (replace all with "new"), truncate (keep 2 bytes),
 *      local_body (local response 413 "too big" from the body callback)
 *   response_body <size> <eos> body=<bytes>   (mode upper: upper-cases)
 *   request_trailers <n> x-t=<value or status>  (and adds x-added: 1)
 *   response_trailers <n>
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

#define EXPORT(name) __attribute__((export_name(#name)))
#define REQ PROXY_MAP_HTTP_REQUEST_HEADERS

static char mode[32];

static int is(const char *m)
{
    return strcmp(mode, m) == 0;
}

static void read_mode(void)
{
    char *v = NULL;
    size_t n = 0;
    mode[0] = 0;
    if (proxy_get_header_map_value(REQ, "x-mode", 6, &v, &n) == PROXY_RESULT_OK &&
        n < sizeof mode) {
        memcpy(mode, v, n);
        mode[n] = 0;
    }
    free(v);
}

EXPORT(proxy_on_context_create) void on_context_create(uint32_t ctx, uint32_t parent)
{
    (void)ctx;
    (void)parent;
}

EXPORT(proxy_on_request_headers) uint32_t on_request_headers(uint32_t ctx, uint32_t n, uint32_t eos)
{
    (void)ctx;
    (void)n;
    (void)eos;
    read_mode();
    int st = -1;
    uint32_t ret = 0;
    if (is("pause"))
        ret = 1;
    else if (is("continue"))
        st = proxy_continue_stream(PROXY_STREAM_HTTP_REQUEST);
    else if (is("close"))
        st = proxy_close_stream(PROXY_STREAM_HTTP_RESPONSE);
    else if (is("continue010"))
        st = proxy_continue_request();
    else if (is("badstream"))
        st = proxy_continue_stream((proxy_stream_type_t)9);
    else if (is("tcpstream"))
        st = proxy_continue_stream(PROXY_STREAM_DOWNSTREAM);
    else if (is("pausecontinue")) {
        st = proxy_continue_stream(PROXY_STREAM_HTTP_REQUEST);
        ret = 1;
    }
    else if (is("setprop"))
        st = proxy_set_property("my\0key", 6, "v", 1);
    if (st < 0)
        pw_logf(PROXY_LOG_INFO, "request_headers -");
    else
        pw_logf(PROXY_LOG_INFO, "request_headers %d", st);
    return ret;
}

static void log_body(const char *what, proxy_buffer_type_t type, uint32_t size, uint32_t eos,
                     uint32_t result)
{
    char *b = NULL;
    size_t n = 0;
    size_t status_size = 0;
    uint32_t flags = 0;
    proxy_get_buffer_bytes(type, 0, 0xFFFFFFFFu, &b, &n);
    proxy_get_buffer_status(type, &status_size, &flags);
    pw_logf(PROXY_LOG_INFO, "%s %u %u %u size=%zu body=%.*s", what, size, eos, result,
            status_size, (int)n, b ? b : "");
    free(b);
}

EXPORT(proxy_on_request_body) uint32_t on_request_body(uint32_t ctx, uint32_t size, uint32_t eos)
{
    (void)ctx;
    read_mode();
    const proxy_buffer_type_t B = PROXY_BUFFER_HTTP_REQUEST_BODY;
    uint32_t ret = 0;
    if (is("buffer") && !eos)
        ret = 1;
    else if (is("nobuffer"))
        ret = 3;
    else if (is("splice") && eos) {
        proxy_set_buffer_bytes(B, 0, 0, "[", 1);
        proxy_set_buffer_bytes(B, 0x7FFFFFFFu, 0, "]", 1);
        proxy_set_buffer_bytes(B, 2, 3, "XYZ", 3);
    } else if (is("replace")) {
        proxy_set_buffer_bytes(B, 0, 0x7FFFFFFFu, "new", 3);
    } else if (is("truncate")) {
        proxy_set_buffer_bytes(B, 2, 0x7FFFFFFFu, "", 0);
    } else if (is("local_body")) {
        proxy_send_local_response(413, NULL, 0, "too big", 7, NULL, 0, -1);
        ret = 1;
    }
    log_body("request_body", B, size, eos, ret);
    return ret;
}

EXPORT(proxy_on_response_body) uint32_t on_response_body(uint32_t ctx, uint32_t size, uint32_t eos)
{
    (void)ctx;
    read_mode();
    const proxy_buffer_type_t B = PROXY_BUFFER_HTTP_RESPONSE_BODY;
    if (is("upper")) {
        char *b = NULL;
        size_t n = 0;
        if (proxy_get_buffer_bytes(B, 0, size, &b, &n) == PROXY_RESULT_OK && b) {
            for (size_t i = 0; i < n; i++)
                if (b[i] >= 'a' && b[i] <= 'z')
                    b[i] = (char)(b[i] - 32);
            proxy_set_buffer_bytes(B, 0, (uint32_t)n, b, n);
        }
        free(b);
    }
    log_body("response_body", B, size, eos, 0);
    return 0;
}

EXPORT(proxy_on_request_trailers) uint32_t on_request_trailers(uint32_t ctx, uint32_t n)
{
    (void)ctx;
    char *v = NULL;
    size_t len = 0;
    proxy_status_t st =
        proxy_get_header_map_value(PROXY_MAP_HTTP_REQUEST_TRAILERS, "x-t", 3, &v, &len);
    proxy_add_header_map_value(PROXY_MAP_HTTP_REQUEST_TRAILERS, "x-added", 7, "1", 1);
    if (st == PROXY_RESULT_OK)
        pw_logf(PROXY_LOG_INFO, "request_trailers %u x-t=%.*s", n, (int)len, v);
    else
        pw_logf(PROXY_LOG_INFO, "request_trailers %u x-t=%d", n, st);
    free(v);
    return 0;
}

EXPORT(proxy_on_response_trailers) uint32_t on_response_trailers(uint32_t ctx, uint32_t n)
{
    (void)ctx;
    pw_logf(PROXY_LOG_INFO, "response_trailers %u", n);
    return 1;
}
