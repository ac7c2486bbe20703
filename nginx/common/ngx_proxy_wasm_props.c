/*
 * ngx_proxy_wasm_props.c -- Envoy's encodings of property values, and the
 * properties of any subsystem: source.*, destination.*, connection.*,
 * node.id (the library answers plugin_*). See docs/PROPERTIES.md.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_proxy_wasm.h"


#define NAME_IS(s)  ngx_proxy_wasm_key_is(p[0], (u_char *) s, sizeof(s) - 1)


/* Envoy's encodings: integers 8 bytes little-endian. */
proxy_status_t
ngx_proxy_wasm_prop_int(ngx_pool_t *pool, int64_t n, pw_str *value)
{
    u_char      *p;
    ngx_uint_t   i;
    uint64_t     u;

    p = ngx_pnalloc(pool, 8);
    if (p == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    u = (uint64_t) n;

    for (i = 0; i < 8; i++) {
        p[i] = (u_char) (u >> (8 * i));
    }

    value->data = (const char *) p;
    value->len = 8;

    return PROXY_RESULT_OK;
}


proxy_status_t
ngx_proxy_wasm_prop_bool(ngx_uint_t b, pw_str *value)
{
    static const char  bytes[2] = { 0, 1 };

    value->data = &bytes[b ? 1 : 0];
    value->len = 1;

    return PROXY_RESULT_OK;
}


proxy_status_t
ngx_proxy_wasm_prop_str(ngx_str_t *s, pw_str *value)
{
    value->data = (const char *) s->data;
    value->len = s->len;

    return PROXY_RESULT_OK;
}


static u_char *
ngx_proxy_wasm_u32(u_char *p, size_t n)
{
    p[0] = (u_char) n;
    p[1] = (u_char) (n >> 8);
    p[2] = (u_char) (n >> 16);
    p[3] = (u_char) (n >> 24);

    return p + 4;
}


/* A map in the pairs format (the header maps'), little-endian sizes. */
static proxy_status_t
ngx_proxy_wasm_prop_map(ngx_pool_t *pool, pw_kv *kv, size_t n,
    pw_str *value)
{
    size_t   i, len;
    u_char  *p, *start;

    len = 4;

    for (i = 0; i < n; i++) {
        len += 8 + kv[i].key.len + 1 + kv[i].value.len + 1;
    }

    start = ngx_pnalloc(pool, len);
    if (start == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    p = ngx_proxy_wasm_u32(start, n);

    for (i = 0; i < n; i++) {
        p = ngx_proxy_wasm_u32(p, kv[i].key.len);
        p = ngx_proxy_wasm_u32(p, kv[i].value.len);
    }

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, kv[i].key.data, kv[i].key.len);
        *p++ = '\0';
        p = ngx_cpymem(p, kv[i].value.data, kv[i].value.len);
        *p++ = '\0';
    }

    value->data = (const char *) start;
    value->len = len;

    return PROXY_RESULT_OK;
}


