/*
 * ngx_http_proxy_wasm_headers.c -- nginx's header lists as the header maps
 * see them: request headers with the pseudo-headers first, response
 * headers with those nginx keeps outside the list (:status, content-type,
 * content-length, last-modified), response trailers; writes keep nginx's
 * shortcut pointers (r->headers_in.host & co.) consistent.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


/* nginx keeps some headers in dedicated fields of headers_in/headers_out.
 * Up to nginx 1.22, a header that may repeat (multi) has an ngx_array_t of
 * element pointers there, the others a pointer to the first one; since
 * 1.23.0 every field is an element pointer and elements of the same name
 * are chained by their `next`. */
#if (nginx_version >= 1023000)
#define NGX_HTTP_PROXY_WASM_CHAINED  1
#else
#define NGX_HTTP_PROXY_WASM_CHAINED  0
#endif

typedef struct {
    ngx_str_t                        name;       /* lower case */
    ngx_uint_t                       offset;
    ngx_uint_t                       multi;      /* ngx_array_t of elt * */
} ngx_http_proxy_wasm_shortcut_t;


static ngx_http_proxy_wasm_shortcut_t  ngx_http_proxy_wasm_headers_in[] = {
    { ngx_string("host"), offsetof(ngx_http_headers_in_t, host), 0 },
    { ngx_string("connection"),
      offsetof(ngx_http_headers_in_t, connection), 0 },
    { ngx_string("if-modified-since"),
      offsetof(ngx_http_headers_in_t, if_modified_since), 0 },
    { ngx_string("if-unmodified-since"),
      offsetof(ngx_http_headers_in_t, if_unmodified_since), 0 },
    { ngx_string("if-match"), offsetof(ngx_http_headers_in_t, if_match), 0 },
    { ngx_string("if-none-match"),
      offsetof(ngx_http_headers_in_t, if_none_match), 0 },
    { ngx_string("user-agent"),
      offsetof(ngx_http_headers_in_t, user_agent), 0 },
    { ngx_string("referer"), offsetof(ngx_http_headers_in_t, referer), 0 },
    { ngx_string("content-length"),
      offsetof(ngx_http_headers_in_t, content_length), 0 },
    { ngx_string("content-range"),
      offsetof(ngx_http_headers_in_t, content_range), 0 },
    { ngx_string("content-type"),
      offsetof(ngx_http_headers_in_t, content_type), 0 },
    { ngx_string("range"), offsetof(ngx_http_headers_in_t, range), 0 },
    { ngx_string("if-range"), offsetof(ngx_http_headers_in_t, if_range), 0 },
    { ngx_string("transfer-encoding"),
      offsetof(ngx_http_headers_in_t, transfer_encoding), 0 },
    { ngx_string("te"), offsetof(ngx_http_headers_in_t, te), 0 },
    { ngx_string("expect"), offsetof(ngx_http_headers_in_t, expect), 0 },
    { ngx_string("upgrade"), offsetof(ngx_http_headers_in_t, upgrade), 0 },
#if (NGX_HTTP_GZIP || NGX_HTTP_HEADERS)
    { ngx_string("accept-encoding"),
      offsetof(ngx_http_headers_in_t, accept_encoding), 0 },
    { ngx_string("via"), offsetof(ngx_http_headers_in_t, via), 0 },
#endif
    { ngx_string("authorization"),
      offsetof(ngx_http_headers_in_t, authorization), 0 },
    { ngx_string("keep-alive"),
      offsetof(ngx_http_headers_in_t, keep_alive), 0 },
#if (NGX_HTTP_X_FORWARDED_FOR)
    { ngx_string("x-forwarded-for"),
      offsetof(ngx_http_headers_in_t, x_forwarded_for), 1 },
#endif
#if (NGX_HTTP_REALIP)
    { ngx_string("x-real-ip"),
      offsetof(ngx_http_headers_in_t, x_real_ip), 0 },
#endif
#if (NGX_HTTP_HEADERS)
    { ngx_string("accept"), offsetof(ngx_http_headers_in_t, accept), 0 },
    { ngx_string("accept-language"),
      offsetof(ngx_http_headers_in_t, accept_language), 0 },
#endif
#if (NGX_HTTP_DAV)
    { ngx_string("depth"), offsetof(ngx_http_headers_in_t, depth), 0 },
    { ngx_string("destination"),
      offsetof(ngx_http_headers_in_t, destination), 0 },
    { ngx_string("overwrite"),
      offsetof(ngx_http_headers_in_t, overwrite), 0 },
    { ngx_string("date"), offsetof(ngx_http_headers_in_t, date), 0 },
#endif
#if (NGX_HTTP_PROXY_WASM_CHAINED)
    { ngx_string("cookie"), offsetof(ngx_http_headers_in_t, cookie), 1 },
#else
    { ngx_string("cookie"), offsetof(ngx_http_headers_in_t, cookies), 1 },
#endif
    { ngx_null_string, 0, 0 }
};


