/*
 * ngx_http_proxy_wasm_maps.c -- the header map hooks (proxy_get_header_map_
 * pairs & co.) over ngx_http_proxy_wasm_headers.c, and the pseudo-headers a
 * plugin may write: :path, :method, :authority, :scheme, :status.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


static proxy_status_t ngx_http_proxy_wasm_map_write_in(ngx_http_request_t *r,
    pw_str key, pw_str *value, ngx_uint_t replace);


static ngx_uint_t
ngx_http_proxy_wasm_method_of(ngx_str_t *name)
{
    ngx_uint_t  i;

    static struct {
        ngx_str_t   name;
        ngx_uint_t  method;
    } methods[] = {
        { ngx_string("GET"), NGX_HTTP_GET },
        { ngx_string("HEAD"), NGX_HTTP_HEAD },
        { ngx_string("POST"), NGX_HTTP_POST },
        { ngx_string("PUT"), NGX_HTTP_PUT },
        { ngx_string("DELETE"), NGX_HTTP_DELETE },
        { ngx_string("MKCOL"), NGX_HTTP_MKCOL },
        { ngx_string("COPY"), NGX_HTTP_COPY },
        { ngx_string("MOVE"), NGX_HTTP_MOVE },
        { ngx_string("OPTIONS"), NGX_HTTP_OPTIONS },
        { ngx_string("PROPFIND"), NGX_HTTP_PROPFIND },
        { ngx_string("PROPPATCH"), NGX_HTTP_PROPPATCH },
        { ngx_string("LOCK"), NGX_HTTP_LOCK },
        { ngx_string("UNLOCK"), NGX_HTTP_UNLOCK },
        { ngx_string("PATCH"), NGX_HTTP_PATCH },
        { ngx_string("TRACE"), NGX_HTTP_TRACE },
        { ngx_string("CONNECT"), NGX_HTTP_CONNECT },
        { ngx_null_string, 0 }
    };

    for (i = 0; methods[i].name.len; i++) {
        if (methods[i].name.len == name->len
            && ngx_strncmp(methods[i].name.data, name->data, name->len) == 0)
        {
            return methods[i].method;
        }
    }

    return NGX_HTTP_UNKNOWN;
}


/* :path: what proxy_pass sends (the URI as given), and the location is
 * chosen again when written in the request phase (Envoy clears its route
 * cache). Dot segments are refused. */