/* One entry of a map: the values of `key` joined with ',' (Envoy). */
static proxy_status_t
ngx_proxy_wasm_prop_map_key(ngx_pool_t *pool, pw_kv *kv, size_t n,
    pw_str key, pw_str *value)
{
    size_t   i, len, found;
    u_char  *p;

    len = 0;
    found = 0;

    for (i = 0; i < n; i++) {
        if (ngx_proxy_wasm_key_is(key, (u_char *) kv[i].key.data,
                                  kv[i].key.len))
        {
            len += kv[i].value.len + (found ? 1 : 0);
            found++;
        }
    }

    if (found == 0) {
        return PROXY_RESULT_NOT_FOUND;
    }

    p = ngx_pnalloc(pool, len ? len : 1);
    if (p == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    value->data = (const char *) p;
    value->len = len;

    found = 0;

    for (i = 0; i < n; i++) {
        if (ngx_proxy_wasm_key_is(key, (u_char *) kv[i].key.data,
                                  kv[i].key.len))
        {
            if (found++) {
                *p++ = ',';
            }

            p = ngx_cpymem(p, kv[i].value.data, kv[i].value.len);
        }
    }

    return PROXY_RESULT_OK;
}


proxy_status_t
ngx_proxy_wasm_prop_pairs(ngx_pool_t *pool, pw_kv *kv, size_t n,
    const pw_str *rest, size_t nrest, pw_str *value)
{
    if (nrest == 0) {
        return ngx_proxy_wasm_prop_map(pool, kv, n, value);
    }

    if (nrest == 1) {
        return ngx_proxy_wasm_prop_map_key(pool, kv, n, rest[0], value);
    }

    return PROXY_RESULT_NOT_FOUND;
}


/* "ip:port" ("[ipv6]:port") of a socket address. */
proxy_status_t
ngx_proxy_wasm_prop_addr(ngx_pool_t *pool, struct sockaddr *sa,
    socklen_t socklen, ngx_uint_t port, pw_str *value)
{
    u_char  *p;
    size_t   len;

    if (sa == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (port) {
        return ngx_proxy_wasm_prop_int(pool, ngx_inet_get_port(sa), value);
    }

    p = ngx_pnalloc(pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    len = ngx_sock_ntop(sa, socklen, p, NGX_SOCKADDR_STRLEN, 1);

    value->data = (const char *) p;
    value->len = len;

    return PROXY_RESULT_OK;
}


static proxy_status_t
ngx_proxy_wasm_prop_connection(ngx_pool_t *pool, ngx_connection_t *c,
    const pw_str *p, size_t n, pw_str *value)
{
    ngx_str_t  v;

    if (n != 1) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (NAME_IS("id")) {
        return ngx_proxy_wasm_prop_int(pool, (int64_t) c->number, value);
    }

#if (NGX_SSL)
    if (c->ssl) {
        const char  *name;
        X509        *cert;

        if (NAME_IS("mtls")) {
            cert = SSL_get_peer_certificate(c->ssl->connection);
            if (cert) {
                X509_free(cert);
            }

            return ngx_proxy_wasm_prop_bool(cert != NULL
                       && SSL_get_verify_result(c->ssl->connection)
                          == X509_V_OK, value);
        }

        if (NAME_IS("requested_server_name")) {
            name = SSL_get_servername(c->ssl->connection,
                                      TLSEXT_NAMETYPE_host_name);
            v.data = (u_char *) (name ? name : "");
            v.len = ngx_strlen(v.data);
            return ngx_proxy_wasm_prop_str(&v, value);
        }

        if (NAME_IS("tls_version")) {
            v.data = (u_char *) SSL_get_version(c->ssl->connection);
            v.len = ngx_strlen(v.data);
            return ngx_proxy_wasm_prop_str(&v, value);
        }
    }
#endif

    if (NAME_IS("mtls")) {
        return ngx_proxy_wasm_prop_bool(0, value);
    }

    if (NAME_IS("requested_server_name")) {
        ngx_str_set(&v, "");
        return ngx_proxy_wasm_prop_str(&v, value);
    }

    return PROXY_RESULT_NOT_FOUND;     /* tls_version without TLS */
}


/* The properties of a path of n >= 2 segments that do not depend on the
 * subsystem (c: the client connection); PROXY_RESULT_NOT_FOUND for any
 * other name. */
proxy_status_t
ngx_proxy_wasm_property(ngx_pool_t *pool, ngx_connection_t *c,
    const pw_str *p, size_t n, pw_str *value)
{
    if (NAME_IS("source") || NAME_IS("destination")) {
        if (n == 2
            && (ngx_proxy_wasm_key_is(p[1], (u_char *) "address", 7)
                || ngx_proxy_wasm_key_is(p[1], (u_char *) "port", 4)))
        {
            if (NAME_IS("destination")
                && ngx_connection_local_sockaddr(c, NULL, 0) != NGX_OK)
            {
                return PROXY_RESULT_INTERNAL_FAILURE;
            }

            return ngx_proxy_wasm_prop_addr(pool,
                       NAME_IS("source") ? c->sockaddr : c->local_sockaddr,
                       NAME_IS("source") ? c->socklen : c->local_socklen,
                       p[1].len == 4, value);
        }

        return PROXY_RESULT_NOT_FOUND;
    }

    if (NAME_IS("connection")) {
        return ngx_proxy_wasm_prop_connection(pool, c, p + 1, n - 1, value);
    }

    if (NAME_IS("node")) {
        if (n == 2 && ngx_proxy_wasm_key_is(p[1], (u_char *) "id", 2)) {
            return ngx_proxy_wasm_prop_str((ngx_str_t *) &ngx_cycle->hostname,
                                           value);
        }
    }

    return PROXY_RESULT_NOT_FOUND;
}