/* Content-Type, and Content-Length / Last-Modified when nginx holds them
 * as numbers only, are not in headers_out.headers: handled separately. */
static ngx_http_proxy_wasm_shortcut_t  ngx_http_proxy_wasm_headers_out[] = {
    { ngx_string("server"), offsetof(ngx_http_headers_out_t, server), 0 },
    { ngx_string("date"), offsetof(ngx_http_headers_out_t, date), 0 },
    { ngx_string("content-length"),
      offsetof(ngx_http_headers_out_t, content_length), 0 },
    { ngx_string("content-encoding"),
      offsetof(ngx_http_headers_out_t, content_encoding), 0 },
    { ngx_string("location"), offsetof(ngx_http_headers_out_t, location), 0 },
    { ngx_string("refresh"), offsetof(ngx_http_headers_out_t, refresh), 0 },
    { ngx_string("last-modified"),
      offsetof(ngx_http_headers_out_t, last_modified), 0 },
    { ngx_string("content-range"),
      offsetof(ngx_http_headers_out_t, content_range), 0 },
    { ngx_string("accept-ranges"),
      offsetof(ngx_http_headers_out_t, accept_ranges), 0 },
    { ngx_string("www-authenticate"),
      offsetof(ngx_http_headers_out_t, www_authenticate), 0 },
    { ngx_string("expires"), offsetof(ngx_http_headers_out_t, expires), 0 },
    { ngx_string("etag"), offsetof(ngx_http_headers_out_t, etag), 0 },
    { ngx_string("cache-control"),
      offsetof(ngx_http_headers_out_t, cache_control), 1 },
    { ngx_string("link"), offsetof(ngx_http_headers_out_t, link), 1 },
    { ngx_null_string, 0, 0 }
};


/* The request's pseudo-headers, in the order map_pairs lists them. */
static pw_str  ngx_http_proxy_wasm_pseudo[] = {
    { ":method", 7 }, { ":path", 5 }, { ":authority", 10 }, { ":scheme", 7 }
};


static ngx_int_t
ngx_http_proxy_wasm_elt_is(ngx_table_elt_t *h, pw_str key)
{
    return h->key.len == key.len
           && ngx_strncasecmp(h->key.data, (u_char *) key.data, key.len) == 0;
}


/* The core's rule (pw_header_name_ok, pw_header_value_ok), checked again
 * at nginx's side for names nginx itself takes apart: a name here (or a
 * method) is a token without the pseudo-header ':'. */
ngx_int_t
ngx_http_proxy_wasm_valid(pw_str s, ngx_uint_t name)
{
    if (name) {
        return pw_header_name_ok(s) && s.data[0] != ':';
    }

    return pw_header_value_ok(s);
}


static u_char *
ngx_http_proxy_wasm_lower(ngx_pool_t *pool, u_char *src, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, len ? len : 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_strlow(p, src, len);

    return p;
}


/* The first letters of a table's names, as bits of 'a'..'z' (all its
 * names start with one), computed on first use: most names a plugin adds
 * (x-...) are in no table and are told apart without a scan. */
static uint32_t
ngx_http_proxy_wasm_firsts(ngx_http_proxy_wasm_shortcut_t *table)
{
    uint32_t                        *m;
    ngx_http_proxy_wasm_shortcut_t  *t;

    static uint32_t  in, out;

    m = (table == ngx_http_proxy_wasm_headers_in) ? &in : &out;

    if (*m == 0) {
        for (t = table; t->name.len; t++) {
            *m |= 1u << ((t->name.data[0] - 'a') & 31);
        }
    }

    return *m;
}


