/*
 * ngx_http_proxy_wasm_module -- runs Proxy-Wasm plugins in nginx's HTTP
 * subsystem on top of the pwasm host library (include/pwasm.h).
 *
 * Configuration time (master process): every proxy_wasm_module is compiled
 * and loaded once per configuration cycle, and every distinct plugin is
 * started once on a throw-away VM (a canary), so that `nginx -t` refuses a
 * bad module or a plugin whose on_vm_start/on_configure fails.
 *
 * Worker processes: one pw_vm per worker per proxy_wasm_module, one
 * pw_plugin (root context) per distinct (module, root_id, configuration),
 * shared by every location using it. Per request, one pw_stream per plugin
 * of the location's chain:
 *
 *   rewrite phase   on_request_headers, in chain order
 *   header filter   on_response_headers, in chain order
 *   log phase       on_log, on_done, on_delete (pw_stream_free)
 *
 * Header maps are r->headers_in / r->headers_out, kept consistent with
 * nginx's shortcut pointers. A trap answers 503 (fail closed) unless
 * proxy_wasm_failure_policy is "open". See docs/DIRECTIVES.md.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <stdlib.h>

#include <pwasm.h>


#define NGX_HTTP_PROXY_WASM_FAIL_CLOSED   0
#define NGX_HTTP_PROXY_WASM_FAIL_OPEN     1

#define NGX_HTTP_PROXY_WASM_PHASE_NONE    0
#define NGX_HTTP_PROXY_WASM_PHASE_REQ     1
#define NGX_HTTP_PROXY_WASM_PHASE_RESP    2
#define NGX_HTTP_PROXY_WASM_PHASE_LOG     3


/* One proxy_wasm_module: a compiled module and, in a worker, its VM. */
typedef struct {
    ngx_str_t                        name;       /* NUL-terminated */
    ngx_str_t                        path;       /* absolute, NUL-terminated */
    ngx_str_t                        vm_id;
    ngx_str_t                        vm_config;
    ngx_str_t                        file;       /* where it was declared */
    ngx_uint_t                       line;

    pw_module                       *module;     /* loaded in the master */
    pw_vm                           *vm;         /* per worker */
    ngx_log_t                       *log;        /* plugin logs, no request */
} ngx_http_proxy_wasm_mod_t;


/* One distinct (module, root_id, configuration): a root context. */
typedef struct {
    ngx_http_proxy_wasm_mod_t       *mod;
    ngx_str_t                        root_id;
    ngx_str_t                        config;
    pw_plugin                       *plugin;     /* per worker */

    unsigned                         warned_pause:1;
    unsigned                         warned_pseudo:1;
    unsigned                         warned_local:1;
} ngx_http_proxy_wasm_plugin_t;


/* One proxy_wasm directive: an element of a location's chain. */
typedef struct {
    ngx_str_t                        name;
    ngx_str_t                        root_id;
    ngx_str_t                        config;
    ngx_str_t                        file;
    ngx_uint_t                       line;
    ngx_http_proxy_wasm_plugin_t    *plugin;     /* resolved at init */
} ngx_http_proxy_wasm_filter_t;


typedef struct {
    ngx_array_t                      mods;       /* ..._mod_t * */
    ngx_array_t                      plugins;    /* ..._plugin_t * */
    ngx_array_t                      filters;    /* ..._filter_t * */
    ngx_str_t                        cache_dir;  /* data NULL: not set */
    pw_runtime                      *runtime;
    ngx_int_t                        request_id_index;
} ngx_http_proxy_wasm_main_conf_t;


typedef struct {
    ngx_array_t                     *chain;      /* ..._filter_t * */
    ngx_uint_t                       failure;
} ngx_http_proxy_wasm_loc_conf_t;


typedef struct ngx_http_proxy_wasm_ctx_s  ngx_http_proxy_wasm_ctx_t;

/* The `stream` pointer the library hands back to every pw_host_ops hook. */
typedef struct {
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_filter_t    *filter;
    pw_stream                       *stream;
    unsigned                         failed:1;   /* failed open: skipped */
    unsigned                         freed:1;
} ngx_http_proxy_wasm_stream_t;


/* Per request and location (an internal redirect starts a new one). */
struct ngx_http_proxy_wasm_ctx_s {
    ngx_http_request_t              *r;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;
    ngx_http_proxy_wasm_stream_t    *streams;    /* one per chain element */
    ngx_uint_t                       nstreams;
    ngx_http_proxy_wasm_ctx_t       *next;       /* next ctx of the request */
    ngx_uint_t                       phase;
    ngx_str_t                        authority;  /* Host as received */
    ngx_str_t                        body;       /* replacement body */

    unsigned                         request_done:1;
    unsigned                         response_done:1;
    unsigned                         lazy:1;     /* created by the filter */
    unsigned                         local:1;    /* local response sent */
    unsigned                         failed:1;   /* failed closed */
    unsigned                         replace:1;  /* body filter replaces */
    unsigned                         replace_sent:1;
    unsigned                         gone:1;     /* request being freed */
};


/* All contexts of a request, kept in a pool cleanup: r->ctx is zeroed by
 * internal redirects, but every stream must still be ended. */
typedef struct {
    ngx_http_proxy_wasm_ctx_t       *first;
    ngx_http_proxy_wasm_ctx_t       *last;
} ngx_http_proxy_wasm_req_t;


/* nginx keeps some headers in dedicated fields of headers_in/headers_out. */
typedef struct {
    ngx_str_t                        name;       /* lower case */
    ngx_uint_t                       offset;
    ngx_uint_t                       multi;      /* ngx_array_t of elt * */
} ngx_http_proxy_wasm_shortcut_t;


static ngx_int_t ngx_http_proxy_wasm_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_proxy_wasm_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_proxy_wasm_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_proxy_wasm_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_proxy_wasm_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_proxy_wasm_module_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_proxy_wasm_cache_dir(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_proxy_wasm_init_process(ngx_cycle_t *cycle);
static void ngx_http_proxy_wasm_exit_process(ngx_cycle_t *cycle);

static ngx_int_t ngx_http_proxy_wasm_rewrite_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);

static void ngx_http_proxy_wasm_host_log(void *host, void *stream,
    pw_str plugin_name, proxy_log_level_t level, pw_str msg);
static proxy_log_level_t ngx_http_proxy_wasm_host_log_level(void *host);
static proxy_status_t ngx_http_proxy_wasm_map_pairs(void *host, void *stream,
    proxy_map_type_t map, pw_kv **pairs, size_t *n);
static proxy_status_t ngx_http_proxy_wasm_map_get(void *host, void *stream,
    proxy_map_type_t map, pw_str key, pw_str *value);
static proxy_status_t ngx_http_proxy_wasm_map_add(void *host, void *stream,
    proxy_map_type_t map, pw_str key, pw_str value);
static proxy_status_t ngx_http_proxy_wasm_map_replace(void *host, void *stream,
    proxy_map_type_t map, pw_str key, pw_str value);
static proxy_status_t ngx_http_proxy_wasm_map_remove(void *host, void *stream,
    proxy_map_type_t map, pw_str key);
static proxy_status_t ngx_http_proxy_wasm_map_set_pairs(void *host,
    void *stream, proxy_map_type_t map, const pw_kv *pairs, size_t n);
static proxy_status_t ngx_http_proxy_wasm_get_property(void *host,
    void *stream, const pw_str *path, size_t nseg, pw_str *value);


