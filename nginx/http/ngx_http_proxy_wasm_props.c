/*
 * ngx_http_proxy_wasm_props.c -- HTTP properties (request.*, response.*,
 * upstream.*, xds.*, ngx.<variable>) over the common ones
 * (../common/ngx_proxy_wasm_props.c), and the values plugins store with
 * proxy_set_property. See docs/PROPERTIES.md.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


#define NAME_IS(s)  ngx_proxy_wasm_key_is(p[0], (u_char *) s, sizeof(s) - 1)


static proxy_status_t ngx_http_proxy_wasm_variable(ngx_http_request_t *r,
    pw_str name, pw_str *value);


static int64_t
ngx_http_proxy_wasm_start_ns(ngx_http_request_t *r)
{
    return (int64_t) r->start_sec * 1000000000 
           + (int64_t) r->start_msec * 1000000;
}


static proxy_status_t
ngx_http_proxy_wasm_prop_request(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, const pw_str *p, size_t n, pw_str *value)
{
    u_char           *q;
    size_t            npairs;
    pw_kv            *pairs;
    ngx_str_t         v;
    ngx_time_t       *tp;
    proxy_status_t    st;

    static pw_str  x_request_id = { "x-request-id", 12 };

    if (NAME_IS("headers")) {
        st = ngx_http_proxy_wasm_in_pairs(r, &pairs, &npairs);
        if (st != PROXY_RESULT_OK) {
            return st;
        }

        return ngx_proxy_wasm_prop_pairs(r->pool, pairs, npairs, p + 1,
                                         n - 1, value);
    }

    if (n != 1) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (NAME_IS("path")) {
        return ngx_proxy_wasm_prop_str(&r->unparsed_uri, value);
    }

    if (NAME_IS("url_path")) {
        v = r->unparsed_uri;
        q = ngx_strlchr(v.data, v.data + v.len, '?');
        if (q) {
            v.len = q - v.data;
        }

        return ngx_proxy_wasm_prop_str(&v, value);
    }

    if (NAME_IS("query")) {
        return ngx_proxy_wasm_prop_str(&r->args, value);
    }

    if (NAME_IS("method")) {
        return ngx_proxy_wasm_prop_str(&r->method_name, value);
    }

    if (NAME_IS("host")) {
        return ngx_proxy_wasm_prop_str(ngx_http_proxy_wasm_authority(r),
                                       value);
    }

    if (NAME_IS("scheme")) {
        (void) ngx_http_proxy_wasm_in_pseudo(r, (pw_str) { ":scheme", 7 },
                                             &v);
        return ngx_proxy_wasm_prop_str(&v, value);
    }

    if (NAME_IS("protocol")) {
        switch (r->http_version) {
        case NGX_HTTP_VERSION_9:
            ngx_str_set(&v, "HTTP/0.9");
            break;
        case NGX_HTTP_VERSION_10:
            ngx_str_set(&v, "HTTP/1.0");
            break;
        case NGX_HTTP_VERSION_20:
            ngx_str_set(&v, "HTTP/2");
            break;
#ifdef NGX_HTTP_VERSION_30
        case NGX_HTTP_VERSION_30:           /* nginx >= 1.25 */
            ngx_str_set(&v, "HTTP/3");
            break;
#endif
        default:
            ngx_str_set(&v, "HTTP/1.1");
            break;
        }

        return ngx_proxy_wasm_prop_str(&v, value);
    }

    if (NAME_IS("referer") || NAME_IS("useragent")) {
        st = ngx_http_proxy_wasm_in_get(r, NAME_IS("referer")
                                           ? (pw_str) { "referer", 7 }
                                           : (pw_str) { "user-agent", 10 },
                                        value);
        return st;
    }

    if (NAME_IS("id")) {
        if (ngx_http_proxy_wasm_in_get(r, x_request_id, value)
            == PROXY_RESULT_OK)
        {
            return PROXY_RESULT_OK;
        }

        return ngx_http_proxy_wasm_variable(r, (pw_str) { "request_id", 10 },
                                            value);
    }

    if (NAME_IS("time")) {
        return ngx_proxy_wasm_prop_int(r->pool,
                                       ngx_http_proxy_wasm_start_ns(r),
                                       value);
    }

    if (NAME_IS("duration")) {
        tp = ngx_timeofday();
        return ngx_proxy_wasm_prop_int(r->pool,
                   (int64_t) tp->sec * 1000000000
                   + (int64_t) tp->msec * 1000000
                   - ngx_http_proxy_wasm_start_ns(r), value);
    }

    if (NAME_IS("size")) {
        return ngx_proxy_wasm_prop_int(r->pool,
                   ngx_max(r->headers_in.content_length_n, 0), value);
    }

    if (NAME_IS("total_size")) {
        return ngx_proxy_wasm_prop_int(r->pool, r->request_length, value);
    }

    return PROXY_RESULT_NOT_FOUND;
}