static ngx_http_proxy_wasm_shortcut_t *
ngx_http_proxy_wasm_shortcut(ngx_http_proxy_wasm_shortcut_t *table,
    u_char *lowcase, size_t len)
{
    if (len == 0 || lowcase[0] < 'a' || lowcase[0] > 'z'
        || !(ngx_http_proxy_wasm_firsts(table) & 1u << (lowcase[0] - 'a')))
    {
        return NULL;
    }

    for ( /* void */ ; table->name.len; table++) {
        if (table->name.len == len && table->name.data[0] == lowcase[0]
            && ngx_memcmp(table->name.data, lowcase, len) == 0)
        {
            return table;
        }
    }

    return NULL;
}


/* Points the shortcut of h (if any) at h: the first one wins, like nginx's
 * ngx_http_process_header_line(); multi-valued shortcuts collect all (since
 * nginx 1.23, all shortcuts chain every element of their name, in order,
 * as nginx's parser does). */
static ngx_int_t
ngx_http_proxy_wasm_link(ngx_http_request_t *r,
    ngx_http_proxy_wasm_shortcut_t *table, void *base, ngx_table_elt_t *h)
{
#if (!NGX_HTTP_PROXY_WASM_CHAINED)
    ngx_array_t                     *a;
#endif
    ngx_table_elt_t                **ph;
    ngx_http_proxy_wasm_shortcut_t  *sc;

    sc = ngx_http_proxy_wasm_shortcut(table, h->lowcase_key, h->key.len);
    if (sc == NULL) {
        return NGX_OK;
    }

#if (NGX_HTTP_PROXY_WASM_CHAINED)
    (void) r;

    for (ph = (ngx_table_elt_t **) ((char *) base + sc->offset);
         *ph;
         ph = &(*ph)->next)
    {
        if (*ph == h) {
            return NGX_OK;      /* linked already */
        }
    }

    h->next = NULL;
    *ph = h;

    return NGX_OK;
#else
    if (sc->multi) {
        a = (ngx_array_t *) ((char *) base + sc->offset);

        if (a->elts == NULL
            && ngx_array_init(a, r->pool, 2, sizeof(ngx_table_elt_t *))
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        ph = ngx_array_push(a);
        if (ph == NULL) {
            return NGX_ERROR;
        }

        *ph = h;
        return NGX_OK;
    }

    ph = (ngx_table_elt_t **) ((char *) base + sc->offset);

    if (*ph == NULL) {
        *ph = h;
    }

    return NGX_OK;
#endif
}


static void
ngx_http_proxy_wasm_unlink_all(ngx_http_proxy_wasm_shortcut_t *table,
    void *base)
{
#if (!NGX_HTTP_PROXY_WASM_CHAINED)
    ngx_array_t  *a;
#endif

    for ( /* void */ ; table->name.len; table++) {
#if (!NGX_HTTP_PROXY_WASM_CHAINED)
        if (table->multi) {
            a = (ngx_array_t *) ((char *) base + table->offset);
            a->nelts = 0;

            continue;
        }
#endif

        *(ngx_table_elt_t **) ((char *) base + table->offset) = NULL;
    }
}


/* Recomputes every shortcut of headers_in from the list. */
static ngx_int_t
ngx_http_proxy_wasm_relink_in(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_http_proxy_wasm_unlink_all(ngx_http_proxy_wasm_headers_in,
                                   &r->headers_in);

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_proxy_wasm_link(r, ngx_http_proxy_wasm_headers_in,
                                         &r->headers_in, &h[i])
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* Recomputes the shortcut of one header name of headers_out. */
static ngx_int_t
ngx_http_proxy_wasm_relink_out(ngx_http_request_t *r, u_char *lowcase,
    size_t len)
{
    ngx_uint_t                       i;
#if (!NGX_HTTP_PROXY_WASM_CHAINED)
    ngx_array_t                     *a;
#endif
    ngx_list_part_t                 *part;
    ngx_table_elt_t                 *h;
    ngx_http_proxy_wasm_shortcut_t  *sc;

    sc = ngx_http_proxy_wasm_shortcut(ngx_http_proxy_wasm_headers_out,
                                      lowcase, len);
    if (sc == NULL) {
        return NGX_OK;
    }

#if (!NGX_HTTP_PROXY_WASM_CHAINED)
    if (sc->multi) {
        a = (ngx_array_t *) ((char *) &r->headers_out + sc->offset);
        a->nelts = 0;

    } else
#endif
    {
        *(ngx_table_elt_t **) ((char *) &r->headers_out + sc->offset) = NULL;
    }

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0 || h[i].key.len != len
                || ngx_strncasecmp(h[i].key.data, lowcase, len) != 0)
            {
                continue;
            }

            if (h[i].lowcase_key == NULL) {
                h[i].lowcase_key = ngx_http_proxy_wasm_lower(r->pool,
                                                             h[i].key.data,
                                                             len);
                if (h[i].lowcase_key == NULL) {
                    return NGX_ERROR;
                }
            }

            if (ngx_http_proxy_wasm_link(r, ngx_http_proxy_wasm_headers_out,
                                         &r->headers_out, &h[i])
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_proxy_wasm_fill(ngx_http_request_t *r, ngx_table_elt_t *h,
    pw_str key, pw_str value, ngx_uint_t out)
{
    u_char  *p;

    /* one allocation: the name, its lower case, the value and a NUL */
    p = ngx_pnalloc(r->pool, 2 * key.len + value.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h->key.len = key.len;
    h->key.data = p;
    h->lowcase_key = p + key.len;
    h->value.len = value.len;
    h->value.data = p + 2 * key.len;

    ngx_memcpy(h->key.data, key.data, key.len);
    ngx_memcpy(h->value.data, value.data, value.len);
    h->value.data[value.len] = '\0';

    /* request headers: the hash nginx computes when parsing (proxy_pass
     * compares it with proxy_set_header's), that of the lower case name,
     * computed while lowering it; response headers: any non-zero value, 0
     * means "deleted" */
    h->hash = ngx_hash_strlow(h->lowcase_key, h->key.data, key.len);
#if (NGX_HTTP_PROXY_WASM_CHAINED)
    h->next = NULL;
#endif

    if (out && h->hash == 0) {
        h->hash = 1;
    }

    return NGX_OK;
}


ngx_uint_t
ngx_http_proxy_wasm_in_count(ngx_http_request_t *r)
{
    ngx_uint_t        n;
    ngx_list_part_t  *part;

    n = 4; /* :method :path :authority :scheme */

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    return n;
}


ngx_str_t *
ngx_http_proxy_wasm_authority(ngx_http_request_t *r)
{
    ngx_http_proxy_wasm_ctx_t  *ctx;

    /* pseudo-headers are read-only: the Host the client sent, even if a
     * plugin changed or removed the header since */

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);

    if (ctx) {
        return &ctx->authority;
    }

    return r->headers_in.host ? &r->headers_in.host->value
                              : &r->headers_in.server;
}


/* :scheme: a plugin's override, else that of the connection. */
static void
ngx_http_proxy_wasm_in_scheme(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_str_t *value)
{
    if (ctx && ctx->scheme.len) {
        *value = ctx->scheme;
        return;
    }

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(value, "https");
        return;
    }
#endif

    ngx_str_set(value, "http");
}


/* Value of pseudo-header number k of ngx_http_proxy_wasm_pseudo[]. */
static void
ngx_http_proxy_wasm_in_pseudo_at(ngx_http_request_t *r, ngx_uint_t k,
    ngx_str_t *value)
{
    ngx_http_proxy_wasm_ctx_t  *ctx;

    switch (k) {

    case 0:
        *value = r->method_name;
        return;

    case 1:
        *value = r->unparsed_uri;
        return;

    case 2:
        *value = *ngx_http_proxy_wasm_authority(r);
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);

    ngx_http_proxy_wasm_in_scheme(r, ctx, value);
}


/* The four pseudo-headers as kv[0..3], in ngx_http_proxy_wasm_pseudo[]'s
 * order, the module context looked up once. */
static void
ngx_http_proxy_wasm_in_pseudo_kv(ngx_http_request_t *r, pw_kv *kv)
{
    ngx_str_t                   v;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);

    kv[0].key = ngx_http_proxy_wasm_pseudo[0];
    kv[0].value = ngx_proxy_wasm_pw(&r->method_name);
    kv[1].key = ngx_http_proxy_wasm_pseudo[1];
    kv[1].value = ngx_proxy_wasm_pw(&r->unparsed_uri);
    kv[2].key = ngx_http_proxy_wasm_pseudo[2];
    kv[2].value = ngx_proxy_wasm_pw(ctx ? &ctx->authority
                                        : ngx_http_proxy_wasm_authority(r));

    ngx_http_proxy_wasm_in_scheme(r, ctx, &v);
    kv[3].key = ngx_http_proxy_wasm_pseudo[3];
    kv[3].value = ngx_proxy_wasm_pw(&v);
}


ngx_int_t
ngx_http_proxy_wasm_in_pseudo(ngx_http_request_t *r, pw_str key,
    ngx_str_t *value)
{
    ngx_uint_t  k;

    if (key.len == 0 || key.data[0] != ':') {
        return NGX_DECLINED;
    }

    for (k = 0; k < 4; k++) {
        if (ngx_proxy_wasm_key_is(key,
                                  (u_char *) ngx_http_proxy_wasm_pseudo[k].data,
                                  ngx_http_proxy_wasm_pseudo[k].len))
        {
            ngx_http_proxy_wasm_in_pseudo_at(r, k, value);
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


proxy_status_t
ngx_http_proxy_wasm_in_pairs(ngx_http_request_t *r, pw_kv **pairs, size_t *n)
{
    size_t            k;
    ngx_uint_t        i;
    pw_kv            *kv;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    kv = ngx_palloc(r->pool, ngx_http_proxy_wasm_in_count(r) * sizeof(pw_kv));
    if (kv == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    ngx_http_proxy_wasm_in_pseudo_kv(r, kv);
    k = 4;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            kv[k].key.data = (const char *) (h[i].lowcase_key
                                             ? h[i].lowcase_key
                                             : h[i].key.data);
            kv[k].key.len = h[i].key.len;
            kv[k].value = ngx_proxy_wasm_pw(&h[i].value);
            k++;
        }
    }

    *pairs = kv;
    *n = k;

    return PROXY_RESULT_OK;
}


proxy_status_t
ngx_http_proxy_wasm_in_get(ngx_http_request_t *r, pw_str key, pw_str *value)
{
    ngx_str_t         v;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_http_proxy_wasm_in_pseudo(r, key, &v) == NGX_OK) {
        *value = ngx_proxy_wasm_pw(&v);
        return PROXY_RESULT_OK;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_proxy_wasm_elt_is(&h[i], key)) {
                *value = ngx_proxy_wasm_pw(&h[i].value);
                return PROXY_RESULT_OK;
            }
        }
    }

    return PROXY_RESULT_NOT_FOUND;
}