static ngx_conf_enum_t  ngx_http_proxy_wasm_failure_policies[] = {
    { ngx_string("closed"), NGX_HTTP_PROXY_WASM_FAIL_CLOSED },
    { ngx_string("open"), NGX_HTTP_PROXY_WASM_FAIL_OPEN },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_proxy_wasm_commands[] = {

    { ngx_string("proxy_wasm_module"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_proxy_wasm_module_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("proxy_wasm_cache_dir"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_proxy_wasm_cache_dir,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("proxy_wasm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_proxy_wasm_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("proxy_wasm_failure_policy"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, failure),
      &ngx_http_proxy_wasm_failure_policies },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_proxy_wasm_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_proxy_wasm_postconfiguration, /* postconfiguration */

    ngx_http_proxy_wasm_create_main_conf,  /* create main configuration */
    ngx_http_proxy_wasm_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_proxy_wasm_create_loc_conf,   /* create location configuration */
    ngx_http_proxy_wasm_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_proxy_wasm_module = {
    NGX_MODULE_V1,
    &ngx_http_proxy_wasm_module_ctx,       /* module context */
    ngx_http_proxy_wasm_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_proxy_wasm_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_proxy_wasm_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static const pw_host_ops  ngx_http_proxy_wasm_ops = {
    .log = ngx_http_proxy_wasm_host_log,
    .log_level = ngx_http_proxy_wasm_host_log_level,
    .map_pairs = ngx_http_proxy_wasm_map_pairs,
    .map_get = ngx_http_proxy_wasm_map_get,
    .map_add = ngx_http_proxy_wasm_map_add,
    .map_replace = ngx_http_proxy_wasm_map_replace,
    .map_remove = ngx_http_proxy_wasm_map_remove,
    .map_set_pairs = ngx_http_proxy_wasm_map_set_pairs,
    .get_property = ngx_http_proxy_wasm_get_property,
    .now_ns = NULL                         /* clock_gettime */
};


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
    { ngx_string("cookie"), offsetof(ngx_http_headers_in_t, cookies), 1 },
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


static ngx_str_t  ngx_http_proxy_wasm_503_body = ngx_string(
    "<html>" CRLF
    "<head><title>503 Service Temporarily Unavailable</title></head>" CRLF
    "<body>" CRLF
    "<center><h1>503 Service Temporarily Unavailable</h1></center>" CRLF
    "<hr><center>nginx</center>" CRLF
    "</body>" CRLF
    "</html>" CRLF);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* ------------------------------------------------------------ helpers */


static ngx_int_t
ngx_http_proxy_wasm_pstr(ngx_pool_t *pool, ngx_str_t *dst, u_char *src,
    size_t len)
{
    /* a NUL-terminated copy, for the library's const char * arguments */

    dst->data = ngx_pnalloc(pool, len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, len);
    dst->data[len] = '\0';
    dst->len = len;

    return NGX_OK;
}


static pw_str
ngx_http_proxy_wasm_pw(ngx_str_t *s)
{
    pw_str  p;

    p.data = (const char *) s->data;
    p.len = s->len;

    return p;
}


static ngx_int_t
ngx_http_proxy_wasm_key_is(pw_str key, u_char *name, size_t len)
{
    return key.len == len
           && ngx_strncasecmp((u_char *) key.data, name, len) == 0;
}


static ngx_int_t
ngx_http_proxy_wasm_elt_is(ngx_table_elt_t *h, pw_str key)
{
    return h->key.len == key.len
           && ngx_strncasecmp(h->key.data, (u_char *) key.data, key.len) == 0;
}


static ngx_int_t
ngx_http_proxy_wasm_valid(pw_str s, ngx_uint_t name)
{
    size_t  i;
    u_char  c;

    if (name && s.len == 0) {
        return 0;
    }

    for (i = 0; i < s.len; i++) {
        c = (u_char) s.data[i];

        if (c == CR || c == LF || c == '\0' || (name && (c == ':' || c <= ' ')))
        {
            return 0;
        }
    }

    return 1;
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


static ngx_http_proxy_wasm_shortcut_t *
ngx_http_proxy_wasm_shortcut(ngx_http_proxy_wasm_shortcut_t *table,
    u_char *lowcase, size_t len)
{
    for ( /* void */ ; table->name.len; table++) {
        if (table->name.len == len
            && ngx_memcmp(table->name.data, lowcase, len) == 0)
        {
            return table;
        }
    }

    return NULL;
}


/* Points the shortcut of h (if any) at h: the first one wins, like nginx's
 * ngx_http_process_header_line(); multi-valued shortcuts collect all. */
static ngx_int_t
ngx_http_proxy_wasm_link(ngx_http_request_t *r,
    ngx_http_proxy_wasm_shortcut_t *table, void *base, ngx_table_elt_t *h)
{
    ngx_array_t                     *a;
    ngx_table_elt_t                **ph;
    ngx_http_proxy_wasm_shortcut_t  *sc;

    sc = ngx_http_proxy_wasm_shortcut(table, h->lowcase_key, h->key.len);
    if (sc == NULL) {
        return NGX_OK;
    }

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
}


static void
ngx_http_proxy_wasm_unlink_all(ngx_http_proxy_wasm_shortcut_t *table,
    void *base)
{
    ngx_array_t  *a;

    for ( /* void */ ; table->name.len; table++) {
        if (table->multi) {
            a = (ngx_array_t *) ((char *) base + table->offset);
            a->nelts = 0;

        } else {
            *(ngx_table_elt_t **) ((char *) base + table->offset) = NULL;
        }
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
    ngx_array_t                     *a;
    ngx_list_part_t                 *part;
    ngx_table_elt_t                 *h;
    ngx_http_proxy_wasm_shortcut_t  *sc;

    sc = ngx_http_proxy_wasm_shortcut(ngx_http_proxy_wasm_headers_out,
                                      lowcase, len);
    if (sc == NULL) {
        return NGX_OK;
    }

    if (sc->multi) {
        a = (ngx_array_t *) ((char *) &r->headers_out + sc->offset);
        a->nelts = 0;

    } else {
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
    h->key.len = key.len;
    h->key.data = ngx_pnalloc(r->pool, key.len);
    h->lowcase_key = ngx_pnalloc(r->pool, key.len);
    h->value.len = value.len;
    h->value.data = ngx_pnalloc(r->pool, value.len + 1);

    if (h->key.data == NULL || h->lowcase_key == NULL
        || h->value.data == NULL)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(h->key.data, key.data, key.len);
    ngx_strlow(h->lowcase_key, h->key.data, key.len);
    ngx_memcpy(h->value.data, value.data, value.len);
    h->value.data[value.len] = '\0';

    /* request headers: the hash nginx computes when parsing (proxy_pass
     * compares it with proxy_set_header's); response headers: any non-zero
     * value, 0 means "deleted" */
    h->hash = ngx_hash_key(h->lowcase_key, key.len);

    if (out && h->hash == 0) {
        h->hash = 1;
    }

    return NGX_OK;
}


static ngx_http_request_t *
ngx_http_proxy_wasm_request(void *stream)
{
    ngx_http_proxy_wasm_stream_t  *s = stream;

    if (s == NULL || s->ctx->gone) {
        return NULL;
    }

    return s->ctx->r;
}


/* ------------------------------------------------ request headers map */


static ngx_uint_t
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


static ngx_str_t *
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


static ngx_int_t
ngx_http_proxy_wasm_in_pseudo(ngx_http_request_t *r, pw_str key,
    ngx_str_t *value)
{
    if (ngx_http_proxy_wasm_key_is(key, (u_char *) ":method", 7)) {
        *value = r->method_name;

    } else if (ngx_http_proxy_wasm_key_is(key, (u_char *) ":path", 5)) {
        *value = r->unparsed_uri;

    } else if (ngx_http_proxy_wasm_key_is(key, (u_char *) ":authority", 10)) {
        *value = *ngx_http_proxy_wasm_authority(r);

    } else if (ngx_http_proxy_wasm_key_is(key, (u_char *) ":scheme", 7)) {
#if (NGX_HTTP_SSL)
        if (r->connection->ssl) {
            ngx_str_set(value, "https");
        } else
#endif
        {
            ngx_str_set(value, "http");
        }

    } else {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static proxy_status_t
ngx_http_proxy_wasm_in_pairs(ngx_http_request_t *r, pw_kv **pairs, size_t *n)
{
    size_t            k;
    ngx_str_t         v;
    ngx_uint_t        i;
    pw_kv            *kv;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    static pw_str  pseudo[] = {
        { ":method", 7 }, { ":path", 5 }, { ":authority", 10 },
        { ":scheme", 7 }
    };

    kv = ngx_palloc(r->pool, ngx_http_proxy_wasm_in_count(r) * sizeof(pw_kv));
    if (kv == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    for (k = 0; k < 4; k++) {
        (void) ngx_http_proxy_wasm_in_pseudo(r, pseudo[k], &v);
        kv[k].key = pseudo[k];
        kv[k].value = ngx_http_proxy_wasm_pw(&v);
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            kv[k].key.data = (const char *) (h[i].lowcase_key
                                             ? h[i].lowcase_key
                                             : h[i].key.data);
            kv[k].key.len = h[i].key.len;
            kv[k].value = ngx_http_proxy_wasm_pw(&h[i].value);
            k++;
        }
    }

    *pairs = kv;
    *n = k;

    return PROXY_RESULT_OK;
}


static proxy_status_t
ngx_http_proxy_wasm_in_get(ngx_http_request_t *r, pw_str key, pw_str *value)
{
    ngx_str_t         v;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_http_proxy_wasm_in_pseudo(r, key, &v) == NGX_OK) {
        *value = ngx_http_proxy_wasm_pw(&v);
        return PROXY_RESULT_OK;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_proxy_wasm_elt_is(&h[i], key)) {
                *value = ngx_http_proxy_wasm_pw(&h[i].value);
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
static ngx_int_t
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


static proxy_status_t
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


static proxy_status_t
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


/* ----------------------------------------------- response headers map */


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


#define NGX_HTTP_PROXY_WASM_OUT_SPECIAL  4


static ngx_uint_t
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


static proxy_status_t
ngx_http_proxy_wasm_out_pairs(ngx_http_request_t *r, pw_kv **pairs, size_t *n)
{
    size_t            k;
    ngx_str_t         v;
    ngx_int_t         rc;
    ngx_uint_t        i;
    pw_kv            *kv;
    u_char           *low;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

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
            kv[k++].value = ngx_http_proxy_wasm_pw(&v);
        }
    }

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0) {
                continue;
            }

            /* Envoy-like lower-case names; nginx's own are capitalised */
            low = ngx_http_proxy_wasm_lower(r->pool, h[i].key.data,
                                            h[i].key.len);
            if (low == NULL) {
                return PROXY_RESULT_INTERNAL_FAILURE;
            }

            kv[k].key.data = (const char *) low;
            kv[k].key.len = h[i].key.len;
            kv[k].value = ngx_http_proxy_wasm_pw(&h[i].value);
            k++;
        }
    }

    *pairs = kv;
    *n = k;

    return PROXY_RESULT_OK;
}


static proxy_status_t
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

        if (!ngx_http_proxy_wasm_key_is(key, (u_char *) name.data, name.len)) {
            continue;
        }

        if (rc == NGX_ERROR) {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }

        if (rc == NGX_OK) {
            *value = ngx_http_proxy_wasm_pw(&v);
            return PROXY_RESULT_OK;
        }

        break;
    }

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash && ngx_http_proxy_wasm_elt_is(&h[i], key)) {
                *value = ngx_http_proxy_wasm_pw(&h[i].value);
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
static proxy_status_t
ngx_http_proxy_wasm_out_remove(ngx_http_request_t *r, pw_str key)
{
    u_char           *low;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_http_proxy_wasm_key_is(key, (u_char *) "content-type", 12)) {
        ngx_http_proxy_wasm_out_clear_content_type(r);
        return PROXY_RESULT_OK;
    }

    if (ngx_http_proxy_wasm_key_is(key, (u_char *) "content-length", 14)) {
        r->headers_out.content_length_n = -1;

    } else if (ngx_http_proxy_wasm_key_is(key, (u_char *) "last-modified",
                                          13))
    {
        r->headers_out.last_modified_time = -1;

    } else if (ngx_http_proxy_wasm_key_is(key, (u_char *) "accept-ranges",
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


static proxy_status_t
ngx_http_proxy_wasm_out_add(ngx_http_request_t *r, pw_str key, pw_str value)
{
    off_t             n;
    time_t            t;
    ngx_table_elt_t  *h, elt;

    if (ngx_http_proxy_wasm_key_is(key, (u_char *) "content-type", 12)) {
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

    if (ngx_http_proxy_wasm_key_is(key, (u_char *) "content-length", 14)) {
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


static void
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


static proxy_status_t
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


/* ------------------------------------------------------- host hooks */


static ngx_uint_t
ngx_http_proxy_wasm_ngx_level(proxy_log_level_t level)
{
    switch (level) {
    case PROXY_LOG_TRACE:
    case PROXY_LOG_DEBUG:
        return NGX_LOG_DEBUG;
    case PROXY_LOG_INFO:
        return NGX_LOG_INFO;
    case PROXY_LOG_WARN:
        return NGX_LOG_WARN;
    case PROXY_LOG_ERROR:
        return NGX_LOG_ERR;
    default:
        return NGX_LOG_CRIT;
    }
}


static ngx_log_t *
ngx_http_proxy_wasm_log_of(void *host, void *stream)
{
    ngx_http_request_t         *r;
    ngx_http_proxy_wasm_mod_t  *mod = host;

    r = ngx_http_proxy_wasm_request(stream);

    if (r && r->connection && r->connection->log) {
        return r->connection->log;
    }

    if (mod && mod->log) {
        return mod->log;
    }

    return ngx_cycle->log;
}


static void
ngx_http_proxy_wasm_host_log(void *host, void *stream, pw_str plugin_name,
    proxy_log_level_t level, pw_str msg)
{
    ngx_log_t  *log;

    log = ngx_http_proxy_wasm_log_of(host, stream);

    ngx_log_error(ngx_http_proxy_wasm_ngx_level(level), log, 0,
                  "[pwasm] %*s: %*s", plugin_name.len, plugin_name.data,
                  msg.len, msg.data);
}


static proxy_log_level_t
ngx_http_proxy_wasm_host_log_level(void *host)
{
    ngx_uint_t  level;

    level = ngx_http_proxy_wasm_log_of(host, NULL)->log_level;

    if (level >= NGX_LOG_DEBUG) {
        return PROXY_LOG_TRACE;
    }

    if (level >= NGX_LOG_INFO) {
        return PROXY_LOG_INFO;
    }

    if (level >= NGX_LOG_WARN) {    /* notice would hide info lines */
        return PROXY_LOG_WARN;
    }

    if (level >= NGX_LOG_ERR) {
        return PROXY_LOG_ERROR;
    }

    return PROXY_LOG_CRITICAL;
}


/* Response headers exist from the response phase on; writes before it
 * would leak into the response nginx builds later. */
static ngx_int_t
ngx_http_proxy_wasm_out_ready(void *stream)
{
    ngx_http_proxy_wasm_stream_t  *s = stream;

    return s->ctx->phase >= NGX_HTTP_PROXY_WASM_PHASE_RESP;
}


static ngx_int_t
ngx_http_proxy_wasm_pseudo_write(void *stream, pw_str key)
{
    ngx_http_request_t            *r;
    ngx_http_proxy_wasm_plugin_t  *p;
    ngx_http_proxy_wasm_stream_t  *s = stream;

    if (key.len == 0 || key.data[0] != ':') {
        return 0;
    }

    p = s->filter->plugin;

    if (!p->warned_pseudo) {
        p->warned_pseudo = 1;
        r = s->ctx->r;
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "proxy_wasm \"%V\": writing pseudo-header \"%*s\" "
                      "is not supported, ignored (logged once)",
                      &p->mod->name, key.len, key.data);
    }

    return 1;
}


static proxy_status_t
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
    default:
        return PROXY_RESULT_NOT_FOUND;
    }
}


static proxy_status_t
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
    default:
        return PROXY_RESULT_NOT_FOUND;
    }
}


static proxy_status_t
ngx_http_proxy_wasm_map_write(void *stream, proxy_map_type_t map, pw_str key,
    pw_str *value, ngx_uint_t replace)
{
    ngx_int_t            rc;
    proxy_status_t       st;
    ngx_http_request_t  *r;

    r = ngx_http_proxy_wasm_request(stream);
    if (r == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (map != PROXY_MAP_HTTP_REQUEST_HEADERS
        && map != PROXY_MAP_HTTP_RESPONSE_HEADERS)
    {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (map == PROXY_MAP_HTTP_RESPONSE_HEADERS
        && !ngx_http_proxy_wasm_out_ready(stream))
    {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    if (ngx_http_proxy_wasm_pseudo_write(stream, key)) {
        return PROXY_RESULT_OK;
    }

    if (!ngx_http_proxy_wasm_valid(key, 1)
        || (value && !ngx_http_proxy_wasm_valid(*value, 0)))
    {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    if (map == PROXY_MAP_HTTP_REQUEST_HEADERS) {

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

    if (value == NULL || replace) {
        st = ngx_http_proxy_wasm_out_remove(r, key);
        if (st != PROXY_RESULT_OK || value == NULL) {
            return st;
        }
    }

    return ngx_http_proxy_wasm_out_add(r, key, *value);
}


static proxy_status_t
ngx_http_proxy_wasm_map_add(void *host, void *stream, proxy_map_type_t map,
    pw_str key, pw_str value)
{
    return ngx_http_proxy_wasm_map_write(stream, map, key, &value, 0);
}


static proxy_status_t
ngx_http_proxy_wasm_map_replace(void *host, void *stream,
    proxy_map_type_t map, pw_str key, pw_str value)
{
    return ngx_http_proxy_wasm_map_write(stream, map, key, &value, 1);
}


static proxy_status_t
ngx_http_proxy_wasm_map_remove(void *host, void *stream, proxy_map_type_t map,
    pw_str key)
{
    return ngx_http_proxy_wasm_map_write(stream, map, key, NULL, 1);
}


static proxy_status_t
ngx_http_proxy_wasm_map_set_pairs(void *host, void *stream,
    proxy_map_type_t map, const pw_kv *pairs, size_t n)
{
    ngx_http_request_t  *r;

    r = ngx_http_proxy_wasm_request(stream);
    if (r == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    switch (map) {
    case PROXY_MAP_HTTP_REQUEST_HEADERS:
        return ngx_http_proxy_wasm_in_set_pairs(r, pairs, n);
    case PROXY_MAP_HTTP_RESPONSE_HEADERS:
        if (!ngx_http_proxy_wasm_out_ready(stream)) {
            return PROXY_RESULT_BAD_ARGUMENT;
        }
        return ngx_http_proxy_wasm_out_set_pairs(r, pairs, n);
    default:
        return PROXY_RESULT_NOT_FOUND;
    }
}


static proxy_status_t
ngx_http_proxy_wasm_get_property(void *host, void *stream, const pw_str *path,
    size_t nseg, pw_str *value)
{
    u_char                           *p;
    ngx_str_t                         v;
    ngx_http_request_t               *r;
    ngx_http_variable_value_t        *vv;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    static pw_str  x_request_id = { "x-request-id", 12 };

    r = ngx_http_proxy_wasm_request(stream);

    if (r == NULL || nseg != 2
        || !ngx_http_proxy_wasm_key_is(path[0], (u_char *) "request", 7))
    {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (ngx_http_proxy_wasm_key_is(path[1], (u_char *) "path", 4)) {
        v = r->unparsed_uri;

    } else if (ngx_http_proxy_wasm_key_is(path[1], (u_char *) "url_path", 8))
    {
        v = r->unparsed_uri;
        p = ngx_strlchr(v.data, v.data + v.len, '?');
        if (p) {
            v.len = p - v.data;
        }

    } else if (ngx_http_proxy_wasm_key_is(path[1], (u_char *) "query", 5)) {
        v = r->args;

    } else if (ngx_http_proxy_wasm_key_is(path[1], (u_char *) "method", 6)) {
        v = r->method_name;

    } else if (ngx_http_proxy_wasm_key_is(path[1], (u_char *) "protocol", 8))
    {
        v = r->http_protocol;

    } else if (ngx_http_proxy_wasm_key_is(path[1], (u_char *) "host", 4)) {
        v = *ngx_http_proxy_wasm_authority(r);

    } else if (ngx_http_proxy_wasm_key_is(path[1], (u_char *) "scheme", 6)) {
        (void) ngx_http_proxy_wasm_in_pseudo(r, (pw_str) { ":scheme", 7 }, &v);

    } else if (ngx_http_proxy_wasm_key_is(path[1], (u_char *) "id", 2)) {

        if (ngx_http_proxy_wasm_in_get(r, x_request_id, value)
            == PROXY_RESULT_OK)
        {
            return PROXY_RESULT_OK;
        }

        pmcf = ngx_http_get_module_main_conf(r, ngx_http_proxy_wasm_module);

        vv = ngx_http_get_indexed_variable(r, pmcf->request_id_index);
        if (vv == NULL || vv->not_found) {
            return PROXY_RESULT_NOT_FOUND;
        }

        v.data = vv->data;
        v.len = vv->len;

    } else {
        return PROXY_RESULT_NOT_FOUND;
    }

    *value = ngx_http_proxy_wasm_pw(&v);

    return PROXY_RESULT_OK;
}


/* ------------------------------------------------- worker-side objects */


/* The plugin's root context in this worker, created on first use if the
 * worker could not create it at start. */
static pw_plugin *
ngx_http_proxy_wasm_plugin(ngx_http_proxy_wasm_plugin_t *p, ngx_log_t *log)
{
    int                         rc;
    char                        err[PW_ERRLEN];
    ngx_http_proxy_wasm_mod_t  *mod;

    if (p->plugin) {
        return p->plugin;
    }

    mod = p->mod;

    if (mod->vm == NULL) {
        rc = pw_vm_new(mod->module, ngx_http_proxy_wasm_pw(&mod->vm_id),
                       ngx_http_proxy_wasm_pw(&mod->vm_config),
                       &ngx_http_proxy_wasm_ops, mod, &mod->vm, err,
                       sizeof(err));
        if (rc != PW_OK) {
            mod->vm = NULL;
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "proxy_wasm_module \"%V\": cannot create VM: %s",
                          &mod->name, err);
            return NULL;
        }
    }

    rc = pw_plugin_new(mod->vm, ngx_http_proxy_wasm_pw(&mod->name),
                       ngx_http_proxy_wasm_pw(&p->root_id),
                       ngx_http_proxy_wasm_pw(&p->config), &p->plugin, err,
                       sizeof(err));
    if (rc != PW_OK) {
        p->plugin = NULL;
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "proxy_wasm \"%V\": cannot start plugin: %s",
                      &mod->name, err);
        return NULL;
    }

    return p->plugin;
}


static ngx_int_t
ngx_http_proxy_wasm_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_proxy_wasm_mod_t       **mods;
    ngx_http_proxy_wasm_plugin_t    **plugins;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;      /* cache manager/loader: no requests */
    }

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_proxy_wasm_module);
    if (pmcf == NULL || pmcf->runtime == NULL) {
        return NGX_OK;
    }

    mods = pmcf->mods.elts;

    for (i = 0; i < pmcf->mods.nelts; i++) {
        mods[i]->log = cycle->log;
    }

    /* eagerly, so that on_vm_start/on_configure run at worker start;
     * failures are logged and retried on the first request */

    plugins = pmcf->plugins.elts;

    for (i = 0; i < pmcf->plugins.nelts; i++) {
        (void) ngx_http_proxy_wasm_plugin(plugins[i], cycle->log);
    }

    return NGX_OK;
}


static void
ngx_http_proxy_wasm_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_proxy_wasm_mod_t       **mods;
    ngx_http_proxy_wasm_plugin_t    **plugins;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_proxy_wasm_module);
    if (pmcf == NULL || pmcf->runtime == NULL) {
        return;
    }

    plugins = pmcf->plugins.elts;

    for (i = 0; i < pmcf->plugins.nelts; i++) {
        plugins[i]->plugin = NULL;      /* freed with their VM */
    }

    mods = pmcf->mods.elts;

    for (i = 0; i < pmcf->mods.nelts; i++) {
        if (mods[i]->vm) {
            pw_vm_free(mods[i]->vm);
            mods[i]->vm = NULL;
        }
    }
}


/* ------------------------------------------------- per-request state */


static void
ngx_http_proxy_wasm_end_streams(ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_uint_t                     i;
    ngx_http_proxy_wasm_stream_t  *s;

    ctx->phase = NGX_HTTP_PROXY_WASM_PHASE_LOG;

    for (i = 0; i < ctx->nstreams; i++) {
        s = &ctx->streams[i];

        if (s->stream && !s->freed) {
            s->freed = 1;
            pw_stream_free(s->stream);  /* on_log, on_done, on_delete */
        }
    }
}


static void
ngx_http_proxy_wasm_cleanup(void *data)
{
    ngx_http_proxy_wasm_req_t  *req = data;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    /* normally a no-op: the log phase ended every stream; r->pool is gone
     * by now, so the hooks must no longer touch the request */

    for (ctx = req->first; ctx; ctx = ctx->next) {
        ctx->gone = 1;
        ngx_http_proxy_wasm_end_streams(ctx);
    }
}


static ngx_http_proxy_wasm_req_t *
ngx_http_proxy_wasm_req(ngx_http_request_t *r, ngx_uint_t create)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_proxy_wasm_req_t  *req;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_proxy_wasm_cleanup) {
            return cln->data;
        }
    }

    if (!create) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_proxy_wasm_req_t));
    if (cln == NULL) {
        return NULL;
    }

    req = cln->data;
    req->first = NULL;
    req->last = NULL;

    cln->handler = ngx_http_proxy_wasm_cleanup;

    return req;
}


static ngx_http_proxy_wasm_ctx_t *
ngx_http_proxy_wasm_create_ctx(ngx_http_request_t *r,
    ngx_http_proxy_wasm_loc_conf_t *plcf)
{
    ngx_uint_t                      i;
    ngx_http_proxy_wasm_req_t      *req;
    ngx_http_proxy_wasm_ctx_t      *ctx;
    ngx_http_proxy_wasm_filter_t  **filters;

    req = ngx_http_proxy_wasm_req(r, 1);
    if (req == NULL) {
        return NULL;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_proxy_wasm_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->nstreams = plcf->chain->nelts;
    ctx->streams = ngx_pcalloc(r->pool, ctx->nstreams
                                        * sizeof(ngx_http_proxy_wasm_stream_t));
    if (ctx->streams == NULL) {
        return NULL;
    }

    filters = plcf->chain->elts;

    for (i = 0; i < ctx->nstreams; i++) {
        ctx->streams[i].ctx = ctx;
        ctx->streams[i].filter = filters[i];
    }

    ctx->r = r;
    ctx->plcf = plcf;
    ctx->authority = *ngx_http_proxy_wasm_authority(r);

    if (req->last) {
        req->last->next = ctx;
    } else {
        req->first = ctx;
    }

    req->last = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_proxy_wasm_module);

    return ctx;
}


/* The stream context of chain element s, created on first use.
 * NGX_DECLINED: it could not be created (already logged). */
static ngx_int_t
ngx_http_proxy_wasm_stream(ngx_http_request_t *r,
    ngx_http_proxy_wasm_stream_t *s)
{
    int         rc;
    char        err[PW_ERRLEN];
    pw_plugin  *plugin;

    if (s->stream) {
        return NGX_OK;
    }

    plugin = ngx_http_proxy_wasm_plugin(s->filter->plugin, r->connection->log);
    if (plugin == NULL) {
        return NGX_DECLINED;
    }

    rc = pw_stream_new(plugin, s, &s->stream, err, sizeof(err));
    if (rc != PW_OK) {
        s->stream = NULL;
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "proxy_wasm \"%V\": cannot create stream context: %s",
                      &s->filter->name, err);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* A plugin could not run (trap, dead VM, no stream). Returns NGX_OK when
 * the failure policy lets the request continue without it. */
static ngx_int_t
ngx_http_proxy_wasm_failed(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_stream_t *s,
    const char *callback, const char *reason)
{
    ngx_uint_t  open;

    open = (ctx->plcf->failure == NGX_HTTP_PROXY_WASM_FAIL_OPEN);
    s->failed = 1;

    if (reason == NULL && s->filter->plugin->mod->vm) {
        reason = pw_vm_last_error(s->filter->plugin->mod->vm);
    }

    if (reason == NULL || reason[0] == '\0') {
        reason = "plugin unavailable";
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "proxy_wasm \"%V\" failed in %s: %s; %s",
                  &s->filter->name, callback, reason,
                  open ? "continuing without it (failure policy open)"
                       : "answering 503 (failure policy closed)");

    if (open) {
        return NGX_OK;
    }

    ctx->failed = 1;

    return NGX_ERROR;
}


static void
ngx_http_proxy_wasm_paused(ngx_http_request_t *r,
    ngx_http_proxy_wasm_stream_t *s, const char *callback)
{
    ngx_http_proxy_wasm_plugin_t  *p;

    p = s->filter->plugin;

    if (p->warned_pause) {
        return;
    }

    p->warned_pause = 1;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "proxy_wasm \"%V\" paused in %s: pausing is not supported "
                  "yet, continuing (logged once per worker)",
                  &s->filter->name, callback);
}


/* ---------------------------------------------------- local responses */


/*
 * Replaces the response headers by status, headers and body (a local
 * response, or the 503 of a failure); the body is kept in ctx->body.
 */
static ngx_int_t
ngx_http_proxy_wasm_set_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t status, pw_str body,
    pw_str type, const pw_kv *headers, size_t nheaders, int32_t grpc_status)
{
    size_t   i;
    u_char  *p;
    pw_str   grpc_key, grpc_value;

    if (status < 100 || status > 999) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "proxy_wasm: local response with invalid status %ui, "
                      "answering 500", status);
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_list_init(&r->headers_out.headers, r->pool, 8,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_proxy_wasm_out_reset(r);

    r->headers_out.status = status;
    ngx_str_null(&r->headers_out.status_line);
    r->expect_trailers = 0;

    for (i = 0; i < nheaders; i++) {
        if (headers[i].key.len && headers[i].key.data[0] == ':') {
            continue;
        }

        if (!ngx_http_proxy_wasm_valid(headers[i].key, 1)
            || !ngx_http_proxy_wasm_valid(headers[i].value, 0))
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "proxy_wasm: invalid local response header "
                          "\"%*s\" ignored",
                          headers[i].key.len, headers[i].key.data);
            continue;
        }

        if (ngx_http_proxy_wasm_out_add(r, headers[i].key, headers[i].value)
            == PROXY_RESULT_INTERNAL_FAILURE)
        {
            return NGX_ERROR;
        }
    }

    if (grpc_status >= 0) {
        p = ngx_pnalloc(r->pool, NGX_INT32_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        grpc_key.data = "grpc-status";
        grpc_key.len = sizeof("grpc-status") - 1;
        grpc_value.data = (const char *) p;
        grpc_value.len = ngx_sprintf(p, "%D", grpc_status) - p;

        if (ngx_http_proxy_wasm_out_add(r, grpc_key, grpc_value)
            != PROXY_RESULT_OK)
        {
            return NGX_ERROR;
        }
    }

    if (body.len && r->headers_out.content_type.len == 0) {
        r->headers_out.content_type.data = (u_char *) type.data;
        r->headers_out.content_type.len = type.len;
        r->headers_out.content_type_len = type.len;
    }

    ctx->body.len = body.len;
    ctx->body.data = ngx_pnalloc(r->pool, body.len ? body.len : 1);
    if (ctx->body.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->body.data, body.data, body.len);

    /* the body is ours: whatever length the plugin announced */
    ngx_http_clear_content_length(r);
    r->headers_out.content_length_n = body.len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_proxy_wasm_set_local(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_stream_t *s)
{
    pw_str                    type;
    const pw_local_response  *lr;

    lr = pw_stream_local_response(s->stream);
    if (lr == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "proxy_wasm \"%V\": local response action without a "
                      "local response", &s->filter->name);
        return NGX_DECLINED;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "proxy_wasm \"%V\": local response %uD \"%*s\"",
                   &s->filter->name, lr->status, lr->details.len,
                   lr->details.data);

    type.data = "text/plain";
    type.len = sizeof("text/plain") - 1;

    ctx->local = 1;

    return ngx_http_proxy_wasm_set_response(r, ctx, lr->status, lr->body,
                                            type, lr->headers, lr->nheaders,
                                            lr->grpc_status);
}