static proxy_status_t
ngx_http_proxy_wasm_prop_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, const pw_str *p, size_t n, pw_str *value)
{
    off_t                     size;
    size_t                    npairs;
    pw_kv                    *pairs;
    ngx_str_t                 v;
    proxy_status_t            st;
    const pw_local_response  *lr;

    if (ctx == NULL || ctx->phase < NGX_HTTP_PROXY_WASM_PHASE_RESP) {
        return PROXY_RESULT_NOT_FOUND;  /* no response yet */
    }

    if (NAME_IS("headers")) {
        st = ngx_http_proxy_wasm_out_pairs(r, &pairs, &npairs);
        if (st != PROXY_RESULT_OK) {
            return st;
        }

        return ngx_proxy_wasm_prop_pairs(r->pool, pairs, npairs, p + 1,
                                         n - 1, value);
    }

    if (NAME_IS("trailers")) {
        st = ngx_http_proxy_wasm_list_pairs(r, &r->headers_out.trailers,
                                            &pairs, &npairs);
        if (st != PROXY_RESULT_OK) {
            return st;
        }

        return ngx_proxy_wasm_prop_pairs(r->pool, pairs, npairs, p + 1,
                                         n - 1, value);
    }

    if (n != 1) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (NAME_IS("code")) {
        return ngx_proxy_wasm_prop_int(r->pool, r->headers_out.status, value);
    }

    if (NAME_IS("code_details")) {
        lr = NULL;

        if (ctx->local && ctx->local_stream && ctx->local_stream->link->stream
            && !ctx->local_stream->link->ended)
        {
            lr = pw_stream_local_response(ctx->local_stream->link->stream);
        }

        if (lr && lr->details.len) {
            *value = lr->details;
            return PROXY_RESULT_OK;
        }

        if (ctx->local) {
            ngx_str_set(&v, "wasm_local_reply");

        } else if (r->upstream) {
            ngx_str_set(&v, "via_upstream");

        } else {
            ngx_str_set(&v, "direct_response");
        }

        return ngx_proxy_wasm_prop_str(&v, value);
    }

    if (NAME_IS("flags")) {
        return ngx_proxy_wasm_prop_int(r->pool, 0, value);
    }

    if (NAME_IS("size")) {
        /* the body as the plugins passed it (before any chunked framing) */
        size = ctx->out_size;
        return ngx_proxy_wasm_prop_int(r->pool, size, value);
    }

    if (NAME_IS("total_size")) {
        return ngx_proxy_wasm_prop_int(r->pool, r->connection->sent, value);
    }

    return PROXY_RESULT_NOT_FOUND;
}