/*
 * Rewrites headers_in.headers into one fresh list part: drops every header
 * named `key` except, when `value` is given, the first one, which takes the
 * new value. nginx's list walkers assume that only the last part can be
 * short, so elements cannot simply be removed in place.
 * Returns NGX_OK if a header kept the value, NGX_DECLINED if none did.
 */
ngx_int_t
ngx_http_proxy_wasm_in_rewrite(ngx_http_request_t *r, pw_str key,
    pw_str *value)
{
    ngx_int_t         rc;
    ngx_uint_t        i, n;
    ngx_list_t        list;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *dst;

    n = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    if (ngx_list_init(&list, r->pool, n ? n : 1, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = NGX_DECLINED;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (ngx_http_proxy_wasm_elt_is(&h[i], key)) {
                if (value == NULL || rc == NGX_OK) {
                    continue;
                }

                dst = ngx_list_push(&list);
                if (dst == NULL) {
                    return NGX_ERROR;
                }

                *dst = h[i];

                if (ngx_http_proxy_wasm_fill(r, dst, key, *value, 0)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                dst->key = h[i].key;     /* keep the client's spelling */
                rc = NGX_OK;
                continue;
            }

            dst = ngx_list_push(&list);
            if (dst == NULL) {
                return NGX_ERROR;
            }

            *dst = h[i];
        }
    }

    r->headers_in.headers = list;
    r->headers_in.headers.last = &r->headers_in.headers.part;

    if (ngx_http_proxy_wasm_relink_in(r) != NGX_OK) {
        return NGX_ERROR;
    }

    return rc;
}


proxy_status_t
ngx_http_proxy_wasm_in_add(ngx_http_request_t *r, pw_str key, pw_str value)
{
    ngx_table_elt_t  *h, elt;

    /* filled first: a half-made element would be sent upstream */

    if (ngx_http_proxy_wasm_fill(r, &elt, key, value, 0) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    *h = elt;

    if (ngx_http_proxy_wasm_link(r, ngx_http_proxy_wasm_headers_in,
                                 &r->headers_in, h)
        != NGX_OK)
    {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    return PROXY_RESULT_OK;
}


proxy_status_t
ngx_http_proxy_wasm_in_set_pairs(ngx_http_request_t *r, const pw_kv *pairs,
    size_t n)
{
    size_t            i;
    ngx_list_t        list;
    ngx_table_elt_t  *h;

    if (ngx_list_init(&list, r->pool, n ? n : 1, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    for (i = 0; i < n; i++) {
        if (pairs[i].key.len && pairs[i].key.data[0] == ':') {
            continue;   /* pseudo-headers are read-only */
        }

        if (!ngx_http_proxy_wasm_valid(pairs[i].key, 1)
            || !ngx_http_proxy_wasm_valid(pairs[i].value, 0))
        {
            return PROXY_RESULT_BAD_ARGUMENT;
        }
    }

    for (i = 0; i < n; i++) {
        if (pairs[i].key.len && pairs[i].key.data[0] == ':') {
            continue;
        }

        h = ngx_list_push(&list);
        if (h == NULL
            || ngx_http_proxy_wasm_fill(r, h, pairs[i].key, pairs[i].value, 0)
               != NGX_OK)
        {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }
    }

    r->headers_in.headers = list;
    r->headers_in.headers.last = &r->headers_in.headers.part;

    if (ngx_http_proxy_wasm_relink_in(r) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    return PROXY_RESULT_OK;
}


static ngx_int_t
ngx_http_proxy_wasm_out_content_type(ngx_http_request_t *r, ngx_str_t *v)
{
    u_char  *p;

    if (r->headers_out.content_type.len == 0) {
        return NGX_DECLINED;
    }

    *v = r->headers_out.content_type;

    if (r->headers_out.content_type_len == r->headers_out.content_type.len
        && r->headers_out.charset.len)
    {
        v->len = r->headers_out.content_type.len + sizeof("; charset=") - 1
                 + r->headers_out.charset.len;

        v->data = ngx_pnalloc(r->pool, v->len);
        if (v->data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(v->data, r->headers_out.content_type.data,
                       r->headers_out.content_type.len);
        p = ngx_cpymem(p, "; charset=", sizeof("; charset=") - 1);
        ngx_memcpy(p, r->headers_out.charset.data, r->headers_out.charset.len);
    }

    return NGX_OK;
}


/* Headers nginx keeps outside the list: content-type always, and
 * content-length / last-modified when held as numbers only. */
static ngx_int_t
ngx_http_proxy_wasm_out_special(ngx_http_request_t *r, ngx_uint_t which,
    pw_str *key, ngx_str_t *v)
{
    u_char  *p;

    switch (which) {

    case 0:
        key->data = ":status";
        key->len = 7;

        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->data = p;
        v->len = ngx_sprintf(p, "%ui", r->headers_out.status) - p;
        return NGX_OK;

    case 1:
        key->data = "content-type";
        key->len = sizeof("content-type") - 1;
        return ngx_http_proxy_wasm_out_content_type(r, v);

    case 2:
        key->data = "content-length";
        key->len = sizeof("content-length") - 1;

        if (r->headers_out.content_length
            || r->headers_out.content_length_n < 0)
        {
            return NGX_DECLINED;
        }

        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->data = p;
        v->len = ngx_sprintf(p, "%O", r->headers_out.content_length_n) - p;
        return NGX_OK;

    default: /* 3 */
        key->data = "last-modified";
        key->len = sizeof("last-modified") - 1;

        if (r->headers_out.last_modified
            || r->headers_out.last_modified_time == -1)
        {
            return NGX_DECLINED;
        }

        p = ngx_pnalloc(r->pool, sizeof("Mon, 28 Sep 1970 06:00:00 GMT") - 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->data = p;
        v->len = ngx_http_time(p, r->headers_out.last_modified_time) - p;
        return NGX_OK;
    }
}


ngx_uint_t
ngx_http_proxy_wasm_out_count(ngx_http_request_t *r)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = NGX_HTTP_PROXY_WASM_OUT_SPECIAL;

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash) {
                n++;
            }
        }
    }

    return n;
}


/* Appends the live elements of a list to kv[*k...], names lower-cased
 * (Envoy style; nginx's own response headers are capitalised). */
static ngx_int_t
ngx_http_proxy_wasm_list_kv(ngx_http_request_t *r, ngx_list_t *list,
    pw_kv *kv, size_t *k)
{
    ngx_uint_t        i;
    u_char           *low;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &list->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0) {
                continue;
            }

            low = ngx_http_proxy_wasm_lower(r->pool, h[i].key.data,
                                            h[i].key.len);
            if (low == NULL) {
                return NGX_ERROR;
            }

            kv[*k].key.data = (const char *) low;
            kv[*k].key.len = h[i].key.len;
            kv[*k].value = ngx_proxy_wasm_pw(&h[i].value);
            (*k)++;
        }
    }

    return NGX_OK;
}


proxy_status_t
ngx_http_proxy_wasm_out_pairs(ngx_http_request_t *r, pw_kv **pairs, size_t *n)
{
    size_t            k;
    ngx_str_t         v;
    ngx_int_t         rc;
    ngx_uint_t        i;
    pw_kv            *kv;

    kv = ngx_palloc(r->pool, ngx_http_proxy_wasm_out_count(r) * sizeof(pw_kv));
    if (kv == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    k = 0;

    for (i = 0; i < NGX_HTTP_PROXY_WASM_OUT_SPECIAL; i++) {
        rc = ngx_http_proxy_wasm_out_special(r, i, &kv[k].key, &v);

        if (rc == NGX_ERROR) {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }

        if (rc == NGX_OK) {
            kv[k++].value = ngx_proxy_wasm_pw(&v);
        }
    }

    if (ngx_http_proxy_wasm_list_kv(r, &r->headers_out.headers, kv, &k)
        != NGX_OK)
    {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    *pairs = kv;
    *n = k;

    return PROXY_RESULT_OK;
}


proxy_status_t
ngx_http_proxy_wasm_out_get(ngx_http_request_t *r, pw_str key, pw_str *value)
{
    pw_str            name;
    ngx_str_t         v;
    ngx_int_t         rc;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (i = 0; i < NGX_HTTP_PROXY_WASM_OUT_SPECIAL; i++) {
        rc = ngx_http_proxy_wasm_out_special(r, i, &name, &v);

        if (!ngx_proxy_wasm_key_is(key, (u_char *) name.data, name.len)) {
            continue;
        }

        if (rc == NGX_ERROR) {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }

        if (rc == NGX_OK) {
            *value = ngx_proxy_wasm_pw(&v);
            return PROXY_RESULT_OK;
        }

        break;
    }

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash && ngx_http_proxy_wasm_elt_is(&h[i], key)) {
                *value = ngx_proxy_wasm_pw(&h[i].value);
                return PROXY_RESULT_OK;
            }
        }
    }

    return PROXY_RESULT_NOT_FOUND;
}