static proxy_status_t
ngx_http_proxy_wasm_set_path(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, pw_str v)
{
    u_char  *p, *q, *src, *dst, *uri;
    size_t   plen;

    if (v.len == 0 || v.data[0] != '/' || !ngx_http_proxy_wasm_valid(v, 0)
        || ngx_strlchr((u_char *) v.data, (u_char *) v.data + v.len, ' '))
    {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    p = ngx_pnalloc(r->pool, v.len);
    uri = ngx_pnalloc(r->pool, v.len);
    if (p == NULL || uri == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    ngx_memcpy(p, v.data, v.len);

    q = ngx_strlchr(p, p + v.len, '?');
    plen = q ? (size_t) (q - p) : v.len;

    src = p;
    dst = uri;
    ngx_unescape_uri(&dst, &src, plen, NGX_UNESCAPE_URI);

    /* no "." or ".." segment once decoded */
    for (q = uri; q < dst; q++) {
        if (*q == '/' && q + 1 < dst && q[1] == '.'
            && (q + 2 == dst || q[2] == '/'
                || (q[2] == '.' && (q + 3 == dst || q[3] == '/'))))
        {
            return PROXY_RESULT_BAD_ARGUMENT;
        }
    }

    r->unparsed_uri.data = p;
    r->unparsed_uri.len = v.len;
    r->valid_unparsed_uri = 1;

    r->uri.data = uri;
    r->uri.len = dst - uri;

    if (plen < v.len) {
        r->args.data = p + plen + 1;
        r->args.len = v.len - plen - 1;

    } else {
        ngx_str_null(&r->args);
    }

    ngx_http_set_exten(r);

    if (ctx->phase == NGX_HTTP_PROXY_WASM_PHASE_REQ) {
        r->uri_changed = 1;     /* the location is chosen again */
    }

    return PROXY_RESULT_OK;
}


static proxy_status_t
ngx_http_proxy_wasm_set_pseudo(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, proxy_map_type_t map, pw_str key,
    pw_str *value)
{
    ngx_int_t        status;
    ngx_str_t        v;
    proxy_status_t   st;

    static pw_str  host = { "host", 4 };

    if (value == NULL) {
        return PROXY_RESULT_OK;     /* removing a pseudo-header: no-op */
    }

    if (!ngx_http_proxy_wasm_valid(*value, 0)) {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    if (map == PROXY_MAP_HTTP_RESPONSE_HEADERS) {
        if (!ngx_proxy_wasm_key_is(key, (u_char *) ":status", 7)) {
            return PROXY_RESULT_BAD_ARGUMENT;
        }

        /* as the core: nginx sends 1xx itself */
        status = ngx_atoi((u_char *) value->data, value->len);
        if (status < 200 || status > 599) {
            return PROXY_RESULT_BAD_ARGUMENT;
        }

        r->headers_out.status = status;
        ngx_str_null(&r->headers_out.status_line);

        return PROXY_RESULT_OK;
    }

    if (ngx_proxy_wasm_key_is(key, (u_char *) ":path", 5)) {
        return ngx_http_proxy_wasm_set_path(r, ctx, *value);
    }

    if (ngx_proxy_wasm_pstr(r->pool, &v, (u_char *) value->data,
                            value->len)
        != NGX_OK)
    {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    if (ngx_proxy_wasm_key_is(key, (u_char *) ":method", 7)) {
        if (!ngx_http_proxy_wasm_valid(*value, 1)) {
            return PROXY_RESULT_BAD_ARGUMENT;
        }

        r->method_name = v;
        r->method = ngx_http_proxy_wasm_method_of(&v);

        return PROXY_RESULT_OK;
    }

    if (ngx_proxy_wasm_key_is(key, (u_char *) ":authority", 10)) {
        if (v.len == 0) {
            return PROXY_RESULT_BAD_ARGUMENT;
        }

        /* the Host header, $host, and what plugins read */
        st = ngx_http_proxy_wasm_map_write_in(r, host, value, 1);
        if (st != PROXY_RESULT_OK) {
            return st;
        }

        r->headers_in.server = v;
        ctx->authority = v;

        return PROXY_RESULT_OK;
    }

    if (ngx_proxy_wasm_key_is(key, (u_char *) ":scheme", 7)) {
        ctx->scheme = v;        /* seen by plugins only */
        return PROXY_RESULT_OK;
    }

    return PROXY_RESULT_BAD_ARGUMENT;
}


/* Response headers exist from the response phase on; writes before it
 * would leak into the response nginx builds later. */
static ngx_int_t
ngx_http_proxy_wasm_out_ready(void *stream)
{
    ngx_http_proxy_wasm_stream_t  *s = stream;

    return s->ctx->phase >= NGX_HTTP_PROXY_WASM_PHASE_RESP;
}


proxy_status_t
ngx_http_proxy_wasm_map_pairs(void *host, void *stream, proxy_map_type_t map,
    pw_kv **pairs, size_t *n)
{
    ngx_http_request_t  *r;

    r = ngx_http_proxy_wasm_request(stream);

    *pairs = NULL;
    *n = 0;

    if (r == NULL) {
        return PROXY_RESULT_OK;
    }

    switch (map) {
    case PROXY_MAP_HTTP_REQUEST_HEADERS:
        return ngx_http_proxy_wasm_in_pairs(r, pairs, n);
    case PROXY_MAP_HTTP_RESPONSE_HEADERS:
        if (!ngx_http_proxy_wasm_out_ready(stream)) {
            return PROXY_RESULT_OK;
        }
        return ngx_http_proxy_wasm_out_pairs(r, pairs, n);
    case PROXY_MAP_HTTP_RESPONSE_TRAILERS:
        if (!ngx_http_proxy_wasm_out_ready(stream)) {
            return PROXY_RESULT_NOT_FOUND;
        }
        return ngx_http_proxy_wasm_list_pairs(r, &r->headers_out.trailers,
                                              pairs, n);
    default:
        /* request trailers: nginx 1.22 drops them (docs/DIRECTIVES.md) */
        return PROXY_RESULT_NOT_FOUND;
    }
}


proxy_status_t
ngx_http_proxy_wasm_map_get(void *host, void *stream, proxy_map_type_t map,
    pw_str key, pw_str *value)
{
    ngx_http_request_t  *r;

    r = ngx_http_proxy_wasm_request(stream);
    if (r == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    switch (map) {
    case PROXY_MAP_HTTP_REQUEST_HEADERS:
        return ngx_http_proxy_wasm_in_get(r, key, value);
    case PROXY_MAP_HTTP_RESPONSE_HEADERS:
        if (!ngx_http_proxy_wasm_out_ready(stream)) {
            return PROXY_RESULT_NOT_FOUND;
        }
        return ngx_http_proxy_wasm_out_get(r, key, value);
    case PROXY_MAP_HTTP_RESPONSE_TRAILERS:
        if (!ngx_http_proxy_wasm_out_ready(stream)) {
            return PROXY_RESULT_NOT_FOUND;
        }
        return ngx_http_proxy_wasm_list_get(&r->headers_out.trailers, key,
                                            value);
    default:
        return PROXY_RESULT_NOT_FOUND;
    }
}


static proxy_status_t
ngx_http_proxy_wasm_map_write_in(ngx_http_request_t *r, pw_str key,
    pw_str *value, ngx_uint_t replace)
{
    ngx_int_t  rc;

    if (value == NULL || replace) {
        rc = ngx_http_proxy_wasm_in_rewrite(r, key, value);

        if (rc == NGX_ERROR) {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }

        if (rc == NGX_OK || value == NULL) {
            return PROXY_RESULT_OK;
        }
    }

    return ngx_http_proxy_wasm_in_add(r, key, *value);
}


static proxy_status_t
ngx_http_proxy_wasm_map_write(void *stream, proxy_map_type_t map, pw_str key,
    pw_str *value, ngx_uint_t replace)
{
    proxy_status_t                 st;
    ngx_http_request_t            *r;
    ngx_http_proxy_wasm_stream_t  *s = stream;

    r = ngx_http_proxy_wasm_request(stream);
    if (r == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (map != PROXY_MAP_HTTP_REQUEST_HEADERS
        && map != PROXY_MAP_HTTP_RESPONSE_HEADERS
        && map != PROXY_MAP_HTTP_RESPONSE_TRAILERS)
    {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (map != PROXY_MAP_HTTP_REQUEST_HEADERS
        && !ngx_http_proxy_wasm_out_ready(stream))
    {
        return map == PROXY_MAP_HTTP_RESPONSE_HEADERS
               ? PROXY_RESULT_BAD_ARGUMENT : PROXY_RESULT_NOT_FOUND;
    }

    if (key.len && key.data[0] == ':'
        && map != PROXY_MAP_HTTP_RESPONSE_TRAILERS)
    {
        return ngx_http_proxy_wasm_set_pseudo(r, s->ctx, map, key, value);
    }

    /* a name or value written here has passed the core's rule already
     * (pw_header_name_ok, pw_header_value_ok: include/pwasm.h, header map
     * hooks); the name of a removal has not */
    if (value == NULL && !ngx_http_proxy_wasm_valid(key, 1)) {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    if (map == PROXY_MAP_HTTP_REQUEST_HEADERS) {
        return ngx_http_proxy_wasm_map_write_in(r, key, value, replace);
    }

    if (map == PROXY_MAP_HTTP_RESPONSE_TRAILERS) {
        if (value == NULL || replace) {
            ngx_http_proxy_wasm_list_remove(&r->headers_out.trailers, &key);
            if (value == NULL) {
                return PROXY_RESULT_OK;
            }
        }

        return ngx_http_proxy_wasm_list_add(r, &r->headers_out.trailers, key,
                                            *value);
    }

    if (value == NULL || replace) {
        st = ngx_http_proxy_wasm_out_remove(r, key);
        if (st != PROXY_RESULT_OK || value == NULL) {
            return st;
        }
    }

    return ngx_http_proxy_wasm_out_add(r, key, *value);
}


proxy_status_t
ngx_http_proxy_wasm_map_add(void *host, void *stream, proxy_map_type_t map,
    pw_str key, pw_str value)
{
    return  ngx_http_proxy_wasm_map_write(stream, map, key, &value, 0);
}


proxy_status_t
ngx_http_proxy_wasm_map_replace(void *host, void *stream,
    proxy_map_type_t map, pw_str key, pw_str value)
{
    return  ngx_http_proxy_wasm_map_write(stream, map, key, &value, 1);
}


proxy_status_t
ngx_http_proxy_wasm_map_remove(void *host, void *stream, proxy_map_type_t map,
    pw_str key)
{
    return  ngx_http_proxy_wasm_map_write(stream, map, key, NULL, 1);
}


proxy_status_t
ngx_http_proxy_wasm_map_set_pairs(void *host, void *stream,
    proxy_map_type_t map, const pw_kv *pairs, size_t n)
{
    size_t                         i;
    proxy_status_t                 st;
    ngx_http_request_t            *r;
    ngx_http_proxy_wasm_stream_t  *s = stream;

    r = ngx_http_proxy_wasm_request(stream);
    if (r == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    switch (map) {
    case PROXY_MAP_HTTP_REQUEST_HEADERS:
        st = ngx_http_proxy_wasm_in_set_pairs(r, pairs, n);
        break;

    case PROXY_MAP_HTTP_RESPONSE_HEADERS:
        if (!ngx_http_proxy_wasm_out_ready(stream)) {
            return PROXY_RESULT_BAD_ARGUMENT;
        }
        st = ngx_http_proxy_wasm_out_set_pairs(r, pairs, n);
        break;

    case PROXY_MAP_HTTP_RESPONSE_TRAILERS:
        if (!ngx_http_proxy_wasm_out_ready(stream)) {
            return PROXY_RESULT_NOT_FOUND;
        }

        for (i = 0; i < n; i++) {
            if (!ngx_http_proxy_wasm_valid(pairs[i].key, 1)
                || !ngx_http_proxy_wasm_valid(pairs[i].value, 0))
            {
                return PROXY_RESULT_BAD_ARGUMENT;
            }
        }

        ngx_http_proxy_wasm_list_remove(&r->headers_out.trailers, NULL);

        for (i = 0; i < n; i++) {
            st = ngx_http_proxy_wasm_list_add(r, &r->headers_out.trailers,
                                              pairs[i].key, pairs[i].value);
            if (st != PROXY_RESULT_OK) {
                return st;
            }
        }

        return PROXY_RESULT_OK;

    default:
        return PROXY_RESULT_NOT_FOUND;
    }

    if (st != PROXY_RESULT_OK) {
        return st;
    }

    /* pseudo-headers of the new map, e.g. a changed :path */
    for (i = 0; i < n; i++) {
        if (pairs[i].key.len && pairs[i].key.data[0] == ':') {
            st = ngx_http_proxy_wasm_set_pseudo(r, s->ctx, map, pairs[i].key,
                                                (pw_str *) &pairs[i].value);
            if (st != PROXY_RESULT_OK) {
                return st;
            }
        }
    }

    return PROXY_RESULT_OK;
}