/* Sends a local response from the request phase; returns what
 * ngx_http_finalize_request() expects. */
static ngx_int_t
ngx_http_proxy_wasm_send_local(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_stream_t *s)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_proxy_wasm_set_local(r, ctx, s);
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    /* the header filter may have replaced the body (a failure there) */
    if (ctx->replace) {
        return ngx_http_output_filter(r, NULL);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    if (ctx->body.len) {
        b->pos = ctx->body.data;
        b->last = ctx->body.data + ctx->body.len;
        b->memory = 1;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* ----------------------------------------------------- phase handlers */


static int
ngx_http_proxy_wasm_request_eos(ngx_http_request_t *r)
{
#if (NGX_HTTP_V2)
    if (r->stream) {
        return r->stream->in_closed;
    }
#endif

    return r->headers_in.content_length_n <= 0 && !r->headers_in.chunked;
}


/*
 * Rewrite phase: our handler is registered after the rewrite module's, so
 * it runs first, before the location's return/rewrite/set/if and before
 * any access check.
 */
static ngx_int_t
ngx_http_proxy_wasm_rewrite_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_uint_t                       i;
    pw_action                        action;
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_stream_t    *s;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    if (plcf->chain == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);

    if (ctx && ctx->request_done) {
        if (ctx->plcf->chain == plcf->chain) {
            return NGX_DECLINED;    /* this chain already ran */
        }

        ctx = NULL;     /* "rewrite ... last" into another chain */
    }

    if (ctx == NULL) {
        ctx = ngx_http_proxy_wasm_create_ctx(r, plcf);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->request_done = 1;
    ctx->phase = NGX_HTTP_PROXY_WASM_PHASE_REQ;

    for (i = 0; i < ctx->nstreams; i++) {
        s = &ctx->streams[i];

        if (ngx_http_proxy_wasm_stream(r, s) != NGX_OK) {
            if (ngx_http_proxy_wasm_failed(r, ctx, s, "on_request_headers",
                                           "no stream context")
                == NGX_OK)
            {
                continue;
            }

            return NGX_HTTP_SERVICE_UNAVAILABLE;
        }

        action = pw_stream_on_request_headers(s->stream,
                                          ngx_http_proxy_wasm_in_count(r),
                                          ngx_http_proxy_wasm_request_eos(r));

        switch (action) {

        case PW_ACTION_CONTINUE:
            break;

        case PW_ACTION_PAUSE:
            ngx_http_proxy_wasm_paused(r, s, "on_request_headers");
            break;

        case PW_ACTION_LOCAL_RESPONSE:
            /* the rest of the chain and the content handler are skipped;
             * the rewrite phase checker finalizes the request with rc */
            rc = ngx_http_proxy_wasm_send_local(r, ctx, s);
            if (rc == NGX_DECLINED) {
                break;
            }

            return rc;

        default: /* PW_ACTION_ERROR */
            if (ngx_http_proxy_wasm_failed(r, ctx, s, "on_request_headers",
                                           NULL)
                == NGX_OK)
            {
                break;
            }

            return NGX_HTTP_SERVICE_UNAVAILABLE;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_proxy_wasm_log_handler(ngx_http_request_t *r)
{
    ngx_http_proxy_wasm_req_t  *req;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    req = ngx_http_proxy_wasm_req(r, 0);
    if (req == NULL) {
        return NGX_OK;
    }

    for (ctx = req->first; ctx; ctx = ctx->next) {
        ngx_http_proxy_wasm_end_streams(ctx);
    }

    return NGX_OK;
}


/* ------------------------------------------------------------ filters */


static uint32_t
ngx_http_proxy_wasm_out_nheaders(ngx_http_request_t *r)
{
    uint32_t  n;

    n = ngx_http_proxy_wasm_out_count(r) - NGX_HTTP_PROXY_WASM_OUT_SPECIAL;
    n++;                                        /* :status */

    if (r->headers_out.content_type.len) {
        n++;
    }

    if (r->headers_out.content_length == NULL
        && r->headers_out.content_length_n >= 0)
    {
        n++;
    }

    if (r->headers_out.last_modified == NULL
        && r->headers_out.last_modified_time != -1)
    {
        n++;
    }

    return n;
}


static ngx_int_t
ngx_http_proxy_wasm_fail_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    pw_str  body, type;

    body = ngx_http_proxy_wasm_pw(&ngx_http_proxy_wasm_503_body);
    type.data = "text/html";
    type.len = sizeof("text/html") - 1;

    ctx->replace = 1;

    return ngx_http_proxy_wasm_set_response(r, ctx,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            body, type, NULL, 0, -1);
}


static ngx_int_t
ngx_http_proxy_wasm_header_filter(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_uint_t                       i;
    pw_action                        action;
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_stream_t    *s;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);

    if (ctx == NULL) {
        /* the rewrite phase did not run here (e.g. "return" at server
         * level, or an early error): response callbacks only */

        plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

        if (plcf->chain == NULL) {
            return ngx_http_next_header_filter(r);
        }

        ctx = ngx_http_proxy_wasm_create_ctx(r, plcf);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ctx->lazy = 1;
        ctx->request_done = 1;
    }

    if (ctx->response_done || ctx->failed) {
        return ngx_http_next_header_filter(r);
    }

    ctx->response_done = 1;
    ctx->phase = NGX_HTTP_PROXY_WASM_PHASE_RESP;

    rc = NGX_OK;

    for (i = 0; i < ctx->nstreams; i++) {
        s = &ctx->streams[i];

        if (s->failed) {
            continue;
        }

        if (s->stream == NULL) {
            if (!ctx->lazy) {
                continue;   /* skipped by an earlier local response */
            }

            if (ngx_http_proxy_wasm_stream(r, s) != NGX_OK) {
                if (ngx_http_proxy_wasm_failed(r, ctx, s,
                                               "on_response_headers",
                                               "no stream context")
                    == NGX_OK)
                {
                    continue;
                }

                rc = ngx_http_proxy_wasm_fail_response(r, ctx);
                break;
            }
        }

        action = pw_stream_on_response_headers(s->stream,
                                          ngx_http_proxy_wasm_out_nheaders(r),
                                          r->header_only
                                          || r->method == NGX_HTTP_HEAD
                                          || r->headers_out.content_length_n
                                             == 0);

        if (action == PW_ACTION_CONTINUE) {
            continue;
        }

        if (action == PW_ACTION_PAUSE) {
            ngx_http_proxy_wasm_paused(r, s, "on_response_headers");
            continue;
        }

        if (action == PW_ACTION_LOCAL_RESPONSE) {
            if (ctx->local) {
                if (!s->filter->plugin->warned_local) {
                    s->filter->plugin->warned_local = 1;
                    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                                  "proxy_wasm \"%V\": second local response "
                                  "ignored (logged once per worker)",
                                  &s->filter->name);
                }

                continue;
            }

            /* replace the response: headers now, body in the body filter;
             * the rest of the chain is skipped */
            rc = ngx_http_proxy_wasm_set_local(r, ctx, s);
            if (rc == NGX_DECLINED) {
                rc = NGX_OK;
                continue;
            }

            ctx->replace = 1;
            break;
        }

        /* PW_ACTION_ERROR */

        if (ngx_http_proxy_wasm_failed(r, ctx, s, "on_response_headers",
                                       NULL)
            == NGX_OK)
        {
            continue;
        }

        rc = ngx_http_proxy_wasm_fail_response(r, ctx);
        break;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_proxy_wasm_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                  *b;
    ngx_chain_t                 out, *cl;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);

    if (ctx == NULL || !ctx->replace) {
        return ngx_http_next_body_filter(r, in);
    }

    /* the original body is consumed and dropped */

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->replace_sent || r->header_only) {
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->replace_sent = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    if (ctx->body.len) {
        b->pos = ctx->body.data;
        b->last = ctx->body.data + ctx->body.len;
        b->memory = 1;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/* ------------------------------------------------------ configuration */


static void *
ngx_http_proxy_wasm_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_proxy_wasm_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     pmcf->cache_dir = { 0, NULL };
     *     pmcf->runtime = NULL;
     */

    if (ngx_array_init(&pmcf->mods, cf->pool, 4,
                       sizeof(ngx_http_proxy_wasm_mod_t *))
        != NGX_OK
        || ngx_array_init(&pmcf->plugins, cf->pool, 4,
                          sizeof(ngx_http_proxy_wasm_plugin_t *))
           != NGX_OK
        || ngx_array_init(&pmcf->filters, cf->pool, 4,
                          sizeof(ngx_http_proxy_wasm_filter_t *))
           != NGX_OK)
    {
        return NULL;
    }

    pmcf->request_id_index = NGX_ERROR;

    return pmcf;
}


static void *
ngx_http_proxy_wasm_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    plcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_proxy_wasm_loc_conf_t));
    if (plcf == NULL) {
        return NULL;
    }

    plcf->chain = NGX_CONF_UNSET_PTR;
    plcf->failure = NGX_CONF_UNSET_UINT;

    return plcf;
}