static void
ngx_http_proxy_wasm_out_clear_content_type(ngx_http_request_t *r)
{
    ngx_str_null(&r->headers_out.content_type);
    r->headers_out.content_type_len = 0;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_type_hash = 0;
    ngx_str_null(&r->headers_out.charset);
}


/* Removes every `key` header. */
proxy_status_t
ngx_http_proxy_wasm_out_remove(ngx_http_request_t *r, pw_str key)
{
    u_char           *low;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_proxy_wasm_key_is(key, (u_char *) "content-type", 12)) {
        ngx_http_proxy_wasm_out_clear_content_type(r);
        return PROXY_RESULT_OK;
    }

    if (ngx_proxy_wasm_key_is(key, (u_char *) "content-length", 14)) {
        r->headers_out.content_length_n = -1;

    } else if (ngx_proxy_wasm_key_is(key, (u_char *) "last-modified",
                                     13))
    {
        r->headers_out.last_modified_time = -1;

    } else if (ngx_proxy_wasm_key_is(key, (u_char *) "accept-ranges",
                                     13))
    {
        r->allow_ranges = 0;
    }

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_proxy_wasm_elt_is(&h[i], key)) {
                h[i].hash = 0;
            }
        }
    }

    low = ngx_http_proxy_wasm_lower(r->pool, (u_char *) key.data, key.len);
    if (low == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    if (ngx_http_proxy_wasm_relink_out(r, low, key.len) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    return PROXY_RESULT_OK;
}


proxy_status_t
ngx_http_proxy_wasm_out_add(ngx_http_request_t *r, pw_str key, pw_str value)
{
    off_t             n;
    time_t            t;
    ngx_table_elt_t  *h, elt;

    if (ngx_proxy_wasm_key_is(key, (u_char *) "content-type", 12)) {
        /* single-valued in nginx: add behaves as replace */
        ngx_http_proxy_wasm_out_clear_content_type(r);

        r->headers_out.content_type.data = ngx_pnalloc(r->pool, value.len);
        if (r->headers_out.content_type.data == NULL) {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }

        ngx_memcpy(r->headers_out.content_type.data, value.data, value.len);
        r->headers_out.content_type.len = value.len;
        r->headers_out.content_type_len = value.len;
        return PROXY_RESULT_OK;
    }

    if (ngx_proxy_wasm_key_is(key, (u_char *) "content-length", 14)) {
        n = ngx_atoof((u_char *) value.data, value.len);
        if (n == NGX_ERROR) {
            return PROXY_RESULT_BAD_ARGUMENT;
        }

        ngx_http_clear_content_length(r);
        r->headers_out.content_length_n = n;
        return PROXY_RESULT_OK;
    }

    if (ngx_http_proxy_wasm_fill(r, &elt, key, value, 1) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    *h = elt;

    if (ngx_http_proxy_wasm_link(r, ngx_http_proxy_wasm_headers_out,
                                 &r->headers_out, h)
        != NGX_OK)
    {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    if (r->headers_out.last_modified == h) {
        t = ngx_parse_http_time(h->value.data, h->value.len);
        r->headers_out.last_modified_time = (t == NGX_ERROR) ? -1 : t;
    }

    return PROXY_RESULT_OK;
}


void
ngx_http_proxy_wasm_out_reset(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            h[i].hash = 0;
        }
    }

    ngx_http_proxy_wasm_unlink_all(ngx_http_proxy_wasm_headers_out,
                                   &r->headers_out);
    ngx_http_proxy_wasm_out_clear_content_type(r);

    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;
    r->allow_ranges = 0;
}


proxy_status_t
ngx_http_proxy_wasm_out_set_pairs(ngx_http_request_t *r, const pw_kv *pairs,
    size_t n)
{
    size_t          i;
    proxy_status_t  st;

    for (i = 0; i < n; i++) {
        if (pairs[i].key.len && pairs[i].key.data[0] == ':') {
            continue;
        }

        if (!ngx_http_proxy_wasm_valid(pairs[i].key, 1)
            || !ngx_http_proxy_wasm_valid(pairs[i].value, 0))
        {
            return PROXY_RESULT_BAD_ARGUMENT;
        }
    }

    ngx_http_proxy_wasm_out_reset(r);

    for (i = 0; i < n; i++) {
        if (pairs[i].key.len && pairs[i].key.data[0] == ':') {
            continue;
        }

        st = ngx_http_proxy_wasm_out_add(r, pairs[i].key, pairs[i].value);
        if (st != PROXY_RESULT_OK) {
            return st;
        }
    }

    return PROXY_RESULT_OK;
}


proxy_status_t
ngx_http_proxy_wasm_list_pairs(ngx_http_request_t *r, ngx_list_t *list,
    pw_kv **pairs, size_t *n)
{
    size_t            k;
    pw_kv            *kv;
    ngx_list_part_t  *part;

    k = 0;

    for (part = &list->part; part; part = part->next) {
        k += part->nelts;
    }

    *pairs = NULL;
    *n = 0;

    if (k == 0) {
        return PROXY_RESULT_OK;
    }

    kv = ngx_palloc(r->pool, k * sizeof(pw_kv));
    if (kv == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    k = 0;

    if (ngx_http_proxy_wasm_list_kv(r, list, kv, &k) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    *pairs = kv;
    *n = k;

    return PROXY_RESULT_OK;
}


proxy_status_t
ngx_http_proxy_wasm_list_get(ngx_list_t *list, pw_str key, pw_str *value)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &list->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash && ngx_http_proxy_wasm_elt_is(&h[i], key)) {
                *value = ngx_proxy_wasm_pw(&h[i].value);
                return PROXY_RESULT_OK;
            }
        }
    }

    return PROXY_RESULT_NOT_FOUND;
}


void
ngx_http_proxy_wasm_list_remove(ngx_list_t *list, pw_str *key)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &list->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (key == NULL || ngx_http_proxy_wasm_elt_is(&h[i], *key)) {
                h[i].hash = 0;
            }
        }
    }
}


proxy_status_t
ngx_http_proxy_wasm_list_add(ngx_http_request_t *r, ngx_list_t *list,
    pw_str key, pw_str value)
{
    ngx_table_elt_t  *h, elt;

    if (list->nalloc == 0
        && ngx_list_init(list, r->pool, 4, sizeof(ngx_table_elt_t)) != NGX_OK)
    {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    if (ngx_http_proxy_wasm_fill(r, &elt, key, value, 1) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    h = ngx_list_push(list);
    if (h == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    *h = elt;

    return PROXY_RESULT_OK;
}
