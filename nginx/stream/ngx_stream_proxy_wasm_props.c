/*
 * ngx_stream_proxy_wasm_props.c -- the properties of a stream session
 * (docs/PROPERTIES.md): upstream.address / .port (the peer the proxy
 * connected to), connection.requested_server_name (TLS terminated by
 * nginx, else ssl_preread's $ssl_preread_server_name), ngx.<var> (stream
 * variables), filter_state.* (values set by the plugins), and those of
 * ../common (source.*, destination.*, connection.*, node.id).
 *
 * proxy_set_property stores the value for the session; setting
 * filter_state.envoy.tcp_proxy.cluster (what Envoy's set_envoy_filter_state
 * foreign function sets for its TCP proxy) or upstream.cluster picks the
 * upstream: $proxy_wasm_upstream has the value, for
 * `proxy_pass $proxy_wasm_upstream;` (an upstream{} name or host:port).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_stream.h>

#include "ngx_stream_proxy_wasm.h"


static ngx_int_t ngx_stream_proxy_wasm_upstream_variable(
    ngx_stream_session_t *s, ngx_stream_variable_value_t *v,
    uintptr_t data);


#define NAME_IS(seg, s)                                                      \
    ngx_proxy_wasm_key_is(seg, (u_char *) s, sizeof(s) - 1)


/* path segments joined with '.' */
static ngx_int_t
ngx_stream_proxy_wasm_join(ngx_pool_t *pool, const pw_str *path, size_t n,
    ngx_str_t *out)
{
    size_t   i, len;
    u_char  *p;

    len = 0;

    for (i = 0; i < n; i++) {
        len += path[i].len + 1;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = '.';
        }

        p = ngx_cpymem(p, path[i].data, path[i].len);
    }

    out->len = p - out->data;

    return NGX_OK;
}