static char *
ngx_http_proxy_wasm_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_proxy_wasm_loc_conf_t  *prev = parent;
    ngx_http_proxy_wasm_loc_conf_t  *conf = child;

    /* the innermost level with any proxy_wasm wins: chains never merge */
    ngx_conf_merge_ptr_value(conf->chain, prev->chain, NULL);
    ngx_conf_merge_uint_value(conf->failure, prev->failure,
                              NGX_HTTP_PROXY_WASM_FAIL_CLOSED);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_proxy_wasm_read_file(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *out)
{
    off_t            size;
    ssize_t          n;
    ngx_str_t        path;
    ngx_file_t       file;
    ngx_file_info_t  fi;

    path = *name;

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = path;
    file.log = cf->log;

    file.fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &path);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", &path);
        (void) ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    size = ngx_file_size(&fi);

    out->data = ngx_pnalloc(cf->pool, size + 1);
    if (out->data == NULL) {
        (void) ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, out->data, size, 0);

    (void) ngx_close_file(file.fd);

    if (n != size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot read \"%V\" (%z of %O bytes)",
                           &path, n, size);
        return NGX_ERROR;
    }

    out->len = size;
    out->data[size] = '\0';

    return NGX_OK;
}


/*
 * Matches one "key=value" parameter: the value of `key` goes to *str; the
 * file named by the value of `file_key` (may be NULL) is read into *data.
 * NGX_OK: matched; NGX_DECLINED: another parameter; NGX_ERROR: reported.
 */