static proxy_status_t
ngx_http_proxy_wasm_prop_upstream(ngx_http_request_t *r, const pw_str *p,
    size_t n, pw_str *value)
{
    u_char                     *colon;
    ngx_int_t                   pn;
    ngx_str_t                  *name;
    ngx_uint_t                  port;
    ngx_http_upstream_t        *u;
    ngx_http_upstream_state_t  *state;

    if (n != 1 || !(NAME_IS("address") || NAME_IS("port"))) {
        return PROXY_RESULT_NOT_FOUND;
    }

    port = NAME_IS("port");
    u = r->upstream;
    name = NULL;

    if (u && u->peer.sockaddr) {
        return ngx_proxy_wasm_prop_addr(r->pool, u->peer.sockaddr,
                                        u->peer.socklen, port, value);
    }

    if (u && u->peer.name) {
        name = u->peer.name;

    } else if (r->upstream_states && r->upstream_states->nelts) {
        /* the last peer tried, once the upstream is finalized */
        state = r->upstream_states->elts;
        name = state[r->upstream_states->nelts - 1].peer;
    }

    if (name == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (!port) {
        return ngx_proxy_wasm_prop_str(name, value);
    }

    colon = ngx_strlchr(name->data, name->data + name->len, ']');
    colon = ngx_strlchr(colon ? colon : name->data, name->data + name->len,
                        ':');
    if (colon == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    pn = ngx_atoi(colon + 1, name->data + name->len - colon - 1);
    if (pn == NGX_ERROR) {
        return PROXY_RESULT_NOT_FOUND;
    }

    return ngx_proxy_wasm_prop_int(r->pool, pn, value);
}


/* xds.* and the legacy top-level names, where nginx has an equivalent. */
static proxy_status_t
ngx_http_proxy_wasm_prop_xds(ngx_http_request_t *r, const pw_str *p,
    size_t n, pw_str *value)
{
    ngx_str_t                  v;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_core_srv_conf_t  *cscf;

    if (n != 1) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (NAME_IS("route_name")) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        return ngx_proxy_wasm_prop_str(&clcf->name, value);
    }

    if (NAME_IS("virtual_host_name")) {
        cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
        return ngx_proxy_wasm_prop_str(&cscf->server_name, value);
    }

    if (NAME_IS("cluster_name")) {
        if (r->upstream == NULL || r->upstream->upstream == NULL) {
            return PROXY_RESULT_NOT_FOUND;
        }

        v = r->upstream->upstream->host;
        return ngx_proxy_wasm_prop_str(&v, value);
    }

    return PROXY_RESULT_NOT_FOUND;
}


/* ngx.<name>: any nginx variable. */
static proxy_status_t
ngx_http_proxy_wasm_variable(ngx_http_request_t *r, pw_str name,
    pw_str *value)
{
    ngx_str_t                   n;
    ngx_uint_t                  key;
    ngx_http_variable_value_t  *vv;

    if (name.len == 0) {
        return PROXY_RESULT_NOT_FOUND;
    }

    n.len = name.len;
    n.data = ngx_pnalloc(r->pool, name.len);
    if (n.data == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    key = ngx_hash_strlow(n.data, (u_char *) name.data, name.len);

    vv = ngx_http_get_variable(r, &n, key);

    if (vv == NULL || vv->not_found) {
        return PROXY_RESULT_NOT_FOUND;
    }

    value->data = (const char *) vv->data;
    value->len = vv->len;

    return PROXY_RESULT_OK;
}


static proxy_status_t
ngx_http_proxy_wasm_set_variable(ngx_http_request_t *r, pw_str name,
    pw_str value)
{
    u_char                     *low, *data;
    ngx_uint_t                  key;
    ngx_http_variable_t        *v;
    ngx_http_variable_value_t  *vv;
    ngx_http_core_main_conf_t  *cmcf;

    low = ngx_pnalloc(r->pool, name.len ? name.len : 1);
    data = ngx_pnalloc(r->pool, value.len ? value.len : 1);
    vv = ngx_pcalloc(r->pool, sizeof(ngx_http_variable_value_t));
    if (low == NULL || data == NULL || vv == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    key = ngx_hash_strlow(low, (u_char *) name.data, name.len);

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);

    v = ngx_hash_find(&cmcf->variables_hash, key, low, name.len);
    if (v == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    ngx_memcpy(data, value.data, value.len);
    vv->data = data;
    vv->len = value.len;
    vv->valid = 1;

    if (v->set_handler) {
        v->set_handler(r, vv, v->data);
        return PROXY_RESULT_OK;
    }

    if ((v->flags & NGX_HTTP_VAR_CHANGEABLE)
        && (v->flags & NGX_HTTP_VAR_INDEXED))
    {
        r->variables[v->index] = *vv;
        return PROXY_RESULT_OK;
    }

    return PROXY_RESULT_NOT_FOUND;      /* read-only */
}


/* Values plugins stored with proxy_set_property, per request. */
static ngx_http_proxy_wasm_prop_t *
ngx_http_proxy_wasm_prop_find(ngx_http_request_t *r, ngx_str_t *path)
{
    ngx_uint_t                   i;
    ngx_http_proxy_wasm_req_t   *req;
    ngx_http_proxy_wasm_prop_t  *prop;

    req = ngx_http_proxy_wasm_req(r, 0);
    if (req == NULL || req->props == NULL) {
        return NULL;
    }

    prop = req->props->elts;

    for (i = 0; i < req->props->nelts; i++) {
        if (prop[i].path.len == path->len
            && ngx_memcmp(prop[i].path.data, path->data, path->len) == 0)
        {
            return &prop[i];
        }
    }

    return NULL;
}


/* The path as one string, segments joined with '.'. */
static ngx_int_t
ngx_http_proxy_wasm_prop_path(ngx_http_request_t *r, const pw_str *path,
    size_t nseg, ngx_str_t *out)
{
    size_t   i, len;
    u_char  *p;

    len = 0;

    for (i = 0; i < nseg; i++) {
        len += path[i].len + 1;
    }

    p = ngx_pnalloc(r->pool, len ? len : 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for (i = 0; i < nseg; i++) {
        if (i) {
            *p++ = '.';
        }

        p = ngx_cpymem(p, path[i].data, path[i].len);
    }

    out->len = p - out->data;

    return NGX_OK;
}


/* A single "a.b.c" segment is accepted as "a\0b\0c". */
static const pw_str *
ngx_http_proxy_wasm_split_path(ngx_http_request_t *r, const pw_str *path,
    size_t *nseg)
{
    size_t   i, n;
    pw_str  *seg;

    if (*nseg != 1 || ngx_strlchr((u_char *) path[0].data,
                                  (u_char *) path[0].data + path[0].len, '.')
                      == NULL)
    {
        return path;
    }

    n = 1;

    for (i = 0; i < path[0].len; i++) {
        if (path[0].data[i] == '.') {
            n++;
        }
    }

    seg = ngx_palloc(r->pool, n * sizeof(pw_str));
    if (seg == NULL) {
        return path;
    }

    n = 0;
    seg[0].data = path[0].data;
    seg[0].len = 0;

    for (i = 0; i < path[0].len; i++) {
        if (path[0].data[i] == '.') {
            n++;
            seg[n].data = path[0].data + i + 1;
            seg[n].len = 0;
            continue;
        }

        seg[n].len++;
    }

    /* ngx.<variable> keeps the rest whole (no variable has a dot) */
    *nseg = n + 1;

    return seg;
}


proxy_status_t
ngx_http_proxy_wasm_get_property(void *host, void *stream, const pw_str *path,
    size_t nseg, pw_str *value)
{
    ngx_str_t                    joined;
    proxy_status_t               st;
    ngx_http_request_t          *r;
    ngx_http_proxy_wasm_prop_t  *prop;
    ngx_http_proxy_wasm_ctx_t   *ctx;
    const pw_str                *p;

    r = ngx_http_proxy_wasm_request(stream);

    if (r == NULL || nseg == 0) {
        return PROXY_RESULT_NOT_FOUND;
    }

    ctx = ((ngx_http_proxy_wasm_stream_t *) stream)->ctx;
    p = ngx_http_proxy_wasm_split_path(r, path, &nseg);

    st = PROXY_RESULT_NOT_FOUND;

    if (nseg >= 2) {
        if (NAME_IS("request")) {
            st = ngx_http_proxy_wasm_prop_request(r, ctx, p + 1, nseg - 1,
                                                  value);

        } else if (NAME_IS("response")) {
            st = ngx_http_proxy_wasm_prop_response(r, ctx, p + 1, nseg - 1,
                                                   value);

        } else if (NAME_IS("upstream")) {
            st = ngx_http_proxy_wasm_prop_upstream(r, p + 1, nseg - 1, value);

        } else if (NAME_IS("xds")) {
            st = ngx_http_proxy_wasm_prop_xds(r, p + 1, nseg - 1, value);

        } else if (NAME_IS("ngx")) {
            if (nseg == 2) {
                st = ngx_http_proxy_wasm_variable(r, p[1], value);
            }

        } else {
            /* source.*, destination.*, connection.*, node.id */
            st = ngx_proxy_wasm_property(r->pool, r->connection, p, nseg,
                                         value);
        }

    } else if (NAME_IS("route_name") || NAME_IS("cluster_name")) {
        st = ngx_http_proxy_wasm_prop_xds(r, p, 1, value);
    }

    if (st != PROXY_RESULT_NOT_FOUND) {
        return st;
    }

    /* Envoy falls back to what plugins stored (filter state) */

    if (ngx_http_proxy_wasm_prop_path(r, p, nseg, &joined) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    prop = ngx_http_proxy_wasm_prop_find(r, &joined);
    if (prop == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    return ngx_proxy_wasm_prop_str(&prop->value, value);
}


proxy_status_t
ngx_http_proxy_wasm_set_property(void *host, void *stream, const pw_str *path,
    size_t nseg, pw_str value)
{
    ngx_str_t                    joined;
    const pw_str                *p;
    ngx_http_request_t          *r;
    ngx_http_proxy_wasm_req_t   *req;
    ngx_http_proxy_wasm_prop_t  *prop;

    r = ngx_http_proxy_wasm_request(stream);

    if (r == NULL || nseg == 0) {
        return PROXY_RESULT_NOT_FOUND;
    }

    p = ngx_http_proxy_wasm_split_path(r, path, &nseg);

    if (NAME_IS("ngx")) {
        if (nseg != 2) {
            return PROXY_RESULT_NOT_FOUND;
        }

        return ngx_http_proxy_wasm_set_variable(r, p[1], value);
    }

    /* anything else is stored for this request, readable with
     * proxy_get_property under the same path */

    if (ngx_http_proxy_wasm_prop_path(r, p, nseg, &joined) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    prop = ngx_http_proxy_wasm_prop_find(r, &joined);

    if (prop == NULL) {
        req = ngx_http_proxy_wasm_req(r, 1);
        if (req == NULL) {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }

        if (req->props == NULL) {
            req->props = ngx_array_create(r->pool, 4,
                                          sizeof(ngx_http_proxy_wasm_prop_t));
            if (req->props == NULL) {
                return PROXY_RESULT_INTERNAL_FAILURE;
            }
        }

        prop = ngx_array_push(req->props);
        if (prop == NULL) {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }

        prop->path = joined;
    }

    prop->value.len = value.len;
    prop->value.data = ngx_pnalloc(r->pool, value.len ? value.len : 1);
    if (prop->value.data == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    ngx_memcpy(prop->value.data, value.data, value.len);

    return PROXY_RESULT_OK;
}

#undef NAME_IS