static proxy_status_t
ngx_stream_proxy_wasm_var(ngx_stream_proxy_wasm_ctx_t *ctx, u_char *name,
    size_t len, pw_str *value)
{
    u_char                       *low;
    ngx_str_t                     n;
    ngx_uint_t                    key;
    ngx_stream_variable_value_t  *vv;

    low = ngx_pnalloc(ctx->tmp, len);
    if (low == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    key = ngx_hash_strlow(low, name, len);
    n.data = low;
    n.len = len;

    vv = ngx_stream_get_variable(ctx->s, &n, key);

    if (vv == NULL || vv->not_found) {
        return PROXY_RESULT_NOT_FOUND;
    }

    value->data = (const char *) vv->data;
    value->len = vv->len;

    return PROXY_RESULT_OK;
}


proxy_status_t
ngx_stream_proxy_wasm_get_property(void *host, void *stream,
    const pw_str *path, size_t nseg, pw_str *value)
{
    ngx_str_t                      joined;
    ngx_uint_t                     i;
    ngx_connection_t              *c;
    ngx_stream_upstream_t         *u;
    ngx_stream_proxy_wasm_ctx_t   *ctx;
    ngx_stream_proxy_wasm_prop_t  *props;

    ctx = ngx_stream_proxy_wasm_ctx(stream);

    if (ctx == NULL || nseg == 0) {
        return PROXY_RESULT_NOT_FOUND;
    }

    c = ctx->s->connection;

    if (ctx->props) {
        if (ngx_stream_proxy_wasm_join(ctx->tmp, path, nseg, &joined)
            != NGX_OK)
        {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }

        props = ctx->props->elts;

        for (i = 0; i < ctx->props->nelts; i++) {
            if (props[i].path.len == joined.len
                && ngx_strncmp(props[i].path.data, joined.data, joined.len)
                   == 0)
            {
                return ngx_proxy_wasm_prop_str(&props[i].value, value);
            }
        }
    }

    if (nseg == 2 && NAME_IS(path[0], "ngx")) {
        return ngx_stream_proxy_wasm_var(ctx, (u_char *) path[1].data,
                                         path[1].len, value);
    }

    if (nseg == 2 && NAME_IS(path[0], "upstream")) {
        u = ctx->s->upstream;

        if (NAME_IS(path[1], "address") || NAME_IS(path[1], "port")) {
            if (u == NULL || u->peer.sockaddr == NULL) {
                return PROXY_RESULT_NOT_FOUND;
            }

            return ngx_proxy_wasm_prop_addr(ctx->tmp, u->peer.sockaddr,
                                            u->peer.socklen,
                                            path[1].len == 4, value);
        }

        return PROXY_RESULT_NOT_FOUND;
    }

    if (nseg == 2 && NAME_IS(path[0], "connection")
        && NAME_IS(path[1], "requested_server_name")
#if (NGX_STREAM_SSL)
        && c->ssl == NULL
#endif
       )
    {
        /* TLS passthrough: what ssl_preread read, if it is in use */
        if (ngx_stream_proxy_wasm_var(ctx,
                                      (u_char *) "ssl_preread_server_name",
                                      23, value)
            == PROXY_RESULT_OK)
        {
            return PROXY_RESULT_OK;
        }
    }

    if (nseg < 2) {
        return PROXY_RESULT_NOT_FOUND;
    }

    return ngx_proxy_wasm_property(ctx->tmp, c, path, nseg, value);
}


proxy_status_t
ngx_stream_proxy_wasm_set_property(void *host, void *stream,
    const pw_str *path, size_t nseg, pw_str value)
{
    ngx_str_t                      joined;
    ngx_uint_t                     i;
    ngx_pool_t                    *pool;
    ngx_stream_proxy_wasm_ctx_t   *ctx;
    ngx_stream_proxy_wasm_prop_t  *props, *prop;

    ctx = ngx_stream_proxy_wasm_ctx(stream);

    if (ctx == NULL || nseg == 0) {
        return PROXY_RESULT_NOT_FOUND;
    }

    pool = ctx->s->connection->pool;

    if (ngx_stream_proxy_wasm_join(pool, path, nseg, &joined) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    if (ctx->props == NULL) {
        ctx->props = ngx_array_create(pool, 2,
                                      sizeof(ngx_stream_proxy_wasm_prop_t));
        if (ctx->props == NULL) {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }
    }

    prop = NULL;
    props = ctx->props->elts;

    for (i = 0; i < ctx->props->nelts; i++) {
        if (props[i].path.len == joined.len
            && ngx_strncmp(props[i].path.data, joined.data, joined.len) == 0)
        {
            prop = &props[i];
            break;
        }
    }

    if (prop == NULL) {
        prop = ngx_array_push(ctx->props);
        if (prop == NULL) {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }

        prop->path = joined;
    }

    prop->value.data = ngx_pnalloc(pool, value.len ? value.len : 1);
    if (prop->value.data == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    ngx_memcpy(prop->value.data, value.data, value.len);
    prop->value.len = value.len;

    if ((joined.len == sizeof("filter_state.envoy.tcp_proxy.cluster") - 1
         && ngx_strncmp(joined.data, "filter_state.envoy.tcp_proxy.cluster",
                        joined.len)
            == 0)
        || (joined.len == sizeof("upstream.cluster") - 1
            && ngx_strncmp(joined.data, "upstream.cluster", joined.len) == 0))
    {
        ctx->upstream = prop->value;
    }

    return PROXY_RESULT_OK;
}


static ngx_int_t
ngx_stream_proxy_wasm_upstream_variable(ngx_stream_session_t *s,
    ngx_stream_variable_value_t *v, uintptr_t data)
{
    ngx_stream_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_stream_get_module_ctx(s, ngx_stream_proxy_wasm_module);

    if (ctx == NULL || ctx->upstream.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ctx->upstream.data;
    v->len = ctx->upstream.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


ngx_int_t
ngx_stream_proxy_wasm_add_variables(ngx_conf_t *cf)
{
    ngx_str_t                  name = ngx_string("proxy_wasm_upstream");
    ngx_stream_variable_t     *v;

    v = ngx_stream_add_variable(cf, &name, NGX_STREAM_VAR_NOCACHEABLE);
    if (v == NULL) {
        return NGX_ERROR;
    }

    v->get_handler = ngx_stream_proxy_wasm_upstream_variable;

    return NGX_OK;
}