static ngx_int_t
ngx_http_proxy_wasm_param(ngx_conf_t *cf, ngx_str_t *arg, const char *key,
    ngx_str_t *str, const char *file_key, ngx_str_t *data, ngx_flag_t *seen)
{
    size_t     klen;
    ngx_str_t  v;

    klen = ngx_strlen(key);

    if (arg->len > klen && arg->data[klen] == '='
        && ngx_strncmp(arg->data, key, klen) == 0)
    {
        if (str->data) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate parameter \"%s=\"", key);
            return NGX_ERROR;
        }

        str->data = arg->data + klen + 1;
        str->len = arg->len - klen - 1;
        return NGX_OK;
    }

    if (file_key == NULL) {
        return NGX_DECLINED;
    }

    klen = ngx_strlen(file_key);

    if (arg->len > klen && arg->data[klen] == '='
        && ngx_strncmp(arg->data, file_key, klen) == 0)
    {
        if (*seen) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate parameter \"%s=\"", file_key);
            return NGX_ERROR;
        }

        *seen = 1;

        v.data = arg->data + klen + 1;
        v.len = arg->len - klen - 1;

        return ngx_http_proxy_wasm_read_file(cf, &v, data);
    }

    return NGX_DECLINED;
}


/* proxy_wasm_module NAME PATH [vm_id=ID] [vm_config=STR|vm_config_file=P] */
static char *
ngx_http_proxy_wasm_module_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_proxy_wasm_main_conf_t *pmcf = conf;

    ngx_int_t                    rc;
    ngx_str_t                   *value, path, cfg_inline, cfg_file, vm_id;
    ngx_uint_t                   i;
    ngx_flag_t                   file_seen;
    ngx_http_proxy_wasm_mod_t   *mod, **mods, **pm;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty module name";
    }

    mods = pmcf->mods.elts;

    for (i = 0; i < pmcf->mods.nelts; i++) {
        if (mods[i]->name.len == value[1].len
            && ngx_strncmp(mods[i]->name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate proxy_wasm_module \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    mod = ngx_pcalloc(cf->pool, sizeof(ngx_http_proxy_wasm_mod_t));
    if (mod == NULL) {
        return NGX_CONF_ERROR;
    }

    path = value[2];

    if (path.len == 0) {
        return "has an empty module path";
    }

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_proxy_wasm_pstr(cf->pool, &mod->name, value[1].data,
                                 value[1].len)
        != NGX_OK
        || ngx_http_proxy_wasm_pstr(cf->pool, &mod->path, path.data, path.len)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&vm_id);
    ngx_str_null(&cfg_inline);
    ngx_str_null(&cfg_file);
    file_seen = 0;

    for (i = 3; i < cf->args->nelts; i++) {

        rc = ngx_http_proxy_wasm_param(cf, &value[i], "vm_id", &vm_id, NULL,
                                       NULL, NULL);

        if (rc == NGX_DECLINED) {
            rc = ngx_http_proxy_wasm_param(cf, &value[i], "vm_config",
                                           &cfg_inline, "vm_config_file",
                                           &cfg_file, &file_seen);
        }

        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (cfg_inline.data && file_seen) {
        return "takes either \"vm_config=\" or \"vm_config_file=\", "
               "not both";
    }

    mod->vm_id = vm_id;
    mod->vm_config = file_seen ? cfg_file : cfg_inline;
    mod->file = cf->conf_file->file.name;
    mod->line = cf->conf_file->line;

    pm = ngx_array_push(&pmcf->mods);
    if (pm == NULL) {
        return NGX_CONF_ERROR;
    }

    *pm = mod;

    return NGX_CONF_OK;
}


/* proxy_wasm NAME [root_id=ID] [config=STR | config_file=PATH] */
static char *
ngx_http_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_proxy_wasm_loc_conf_t *plcf = conf;

    ngx_int_t                         rc;
    ngx_str_t                        *value, cfg_inline, cfg_file, root_id;
    ngx_uint_t                        i;
    ngx_flag_t                        file_seen;
    ngx_http_proxy_wasm_filter_t     *filter, **pf;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty module name";
    }

    filter = ngx_pcalloc(cf->pool, sizeof(ngx_http_proxy_wasm_filter_t));
    if (filter == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&root_id);
    ngx_str_null(&cfg_inline);
    ngx_str_null(&cfg_file);
    file_seen = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        rc = ngx_http_proxy_wasm_param(cf, &value[i], "root_id", &root_id,
                                       NULL, NULL, NULL);

        if (rc == NGX_DECLINED) {
            rc = ngx_http_proxy_wasm_param(cf, &value[i], "config",
                                           &cfg_inline, "config_file",
                                           &cfg_file, &file_seen);
        }

        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (cfg_inline.data && file_seen) {
        return "takes either \"config=\" or \"config_file=\", not both";
    }

    filter->name = value[1];
    filter->root_id = root_id;
    filter->config = file_seen ? cfg_file : cfg_inline;
    filter->file = cf->conf_file->file.name;
    filter->line = cf->conf_file->line;

    if (plcf->chain == NGX_CONF_UNSET_PTR) {
        plcf->chain = ngx_array_create(cf->pool, 2,
                                       sizeof(ngx_http_proxy_wasm_filter_t *));
        if (plcf->chain == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    pf = ngx_array_push(plcf->chain);
    if (pf == NULL) {
        return NGX_CONF_ERROR;
    }

    *pf = filter;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_proxy_wasm_module);

    pf = ngx_array_push(&pmcf->filters);
    if (pf == NULL) {
        return NGX_CONF_ERROR;
    }

    *pf = filter;

    return NGX_CONF_OK;
}


/* proxy_wasm_cache_dir PATH | off */
static char *
ngx_http_proxy_wasm_cache_dir(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_proxy_wasm_main_conf_t *pmcf = conf;

    ngx_str_t  *value, path;

    if (pmcf->cache_dir.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_set(&pmcf->cache_dir, "");
        return NGX_CONF_OK;
    }

    path = value[1];

    if (path.len == 0) {
        return "has an empty path";
    }

    if (ngx_conf_full_name(cf->cycle, &path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_proxy_wasm_pstr(cf->pool, &pmcf->cache_dir, path.data,
                                 path.len)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_http_proxy_wasm_mod_t *
ngx_http_proxy_wasm_find_mod(ngx_http_proxy_wasm_main_conf_t *pmcf,
    ngx_str_t *name)
{
    ngx_uint_t                   i;
    ngx_http_proxy_wasm_mod_t  **mods;

    mods = pmcf->mods.elts;

    for (i = 0; i < pmcf->mods.nelts; i++) {
        if (mods[i]->name.len == name->len
            && ngx_strncmp(mods[i]->name.data, name->data, name->len) == 0)
        {
            return mods[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_proxy_wasm_str_eq(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || ngx_memcmp(a->data, b->data, a->len) == 0);
}


/* One plugin per distinct (module, root_id, configuration). */
static ngx_http_proxy_wasm_plugin_t *
ngx_http_proxy_wasm_find_plugin(ngx_conf_t *cf,
    ngx_http_proxy_wasm_main_conf_t *pmcf, ngx_http_proxy_wasm_mod_t *mod,
    ngx_http_proxy_wasm_filter_t *filter)
{
    ngx_uint_t                      i;
    ngx_http_proxy_wasm_plugin_t   *p, **plugins, **pp;

    plugins = pmcf->plugins.elts;

    for (i = 0; i < pmcf->plugins.nelts; i++) {
        p = plugins[i];

        if (p->mod == mod
            && ngx_http_proxy_wasm_str_eq(&p->root_id, &filter->root_id)
            && ngx_http_proxy_wasm_str_eq(&p->config, &filter->config))
        {
            return p;
        }
    }

    p = ngx_pcalloc(cf->pool, sizeof(ngx_http_proxy_wasm_plugin_t));
    if (p == NULL) {
        return NULL;
    }

    p->mod = mod;
    p->root_id = filter->root_id;
    p->config = filter->config;

    pp = ngx_array_push(&pmcf->plugins);
    if (pp == NULL) {
        return NULL;
    }

    *pp = p;

    return p;
}


static void
ngx_http_proxy_wasm_cleanup_runtime(void *data)
{
    ngx_http_proxy_wasm_main_conf_t *pmcf = data;

    ngx_uint_t                   i;
    ngx_http_proxy_wasm_mod_t  **mods;

    mods = pmcf->mods.elts;

    for (i = 0; i < pmcf->mods.nelts; i++) {
        if (mods[i]->vm) {
            pw_vm_free(mods[i]->vm);
            mods[i]->vm = NULL;
        }

        if (mods[i]->module) {
            pw_module_free(mods[i]->module);
            mods[i]->module = NULL;
        }
    }

    if (pmcf->runtime) {
        pw_runtime_free(pmcf->runtime);
        pmcf->runtime = NULL;
    }
}


/* Starts every plugin once on a throw-away VM, so that a plugin refusing
 * its configuration fails the configuration (nginx -t). */
static ngx_int_t
ngx_http_proxy_wasm_canary(ngx_conf_t *cf,
    ngx_http_proxy_wasm_main_conf_t *pmcf)
{
    int                              rc;
    char                             err[PW_ERRLEN];
    ngx_uint_t                       i, j, k;
    pw_plugin                       *plugin;
    ngx_http_proxy_wasm_mod_t      **mods, *mod;
    ngx_http_proxy_wasm_filter_t   **filters;
    ngx_http_proxy_wasm_plugin_t   **plugins;

    mods = pmcf->mods.elts;
    plugins = pmcf->plugins.elts;
    filters = pmcf->filters.elts;

    for (i = 0; i < pmcf->mods.nelts; i++) {
        mod = mods[i];
        mod->log = cf->log;

        rc = pw_vm_new(mod->module, ngx_http_proxy_wasm_pw(&mod->vm_id),
                       ngx_http_proxy_wasm_pw(&mod->vm_config),
                       &ngx_http_proxy_wasm_ops, mod, &mod->vm, err,
                       sizeof(err));
        if (rc != PW_OK) {
            mod->vm = NULL;
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "proxy_wasm_module \"%V\": cannot start: %s "
                          "in %V:%ui", &mod->name, err, &mod->file,
                          mod->line);
            return NGX_ERROR;
        }

        for (j = 0; j < pmcf->plugins.nelts; j++) {
            if (plugins[j]->mod != mod) {
                continue;
            }

            rc = pw_plugin_new(mod->vm, ngx_http_proxy_wasm_pw(&mod->name),
                               ngx_http_proxy_wasm_pw(&plugins[j]->root_id),
                               ngx_http_proxy_wasm_pw(&plugins[j]->config),
                               &plugin, err, sizeof(err));
            if (rc == PW_OK) {
                continue;
            }

            for (k = 0; k < pmcf->filters.nelts; k++) {
                if (filters[k]->plugin == plugins[j]) {
                    break;
                }
            }

            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "proxy_wasm \"%V\": plugin failed to start: %s "
                          "in %V:%ui", &mod->name, err, &filters[k]->file,
                          filters[k]->line);

            pw_vm_free(mod->vm);
            mod->vm = NULL;
            return NGX_ERROR;
        }

        pw_vm_free(mod->vm);
        mod->vm = NULL;
    }

    return NGX_OK;
}


static char *
ngx_http_proxy_wasm_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_proxy_wasm_main_conf_t *pmcf = conf;

    int                              rc;
    char                             err[PW_ERRLEN];
    char                            *env;
    ngx_str_t                        name;
    ngx_uint_t                       i;
    pw_runtime_config                rcf;
    ngx_pool_cleanup_t              *cln;
    ngx_http_proxy_wasm_mod_t      **mods, *mod;
    ngx_http_proxy_wasm_filter_t   **filters;

    if (pmcf->mods.nelts == 0 && pmcf->filters.nelts == 0) {
        return NGX_CONF_OK;
    }

    filters = pmcf->filters.elts;

    for (i = 0; i < pmcf->filters.nelts; i++) {
        mod = ngx_http_proxy_wasm_find_mod(pmcf, &filters[i]->name);

        if (mod == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "proxy_wasm \"%V\": no proxy_wasm_module with "
                          "this name in %V:%ui", &filters[i]->name,
                          &filters[i]->file, filters[i]->line);
            return NGX_CONF_ERROR;
        }

        filters[i]->plugin = ngx_http_proxy_wasm_find_plugin(cf, pmcf, mod,
                                                             filters[i]);
        if (filters[i]->plugin == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    ngx_str_set(&name, "request_id");
    pmcf->request_id_index = ngx_http_get_variable_index(cf, &name);
    if (pmcf->request_id_index == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    if (ngx_process == NGX_PROCESS_SIGNALLER) {
        return NGX_CONF_OK;     /* "nginx -s": no need to compile anything */
    }

    ngx_memzero(&rcf, sizeof(pw_runtime_config));

    if (pmcf->cache_dir.data == NULL) {
        /* the environment of the process that reads the configuration */
        env = getenv("PWASM_CACHE_DIR");
        rcf.cache_dir = (env && env[0]) ? env : NULL;

    } else {
        /* "off" is "": the library's "no cache" that does not fall back
         * to $PWASM_CACHE_DIR as NULL does */
        rcf.cache_dir = (const char *) pmcf->cache_dir.data;
    }

    rc = pw_runtime_new(&rcf, &pmcf->runtime, err, sizeof(err));
    if (rc != PW_OK) {
        pmcf->runtime = NULL;
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "proxy_wasm: cannot create the Wasm runtime: %s", err);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        pw_runtime_free(pmcf->runtime);
        pmcf->runtime = NULL;
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_proxy_wasm_cleanup_runtime;
    cln->data = pmcf;

    mods = pmcf->mods.elts;

    for (i = 0; i < pmcf->mods.nelts; i++) {
        mod = mods[i];

        rc = pw_module_load_file(pmcf->runtime, (const char *) mod->name.data,
                                 (const char *) mod->path.data, &mod->module,
                                 err, sizeof(err));
        if (rc != PW_OK) {
            mod->module = NULL;
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "proxy_wasm_module \"%V\": %s in %V:%ui",
                          &mod->name, err, &mod->file, mod->line);
            return NGX_CONF_ERROR;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                       "proxy_wasm_module \"%V\": ABI %s", &mod->name,
                       pw_module_abi_version(mod->module));
    }

    if (ngx_http_proxy_wasm_canary(cf, pmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_proxy_wasm_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt              *h;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_proxy_wasm_module);

    if (pmcf->filters.nelts == 0) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_proxy_wasm_rewrite_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_proxy_wasm_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_proxy_wasm_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_proxy_wasm_body_filter;

    return NGX_OK;
}
