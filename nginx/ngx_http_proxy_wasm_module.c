/*
 * ngx_http_proxy_wasm_module -- runs Proxy-Wasm plugins in nginx's HTTP
 * subsystem on top of the pwasm host library (include/pwasm.h).
 *
 * Configuration time (master process): every proxy_wasm_module is compiled
 * and loaded once per configuration cycle, and every distinct plugin is
 * started once on a throw-away VM (a canary), so that `nginx -t` refuses a
 * bad module or a plugin whose on_vm_start/on_configure fails.
 *
 * Worker processes: one pw_vm per worker per (module file, vm_id), one
 * pw_plugin (root context) per distinct (module, root_id, configuration),
 * shared by every location using it. Per request, one pw_stream per plugin
 * of the location's chain:
 *
 *   rewrite phase        on_request_headers, in chain order; then, when a
 *                        plugin exports it, nginx reads the body through
 *   request body filter  on_request_body, chunk by chunk
 *   header filter        on_response_headers (headers then held until the
 *   body filter          first on_response_body results went through)
 *                        on_response_trailers with the last buffer
 *   log phase            on_log, on_done, on_delete (pw_stream_free)
 *
 * Pause holds a direction until proxy_continue_stream: the rewrite handler
 * returns NGX_DONE and is run again, the filters keep (copy) what they are
 * given and set r->buffered. Actions a plugin asks for during a callback
 * (continue, close, local response) are queued and applied after it
 * returns, or from a posted event for another request (REFERENCE §8.10).
 * Header maps are r->headers_in / r->headers_out / trailers, kept
 * consistent with nginx's shortcut pointers. A trap answers 503 (fail
 * closed) unless proxy_wasm_failure_policy is "open". A stream that
 * paused is kept in its VM's list (owner->paused) until its request ends;
 * when a trap discards that VM (pw_host_ops.vm_discarded), the requests
 * still held by such a stream, which nothing can continue any more, get
 * the failure policy from their posted event (ngx_http_proxy_wasm_stranded).
 * See docs/DIRECTIVES.md and docs/PROPERTIES.md.
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
typedef struct ngx_http_proxy_wasm_mod_s  ngx_http_proxy_wasm_mod_t;

struct ngx_http_proxy_wasm_mod_s {
    ngx_str_t                        name;       /* NUL-terminated */
    ngx_str_t                        path;       /* absolute, NUL-terminated */
    ngx_str_t                        vm_id;
    ngx_str_t                        vm_config;
    ngx_str_t                        file;       /* where it was declared */
    ngx_uint_t                       line;
    ngx_str_t                        sha256;     /* precompiled: its digest,
                                                    NUL-terminated */
    unsigned                         precompiled:1;

    pw_module                       *module;     /* loaded in the master */
    ngx_uint_t                       cbs;        /* ..._CB_* it exports */
    pw_vm                           *vm;         /* per worker */
    ngx_http_proxy_wasm_mod_t       *owner;      /* holds the VM it uses:
                                                    itself, or an earlier
                                                    declaration of the same
                                                    (file, vm_id, vm_config) */
    ngx_queue_t                      paused;     /* of an owner: streams that
                                                    paused on its VM
                                                    (..._stream_t.queue) */
    ngx_log_t                       *log;        /* plugin logs, no request */
};


/* One distinct (module, root_id, configuration): a root context. */
typedef struct {
    ngx_http_proxy_wasm_mod_t       *mod;
    ngx_str_t                        root_id;
    ngx_str_t                        config;
    pw_plugin                       *plugin;     /* per worker */

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
    ngx_msec_t                       compile_timeout;
    size_t                           compile_memory;
    size_t                           module_max_size;
    pw_runtime                      *runtime;
    ngx_int_t                        request_id_index;
} ngx_http_proxy_wasm_main_conf_t;


typedef struct {
    ngx_array_t                     *chain;      /* ..._filter_t * */
    ngx_uint_t                       failure;
    size_t                           limit[2];   /* body buffer, per direction */
} ngx_http_proxy_wasm_loc_conf_t;


/* Callbacks that make the module read or hold bodies (pw_module_has_callback):
 * without them, bodies stream through untouched. */
#define NGX_HTTP_PROXY_WASM_CB_REQ_BODY   0x01
#define NGX_HTTP_PROXY_WASM_CB_RESP_BODY  0x02
#define NGX_HTTP_PROXY_WASM_CB_TRAILERS   0x04


/* Directions: indexes of the per-direction fields below. */
#define NGX_HTTP_PROXY_WASM_REQ           0
#define NGX_HTTP_PROXY_WASM_RESP          1

/* r->buffered bit while response data or headers are held for a plugin. */
#define NGX_HTTP_PROXY_WASM_BUFFERED      0x08

/* What a plugin callback asks for, after the queued actions are applied. */
#define NGX_HTTP_PROXY_WASM_CONTINUE      0
#define NGX_HTTP_PROXY_WASM_PAUSE         1
#define NGX_HTTP_PROXY_WASM_LOCAL         2
#define NGX_HTTP_PROXY_WASM_FAIL          3   /* failed closed */
#define NGX_HTTP_PROXY_WASM_CLOSE         4   /* proxy_close_stream */
#define NGX_HTTP_PROXY_WASM_OVERFLOW      5   /* body buffer limit */

/* Request side states. */
#define NGX_HTTP_PROXY_WASM_REQ_HEADERS   0
#define NGX_HTTP_PROXY_WASM_REQ_BODY      1
#define NGX_HTTP_PROXY_WASM_REQ_LOCAL     2
#define NGX_HTTP_PROXY_WASM_REQ_FAIL      3
#define NGX_HTTP_PROXY_WASM_REQ_DONE      4

/* Callbacks. */
#define NGX_HTTP_PROXY_WASM_ON_REQ_HEADERS   0
#define NGX_HTTP_PROXY_WASM_ON_REQ_BODY      1
#define NGX_HTTP_PROXY_WASM_ON_RESP_HEADERS  2
#define NGX_HTTP_PROXY_WASM_ON_RESP_BODY     3
#define NGX_HTTP_PROXY_WASM_ON_RESP_TRAILERS 4


/*
 * A body as plugins see it: data buffers only (in memory or in a file), in
 * order. "owned" buffers are ours (pool memory, or a request body temporary
 * file): they may be referenced later; others belong to nginx (the client
 * connection's buffers, the upstream's) and are copied before keeping them.
 */
typedef struct {
    ngx_chain_t                     *chain;
    off_t                            size;
    unsigned                         owned:1;
} ngx_http_proxy_wasm_body_t;


typedef struct ngx_http_proxy_wasm_ctx_s  ngx_http_proxy_wasm_ctx_t;

/* The `stream` pointer the library hands back to every pw_host_ops hook. */
typedef struct {
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_filter_t    *filter;
    pw_stream                       *stream;
    ngx_http_proxy_wasm_body_t       held[2];    /* buffered by its Pause */
    ngx_queue_t                      queue;      /* in its VM's owner->paused
                                                    once it paused, until its
                                                    request ends or the VM
                                                    is discarded */
    unsigned                         holding:2;  /* bit per direction */
    unsigned                         held_eos:2;
    unsigned                         failed:1;   /* failed open: skipped */
    unsigned                         freed:1;
    unsigned                         queued:1;   /* in owner->paused */
    unsigned                         discarded:1; /* its VM was discarded */
} ngx_http_proxy_wasm_stream_t;


/* Per request and location (an internal redirect starts a new one). */
struct ngx_http_proxy_wasm_ctx_s {
    ngx_http_request_t              *r;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;
    ngx_http_proxy_wasm_stream_t    *streams;    /* one per chain element */
    ngx_uint_t                       nstreams;
    ngx_uint_t                       cbs;        /* ..._CB_* of the chain */
    ngx_http_proxy_wasm_ctx_t       *next;       /* next ctx of the request */
    ngx_uint_t                       phase;
    ngx_str_t                        authority;  /* :authority */
    ngx_str_t                        scheme;     /* :scheme override */
    ngx_str_t                        body;       /* replacement body */

    ngx_event_t                      event;      /* queued resume/close */
    ngx_http_proxy_wasm_body_t      *cur[2];     /* body exposed now */
    ngx_int_t                        paused[2];  /* element holding, or -1 */
    ngx_uint_t                       req_state;
    ngx_uint_t                       req_next;   /* next request headers cb */
    ngx_uint_t                       resp_next;  /* next response headers cb */
    ngx_http_proxy_wasm_stream_t    *local_stream; /* local response to apply */
    ngx_http_proxy_wasm_body_t       pending;    /* response body held while
                                                    its headers are paused */
    ngx_http_proxy_wasm_body_t       gate;       /* request body waiting for
                                                    paused request headers */
    ngx_uint_t                       gate_from;  /* ... at this element */
    off_t                            out_size;   /* response bytes passed on */

    unsigned                         request_done:1;
    unsigned                         response_done:1;
    unsigned                         lazy:1;     /* created by the filter */
    unsigned                         local:1;    /* local response sent */
    unsigned                         failed:1;   /* failed closed */
    unsigned                         replace:1;  /* body filter replaces */
    unsigned                         replace_sent:1;
    unsigned                         gone:1;     /* request being freed */

    unsigned                         in_cb:1;    /* a callback is running */
    unsigned                         resume:2;   /* queued, per direction */
    unsigned                         close:1;    /* queued close */
    unsigned                         changed:2;  /* body size changed */
    unsigned                         modified:2; /* body written at all */
    unsigned                         req_body:1; /* request body handled */
    unsigned                         body_read:1; /* ... and read by nginx */
    unsigned                         req_eos:1;  /* last buf passed on */
    unsigned                         local_pending:1;
    unsigned                         local_queued:1; /* from elsewhere */
    unsigned                         req_hdr_paused:1; /* on_request_headers */
    unsigned                         gate_eos:1;
    unsigned                         headers_held:1;   /* not sent yet */
    unsigned                         headers_paused:1; /* ... by a Pause */
    unsigned                         pending_eos:1;
    unsigned                         out_eos:1;  /* response last buf sent */
    unsigned                         trailers_done:1;
    unsigned                         discarded:1; /* a stream's VM was
                                                     discarded: see whether
                                                     the request waits on it */
};


/* A value stored with proxy_set_property (path joined with '.'). */
typedef struct {
    ngx_str_t                        path;
    ngx_str_t                        value;
} ngx_http_proxy_wasm_prop_t;


/* All contexts of a request, kept in a pool cleanup: r->ctx is zeroed by
 * internal redirects, but every stream must still be ended. */
typedef struct {
    ngx_http_proxy_wasm_ctx_t       *first;
    ngx_http_proxy_wasm_ctx_t       *last;
    ngx_array_t                     *props;      /* ..._prop_t */
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
static proxy_status_t ngx_http_proxy_wasm_set_property(void *host,
    void *stream, const pw_str *path, size_t nseg, pw_str value);
static proxy_status_t ngx_http_proxy_wasm_body_size(void *host, void *stream,
    proxy_buffer_type_t type, size_t *size);
static proxy_status_t ngx_http_proxy_wasm_body_copy(void *host, void *stream,
    proxy_buffer_type_t type, size_t start, size_t len, void *dst);
static proxy_status_t ngx_http_proxy_wasm_body_replace(void *host,
    void *stream, proxy_buffer_type_t type, size_t start, size_t len,
    pw_str data);
static proxy_status_t ngx_http_proxy_wasm_resume(void *host, void *stream,
    proxy_stream_type_t type);
static proxy_status_t ngx_http_proxy_wasm_close(void *host, void *stream,
    proxy_stream_type_t type);
static void ngx_http_proxy_wasm_local_hook(void *host, void *stream);
static void ngx_http_proxy_wasm_vm_discarded(void *host);

static ngx_int_t ngx_http_proxy_wasm_request_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static proxy_status_t ngx_http_proxy_wasm_map_write_in(ngx_http_request_t *r,
    pw_str key, pw_str *value, ngx_uint_t replace);
static ngx_http_proxy_wasm_req_t *ngx_http_proxy_wasm_req(
    ngx_http_request_t *r, ngx_uint_t create);


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

    { ngx_string("proxy_wasm_compile_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, compile_timeout),
      NULL },

    { ngx_string("proxy_wasm_compile_memory"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, compile_memory),
      NULL },

    { ngx_string("proxy_wasm_module_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_main_conf_t, module_max_size),
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

    { ngx_string("proxy_wasm_request_body_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, limit),
      NULL },

    { ngx_string("proxy_wasm_response_body_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, limit) + sizeof(size_t),
      NULL },

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


static const pw_host_log_ops  ngx_http_proxy_wasm_log_ops = {
    .log = ngx_http_proxy_wasm_host_log,
    .log_level = ngx_http_proxy_wasm_host_log_level
};

static const pw_host_property_ops  ngx_http_proxy_wasm_property_ops = {
    .get_property = ngx_http_proxy_wasm_get_property,
    .set_property = ngx_http_proxy_wasm_set_property
};

static const pw_host_http_ops  ngx_http_proxy_wasm_http_ops = {
    .map_pairs = ngx_http_proxy_wasm_map_pairs,
    .map_get = ngx_http_proxy_wasm_map_get,
    .map_add = ngx_http_proxy_wasm_map_add,
    .map_replace = ngx_http_proxy_wasm_map_replace,
    .map_remove = ngx_http_proxy_wasm_map_remove,
    .map_set_pairs = ngx_http_proxy_wasm_map_set_pairs,
    .body_size = ngx_http_proxy_wasm_body_size,
    .body_copy = ngx_http_proxy_wasm_body_copy,
    .body_replace = ngx_http_proxy_wasm_body_replace,
    .resume = ngx_http_proxy_wasm_resume,
    .close = ngx_http_proxy_wasm_close,
    .local_response = ngx_http_proxy_wasm_local_hook
};

static const pw_host_observe_ops  ngx_http_proxy_wasm_observe_ops = {
    .vm_discarded = ngx_http_proxy_wasm_vm_discarded
};

static const pw_host_ops  ngx_http_proxy_wasm_ops = {
    .size = sizeof(pw_host_ops),
    .log = &ngx_http_proxy_wasm_log_ops,
    .clock = NULL,                         /* clock_gettime */
    .property = &ngx_http_proxy_wasm_property_ops,
    .http = &ngx_http_proxy_wasm_http_ops,
    .observe = &ngx_http_proxy_wasm_observe_ops
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


static ngx_str_t  ngx_http_proxy_wasm_500_body = ngx_string(
    "<html>" CRLF
    "<head><title>500 Internal Server Error</title></head>" CRLF
    "<body>" CRLF
    "<center><h1>500 Internal Server Error</h1></center>" CRLF
    "<hr><center>nginx</center>" CRLF
    "</body>" CRLF
    "</html>" CRLF);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;
static ngx_http_request_body_filter_pt   ngx_http_next_request_body_filter;


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


/* The request's pseudo-headers, in the order map_pairs lists them. */
static pw_str  ngx_http_proxy_wasm_pseudo[] = {
    { ":method", 7 }, { ":path", 5 }, { ":authority", 10 }, { ":scheme", 7 }
};


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


static ngx_int_t
ngx_http_proxy_wasm_in_pseudo(ngx_http_request_t *r, pw_str key,
    ngx_str_t *value)
{
    ngx_uint_t  k;

    if (key.len == 0 || key.data[0] != ':') {
        return NGX_DECLINED;
    }

    for (k = 0; k < 4; k++) {
        if (ngx_http_proxy_wasm_key_is(key,
                                       (u_char *) ngx_http_proxy_wasm_pseudo[k].data,
                                       ngx_http_proxy_wasm_pseudo[k].len))
        {
            ngx_http_proxy_wasm_in_pseudo_at(r, k, value);
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
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

    kv = ngx_palloc(r->pool, ngx_http_proxy_wasm_in_count(r) * sizeof(pw_kv));
    if (kv == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    for (k = 0; k < 4; k++) {
        ngx_http_proxy_wasm_in_pseudo_at(r, k, &v);
        kv[k].key = ngx_http_proxy_wasm_pseudo[k];
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
            kv[*k].value = ngx_http_proxy_wasm_pw(&h[i].value);
            (*k)++;
        }
    }

    return NGX_OK;
}


static proxy_status_t
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
            kv[k++].value = ngx_http_proxy_wasm_pw(&v);
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


/* ------------------------------------------------- trailers (lists) */

/* Response trailers are a plain list (r->headers_out.trailers) without
 * shortcuts; a deleted element has hash 0, as in headers_out. */

static proxy_status_t
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


static proxy_status_t
ngx_http_proxy_wasm_list_get(ngx_list_t *list, pw_str key, pw_str *value)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &list->part; part; part = part->next) {
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


static proxy_status_t
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


/* ------------------------------------------------- pseudo-headers */


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
        if (!ngx_http_proxy_wasm_key_is(key, (u_char *) ":status", 7)) {
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

    if (ngx_http_proxy_wasm_key_is(key, (u_char *) ":path", 5)) {
        return ngx_http_proxy_wasm_set_path(r, ctx, *value);
    }

    if (ngx_http_proxy_wasm_pstr(r->pool, &v, (u_char *) value->data,
                                 value->len)
        != NGX_OK)
    {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    if (ngx_http_proxy_wasm_key_is(key, (u_char *) ":method", 7)) {
        if (!ngx_http_proxy_wasm_valid(*value, 1)) {
            return PROXY_RESULT_BAD_ARGUMENT;
        }

        r->method_name = v;
        r->method = ngx_http_proxy_wasm_method_of(&v);

        return PROXY_RESULT_OK;
    }

    if (ngx_http_proxy_wasm_key_is(key, (u_char *) ":authority", 10)) {
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

    if (ngx_http_proxy_wasm_key_is(key, (u_char *) ":scheme", 7)) {
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

    if (!ngx_http_proxy_wasm_valid(key, 1)
        || (value && !ngx_http_proxy_wasm_valid(*value, 0)))
    {
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


/* ---------------------------------------------------------- properties */


static proxy_status_t ngx_http_proxy_wasm_variable(ngx_http_request_t *r,
    pw_str name, pw_str *value);


/* Envoy's encodings (REFERENCE §6.3): integers 8 bytes little-endian. */
static proxy_status_t
ngx_http_proxy_wasm_prop_int(ngx_http_request_t *r, int64_t n, pw_str *value)
{
    u_char      *p;
    ngx_uint_t   i;
    uint64_t     u;

    p = ngx_pnalloc(r->pool, 8);
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


static proxy_status_t
ngx_http_proxy_wasm_prop_bool(ngx_uint_t b, pw_str *value)
{
    static const char  bytes[2] = { 0, 1 };

    value->data = &bytes[b ? 1 : 0];
    value->len = 1;

    return PROXY_RESULT_OK;
}


static proxy_status_t
ngx_http_proxy_wasm_prop_str(ngx_str_t *s, pw_str *value)
{
    value->data = (const char *) s->data;
    value->len = s->len;

    return PROXY_RESULT_OK;
}


static u_char *
ngx_http_proxy_wasm_u32(u_char *p, size_t n)
{
    p[0] = (u_char) n;
    p[1] = (u_char) (n >> 8);
    p[2] = (u_char) (n >> 16);
    p[3] = (u_char) (n >> 24);

    return p + 4;
}


/* A map in the pairs format (REFERENCE §6.1), little-endian sizes. */
static proxy_status_t
ngx_http_proxy_wasm_prop_map(ngx_http_request_t *r, pw_kv *kv, size_t n,
    pw_str *value)
{
    size_t   i, len;
    u_char  *p, *start;

    len = 4;

    for (i = 0; i < n; i++) {
        len += 8 + kv[i].key.len + 1 + kv[i].value.len + 1;
    }

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    p = ngx_http_proxy_wasm_u32(start, n);

    for (i = 0; i < n; i++) {
        p = ngx_http_proxy_wasm_u32(p, kv[i].key.len);
        p = ngx_http_proxy_wasm_u32(p, kv[i].value.len);
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
ngx_http_proxy_wasm_prop_map_key(ngx_http_request_t *r, pw_kv *kv, size_t n,
    pw_str key, pw_str *value)
{
    size_t   i, len, found;
    u_char  *p;

    len = 0;
    found = 0;

    for (i = 0; i < n; i++) {
        if (ngx_http_proxy_wasm_key_is(key, (u_char *) kv[i].key.data,
                                       kv[i].key.len))
        {
            len += kv[i].value.len + (found ? 1 : 0);
            found++;
        }
    }

    if (found == 0) {
        return PROXY_RESULT_NOT_FOUND;
    }

    p = ngx_pnalloc(r->pool, len ? len : 1);
    if (p == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    value->data = (const char *) p;
    value->len = len;

    found = 0;

    for (i = 0; i < n; i++) {
        if (ngx_http_proxy_wasm_key_is(key, (u_char *) kv[i].key.data,
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


static proxy_status_t
ngx_http_proxy_wasm_prop_pairs(ngx_http_request_t *r, pw_kv *kv, size_t n,
    const pw_str *rest, size_t nrest, pw_str *value)
{
    if (nrest == 0) {
        return ngx_http_proxy_wasm_prop_map(r, kv, n, value);
    }

    if (nrest == 1) {
        return ngx_http_proxy_wasm_prop_map_key(r, kv, n, rest[0], value);
    }

    return PROXY_RESULT_NOT_FOUND;
}


/* "ip:port" ("[ipv6]:port") of a socket address. */
static proxy_status_t
ngx_http_proxy_wasm_prop_addr(ngx_http_request_t *r, struct sockaddr *sa,
    socklen_t socklen, ngx_uint_t port, pw_str *value)
{
    u_char  *p;
    size_t   len;

    if (sa == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (port) {
        return ngx_http_proxy_wasm_prop_int(r, ngx_inet_get_port(sa), value);
    }

    p = ngx_pnalloc(r->pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    len = ngx_sock_ntop(sa, socklen, p, NGX_SOCKADDR_STRLEN, 1);

    value->data = (const char *) p;
    value->len = len;

    return PROXY_RESULT_OK;
}


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

#define NAME_IS(s)  ngx_http_proxy_wasm_key_is(p[0], (u_char *) s,           \
                                                sizeof(s) - 1)

    if (NAME_IS("headers")) {
        st = ngx_http_proxy_wasm_in_pairs(r, &pairs, &npairs);
        if (st != PROXY_RESULT_OK) {
            return st;
        }

        return ngx_http_proxy_wasm_prop_pairs(r, pairs, npairs, p + 1, n - 1,
                                              value);
    }

    if (n != 1) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (NAME_IS("path")) {
        return ngx_http_proxy_wasm_prop_str(&r->unparsed_uri, value);
    }

    if (NAME_IS("url_path")) {
        v = r->unparsed_uri;
        q = ngx_strlchr(v.data, v.data + v.len, '?');
        if (q) {
            v.len = q - v.data;
        }

        return ngx_http_proxy_wasm_prop_str(&v, value);
    }

    if (NAME_IS("query")) {
        return ngx_http_proxy_wasm_prop_str(&r->args, value);
    }

    if (NAME_IS("method")) {
        return ngx_http_proxy_wasm_prop_str(&r->method_name, value);
    }

    if (NAME_IS("host")) {
        return ngx_http_proxy_wasm_prop_str(ngx_http_proxy_wasm_authority(r),
                                            value);
    }

    if (NAME_IS("scheme")) {
        (void) ngx_http_proxy_wasm_in_pseudo(r, (pw_str) { ":scheme", 7 },
                                             &v);
        return ngx_http_proxy_wasm_prop_str(&v, value);
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
        default:
            ngx_str_set(&v, "HTTP/1.1");
            break;
        }

        return ngx_http_proxy_wasm_prop_str(&v, value);
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
        return ngx_http_proxy_wasm_prop_int(r, ngx_http_proxy_wasm_start_ns(r),
                                            value);
    }

    if (NAME_IS("duration")) {
        tp = ngx_timeofday();
        return ngx_http_proxy_wasm_prop_int(r,
                   (int64_t) tp->sec * 1000000000
                   + (int64_t) tp->msec * 1000000
                   - ngx_http_proxy_wasm_start_ns(r), value);
    }

    if (NAME_IS("size")) {
        return ngx_http_proxy_wasm_prop_int(r,
                   ngx_max(r->headers_in.content_length_n, 0), value);
    }

    if (NAME_IS("total_size")) {
        return ngx_http_proxy_wasm_prop_int(r, r->request_length, value);
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

        return ngx_http_proxy_wasm_prop_pairs(r, pairs, npairs, p + 1, n - 1,
                                              value);
    }

    if (NAME_IS("trailers")) {
        st = ngx_http_proxy_wasm_list_pairs(r, &r->headers_out.trailers,
                                            &pairs, &npairs);
        if (st != PROXY_RESULT_OK) {
            return st;
        }

        return ngx_http_proxy_wasm_prop_pairs(r, pairs, npairs, p + 1, n - 1,
                                              value);
    }

    if (n != 1) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (NAME_IS("code")) {
        return ngx_http_proxy_wasm_prop_int(r, r->headers_out.status, value);
    }

    if (NAME_IS("code_details")) {
        lr = NULL;

        if (ctx->local && ctx->local_stream && ctx->local_stream->stream
            && !ctx->local_stream->freed)
        {
            lr = pw_stream_local_response(ctx->local_stream->stream);
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

        return ngx_http_proxy_wasm_prop_str(&v, value);
    }

    if (NAME_IS("flags")) {
        return ngx_http_proxy_wasm_prop_int(r, 0, value);
    }

    if (NAME_IS("size")) {
        /* the body as the plugins passed it (before any chunked framing) */
        size = ctx->out_size;
        return ngx_http_proxy_wasm_prop_int(r, size, value);
    }

    if (NAME_IS("total_size")) {
        return ngx_http_proxy_wasm_prop_int(r, r->connection->sent, value);
    }

    return PROXY_RESULT_NOT_FOUND;
}


static proxy_status_t
ngx_http_proxy_wasm_prop_connection(ngx_http_request_t *r, const pw_str *p,
    size_t n, pw_str *value)
{
    ngx_str_t          v;
    ngx_connection_t  *c;

    c = r->connection;

    if (n != 1) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (NAME_IS("id")) {
        return ngx_http_proxy_wasm_prop_int(r, (int64_t) c->number, value);
    }

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        const char  *name;
        X509        *cert;

        if (NAME_IS("mtls")) {
            cert = SSL_get_peer_certificate(c->ssl->connection);
            if (cert) {
                X509_free(cert);
            }

            return ngx_http_proxy_wasm_prop_bool(cert != NULL
                       && SSL_get_verify_result(c->ssl->connection)
                          == X509_V_OK, value);
        }

        if (NAME_IS("requested_server_name")) {
            name = SSL_get_servername(c->ssl->connection,
                                      TLSEXT_NAMETYPE_host_name);
            v.data = (u_char *) (name ? name : "");
            v.len = ngx_strlen(v.data);
            return ngx_http_proxy_wasm_prop_str(&v, value);
        }

        if (NAME_IS("tls_version")) {
            v.data = (u_char *) SSL_get_version(c->ssl->connection);
            v.len = ngx_strlen(v.data);
            return ngx_http_proxy_wasm_prop_str(&v, value);
        }
    }
#endif

    if (NAME_IS("mtls")) {
        return ngx_http_proxy_wasm_prop_bool(0, value);
    }

    if (NAME_IS("requested_server_name")) {
        ngx_str_set(&v, "");
        return ngx_http_proxy_wasm_prop_str(&v, value);
    }

    return PROXY_RESULT_NOT_FOUND;     /* tls_version without TLS */
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
        return ngx_http_proxy_wasm_prop_addr(r, u->peer.sockaddr,
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
        return ngx_http_proxy_wasm_prop_str(name, value);
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

    return ngx_http_proxy_wasm_prop_int(r, pn, value);
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
        return ngx_http_proxy_wasm_prop_str(&clcf->name, value);
    }

    if (NAME_IS("virtual_host_name")) {
        cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
        return ngx_http_proxy_wasm_prop_str(&cscf->server_name, value);
    }

    if (NAME_IS("cluster_name")) {
        if (r->upstream == NULL || r->upstream->upstream == NULL) {
            return PROXY_RESULT_NOT_FOUND;
        }

        v = r->upstream->upstream->host;
        return ngx_http_proxy_wasm_prop_str(&v, value);
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


/* A single "a.b.c" segment is accepted as "a\0b\0c" (REFERENCE §6.2). */
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


static proxy_status_t
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

        } else if (NAME_IS("source") || NAME_IS("destination")) {
            if (nseg == 2
                && (ngx_http_proxy_wasm_key_is(p[1], (u_char *) "address", 7)
                    || ngx_http_proxy_wasm_key_is(p[1], (u_char *) "port", 4)))
            {
                if (NAME_IS("destination")
                    && ngx_connection_local_sockaddr(r->connection, NULL, 0)
                       != NGX_OK)
                {
                    return PROXY_RESULT_INTERNAL_FAILURE;
                }

                st = ngx_http_proxy_wasm_prop_addr(r,
                         NAME_IS("source") ? r->connection->sockaddr
                                           : r->connection->local_sockaddr,
                         NAME_IS("source") ? r->connection->socklen
                                           : r->connection->local_socklen,
                         p[1].len == 4, value);
            }

        } else if (NAME_IS("connection")) {
            st = ngx_http_proxy_wasm_prop_connection(r, p + 1, nseg - 1,
                                                     value);

        } else if (NAME_IS("upstream")) {
            st = ngx_http_proxy_wasm_prop_upstream(r, p + 1, nseg - 1, value);

        } else if (NAME_IS("xds")) {
            st = ngx_http_proxy_wasm_prop_xds(r, p + 1, nseg - 1, value);

        } else if (NAME_IS("node")) {
            if (nseg == 2
                && ngx_http_proxy_wasm_key_is(p[1], (u_char *) "id", 2))
            {
                st = ngx_http_proxy_wasm_prop_str(
                         (ngx_str_t *) &ngx_cycle->hostname, value);
            }

        } else if (NAME_IS("ngx") && nseg == 2) {
            st = ngx_http_proxy_wasm_variable(r, p[1], value);
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

    return ngx_http_proxy_wasm_prop_str(&prop->value, value);
}


static proxy_status_t
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

    if (mod->owner->vm == NULL) {
        rc = pw_vm_new(mod->module, ngx_http_proxy_wasm_pw(&mod->vm_id),
                       ngx_http_proxy_wasm_pw(&mod->vm_config),
                       &ngx_http_proxy_wasm_ops, mod->owner, &mod->owner->vm,
                       err, sizeof(err));
        if (rc != PW_OK) {
            mod->owner->vm = NULL;
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "proxy_wasm_module \"%V\": cannot create VM: %s",
                          &mod->name, err);
            return NULL;
        }
    }

    rc = pw_plugin_new(mod->owner->vm, ngx_http_proxy_wasm_pw(&mod->name),
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
    char                              err[PW_ERRLEN];
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

    /* trap handlers and the CPU timer exist only in processes that run
     * plugins, from here to exit_process */
    if (pw_runtime_attach(pmcf->runtime, err, sizeof(err)) != PW_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "proxy_wasm: cannot install the trap handlers: %s",
                      err);
        return NGX_ERROR;
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

    /* before the cycle's pool is destroyed, which unloads this module */
    pw_runtime_detach(pmcf->runtime);
}


/* ------------------------------------------------- per-request state */


static void ngx_http_proxy_wasm_body_init(ngx_http_proxy_wasm_body_t *body,
    ngx_uint_t owned);
static void ngx_http_proxy_wasm_event_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_proxy_wasm_stream(ngx_http_request_t *r,
    ngx_http_proxy_wasm_stream_t *s);


/* Ends every stream context of ctx: on_log, on_done, on_delete. In the log
 * phase (`late`), plugins skipped by a local response or a failure before
 * them get a context now, as Envoy creates one at access-log time for a
 * filter the request never reached (REFERENCE §8.2), so a logging plugin
 * sees every request. */
static void
ngx_http_proxy_wasm_end_streams(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_uint_t late)
{
    ngx_uint_t                     i;
    ngx_http_proxy_wasm_stream_t  *s;

    ctx->phase = NGX_HTTP_PROXY_WASM_PHASE_LOG;

    if (ctx->event.posted) {
        ngx_delete_posted_event(&ctx->event);
    }

    /* first, as on_log may trap and discard the VM */
    for (i = 0; i < ctx->nstreams; i++) {
        s = &ctx->streams[i];

        if (s->queued) {
            ngx_queue_remove(&s->queue);
            s->queued = 0;
        }
    }

    for (i = 0; i < ctx->nstreams; i++) {
        s = &ctx->streams[i];

        if (late && s->stream == NULL && !s->failed && !s->freed
            && ngx_http_proxy_wasm_stream(ctx->r, s) != NGX_OK)
        {
            s->failed = 1;
        }

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
        ngx_http_proxy_wasm_end_streams(ctx, 0);
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
    req->props = NULL;

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
        ctx->cbs |= filters[i]->plugin->mod->cbs;
        ngx_http_proxy_wasm_body_init(&ctx->streams[i].held[0], 1);
        ngx_http_proxy_wasm_body_init(&ctx->streams[i].held[1], 1);
    }

    ctx->r = r;
    ctx->plcf = plcf;
    ctx->paused[NGX_HTTP_PROXY_WASM_REQ] = -1;
    ctx->paused[NGX_HTTP_PROXY_WASM_RESP] = -1;
    ngx_http_proxy_wasm_body_init(&ctx->pending, 1);
    ngx_http_proxy_wasm_body_init(&ctx->gate, 1);

    ctx->event.handler = ngx_http_proxy_wasm_event_handler;
    ctx->event.data = ctx;
    ctx->event.log = r->connection->log;
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

    if (reason == NULL && s->filter->plugin->mod->owner->vm) {
        reason = pw_vm_last_error(s->filter->plugin->mod->owner->vm);
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

    if (status < 200 || status > 599) {     /* the core refuses them */
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

        if (!ngx_http_proxy_wasm_valid(headers[i].key, 1)) {
            /* not logged: it may hold CR or LF */
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "proxy_wasm: invalid local response header name "
                          "(%uz bytes) ignored", headers[i].key.len);
            continue;
        }

        if (!ngx_http_proxy_wasm_valid(headers[i].value, 0)) {
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
    ngx_int_t  rc;

    if (r->request_body == NULL) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

    } else if (!ctx->body_read) {
        r->keepalive = 0;       /* the rest of the body is not read */
    }

    rc = ngx_http_proxy_wasm_set_local(r, ctx, s);
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->replace = 1;           /* the body filter emits ctx->body */

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, NULL);
}


/* ------------------------------------------------------------- bodies */


static void
ngx_http_proxy_wasm_body_init(ngx_http_proxy_wasm_body_t *body,
    ngx_uint_t owned)
{
    body->chain = NULL;
    body->size = 0;
    body->owned = owned;
}


static ngx_int_t
ngx_http_proxy_wasm_body_link(ngx_pool_t *pool,
    ngx_http_proxy_wasm_body_t *body, ngx_buf_t *b)
{
    ngx_chain_t  *cl, **ll;

    for (ll = &body->chain; *ll; ll = &(*ll)->next) { /* void */ }

    cl = ngx_alloc_chain_link(pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;
    *ll = cl;

    body->size += ngx_buf_size(b);

    return NGX_OK;
}


/* Copies [start, start + len) of the body into dst (memory or file). */
static ngx_int_t
ngx_http_proxy_wasm_body_read(ngx_http_proxy_wasm_body_t *body, off_t start,
    size_t len, u_char *dst)
{
    off_t         pos, bsize, from, n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    pos = 0;

    for (cl = body->chain; cl && len; cl = cl->next) {
        b = cl->buf;
        bsize = ngx_buf_size(b);

        if (start >= pos + bsize) {
            pos += bsize;
            continue;
        }

        from = start - pos;
        n = ngx_min((off_t) len, bsize - from);

        if (ngx_buf_in_memory(b)) {
            ngx_memcpy(dst, b->pos + from, (size_t) n);

        } else if (ngx_read_file(b->file, dst, (size_t) n, b->file_pos + from)
                   != (ssize_t) n)
        {
            return NGX_ERROR;
        }

        dst += n;
        len -= n;
        start += n;
        pos += bsize;
    }

    return NGX_OK;
}


/* Buffers for the parts [from, to) of the body, referencing its buffers. */
static ngx_int_t
ngx_http_proxy_wasm_body_slice(ngx_pool_t *pool,
    ngx_http_proxy_wasm_body_t *dst, ngx_http_proxy_wasm_body_t *src,
    off_t from, off_t to)
{
    off_t         pos, bsize, s, e;
    ngx_buf_t    *b, *nb;
    ngx_chain_t  *cl;

    pos = 0;

    for (cl = src->chain; cl && pos < to; cl = cl->next) {
        b = cl->buf;
        bsize = ngx_buf_size(b);

        s = ngx_max(from - pos, 0);
        e = ngx_min(to - pos, bsize);
        pos += bsize;

        if (s >= e) {
            continue;
        }

        nb = ngx_calloc_buf(pool);
        if (nb == NULL) {
            return NGX_ERROR;
        }

        if (ngx_buf_in_memory(b)) {
            nb->start = b->pos + s;
            nb->pos = nb->start;
            nb->last = b->pos + e;
            nb->end = nb->last;
            nb->memory = 1;

        } else {
            nb->in_file = 1;
            nb->file = b->file;
            nb->file_pos = b->file_pos + s;
            nb->file_last = b->file_pos + e;
        }

        if (ngx_http_proxy_wasm_body_link(pool, dst, nb) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* One pool buffer holding len bytes; data copied from p when given. */
static ngx_buf_t *
ngx_http_proxy_wasm_buf(ngx_pool_t *pool, size_t len, const void *p)
{
    ngx_buf_t  *b;

    b = ngx_create_temp_buf(pool, len ? len : 1);
    if (b == NULL) {
        return NULL;
    }

    if (p && len) {
        b->last = ngx_cpymem(b->pos, p, len);
    }

    return b;
}


/* Makes the body ours: one copy of whatever belongs to nginx. */
static ngx_int_t
ngx_http_proxy_wasm_body_own(ngx_http_request_t *r,
    ngx_http_proxy_wasm_body_t *body)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (body->owned) {
        return NGX_OK;
    }

    if (body->size == 0) {
        ngx_http_proxy_wasm_body_init(body, 1);
        return NGX_OK;
    }

    b = ngx_http_proxy_wasm_buf(r->pool, (size_t) body->size, NULL);
    if (b == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_proxy_wasm_body_read(body, 0, (size_t) body->size, b->pos)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    b->last = b->pos + body->size;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    body->chain = cl;
    body->owned = 1;

    return NGX_OK;
}


/* Appends src (made ours first) to dst; src is left empty. */
static ngx_int_t
ngx_http_proxy_wasm_body_append(ngx_http_request_t *r,
    ngx_http_proxy_wasm_body_t *dst, ngx_http_proxy_wasm_body_t *src)
{
    ngx_chain_t  **ll;

    if (ngx_http_proxy_wasm_body_own(r, src) != NGX_OK) {
        return NGX_ERROR;
    }

    for (ll = &dst->chain; *ll; ll = &(*ll)->next) { /* void */ }

    *ll = src->chain;
    dst->size += src->size;
    dst->owned = 1;

    ngx_http_proxy_wasm_body_init(src, 1);

    return NGX_OK;
}


/* Replaces [start, start + len) by data (prepend, append, splice). */
static ngx_int_t
ngx_http_proxy_wasm_body_splice(ngx_http_request_t *r,
    ngx_http_proxy_wasm_body_t *body, off_t start, off_t len, pw_str data)
{
    ngx_buf_t                   *b;
    ngx_http_proxy_wasm_body_t   nb;

    if (ngx_http_proxy_wasm_body_own(r, body) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_proxy_wasm_body_init(&nb, 1);

    if (ngx_http_proxy_wasm_body_slice(r->pool, &nb, body, 0, start)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (data.len) {
        b = ngx_http_proxy_wasm_buf(r->pool, data.len, data.data);
        if (b == NULL
            || ngx_http_proxy_wasm_body_link(r->pool, &nb, b) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_proxy_wasm_body_slice(r->pool, &nb, body, start + len,
                                       body->size)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    *body = nb;

    return NGX_OK;
}


/* The data buffers of an nginx chain; *eos set on its last buffer. */
static ngx_int_t
ngx_http_proxy_wasm_body_from(ngx_http_request_t *r,
    ngx_http_proxy_wasm_body_t *body, ngx_chain_t *in, ngx_uint_t *eos)
{
    ngx_chain_t  *cl;

    ngx_http_proxy_wasm_body_init(body, 0);

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf || cl->buf->last_in_chain) {
            if (cl->buf->last_buf || r != r->main) {
                *eos = 1;
            }
        }

        if (ngx_buf_size(cl->buf) > 0
            && ngx_http_proxy_wasm_body_link(r->pool, body, cl->buf)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* Marks nginx's buffers as consumed (their data was copied or dropped). */
static void
ngx_http_proxy_wasm_consume(ngx_chain_t *in)
{
    for ( /* void */ ; in; in = in->next) {
        in->buf->pos = in->buf->last;
        in->buf->file_pos = in->buf->file_last;
    }
}


/* An nginx chain for the body, with a last buffer when eos. */
static ngx_chain_t *
ngx_http_proxy_wasm_body_chain(ngx_http_request_t *r,
    ngx_http_proxy_wasm_body_t *body, ngx_uint_t eos)
{
    ngx_buf_t    *b;
    ngx_chain_t  *out, **ll, *cl, *src;

    out = NULL;
    ll = &out;

    for (src = body->chain; src; src = src->next) {
        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_CHAIN_ERROR;
        }

        cl->buf = src->buf;
        src->buf->last_buf = 0;
        src->buf->last_in_chain = 0;
        *ll = cl;
        ll = &cl->next;
    }

    if (eos) {
        b = ngx_calloc_buf(r->pool);
        cl = ngx_alloc_chain_link(r->pool);
        if (b == NULL || cl == NULL) {
            return NGX_CHAIN_ERROR;
        }

        b->last_buf = (r == r->main) ? 1 : 0;
        b->last_in_chain = 1;
        cl->buf = b;
        *ll = cl;
        ll = &cl->next;
    }

    *ll = NULL;

    return out;
}


/* ---------------------------------------------------- body host hooks */


static ngx_http_proxy_wasm_body_t *
ngx_http_proxy_wasm_body_of(void *stream, proxy_buffer_type_t type)
{
    ngx_http_proxy_wasm_stream_t  *s = stream;

    if (s == NULL || s->ctx->gone
        || (type != PROXY_BUFFER_HTTP_REQUEST_BODY
            && type != PROXY_BUFFER_HTTP_RESPONSE_BODY))
    {
        return NULL;
    }

    /* during a body callback: the body passing; while paused from one:
     * what the paused element holds */

    if (s->ctx->cur[type]) {
        return s->ctx->cur[type];
    }

    if (s->holding & (1 << type)) {
        return &s->held[type];
    }

    return NULL;
}


static proxy_status_t
ngx_http_proxy_wasm_body_size(void *host, void *stream,
    proxy_buffer_type_t type, size_t *size)
{
    ngx_http_proxy_wasm_body_t  *body;

    body = ngx_http_proxy_wasm_body_of(stream, type);
    if (body == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    *size = (size_t) body->size;

    return PROXY_RESULT_OK;
}


static proxy_status_t
ngx_http_proxy_wasm_body_copy(void *host, void *stream,
    proxy_buffer_type_t type, size_t start, size_t len, void *dst)
{
    ngx_http_proxy_wasm_body_t  *body;

    body = ngx_http_proxy_wasm_body_of(stream, type);
    if (body == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if ((off_t) (start + len) > body->size) {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    if (ngx_http_proxy_wasm_body_read(body, start, len, dst) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    return PROXY_RESULT_OK;
}


static proxy_status_t
ngx_http_proxy_wasm_body_replace(void *host, void *stream,
    proxy_buffer_type_t type, size_t start, size_t len, pw_str data)
{
    ngx_http_proxy_wasm_body_t    *body;
    ngx_http_proxy_wasm_stream_t  *s = stream;

    body = ngx_http_proxy_wasm_body_of(stream, type);
    if (body == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if ((off_t) (start + len) > body->size) {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    if (ngx_http_proxy_wasm_body_splice(s->ctx->r, body, start, len, data)
        != NGX_OK)
    {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    if (data.len != len) {
        s->ctx->changed |= 1 << type;
    }

    s->ctx->modified |= 1 << type;

    return PROXY_RESULT_OK;
}


/* ------------------------------------------- stream control, queueing */


static void
ngx_http_proxy_wasm_post(ngx_http_proxy_wasm_ctx_t *ctx)
{
    if (!ctx->in_cb && !ctx->gone && !ctx->event.posted) {
        ngx_post_event(&ctx->event, &ngx_posted_events);
    }
}


static proxy_status_t
ngx_http_proxy_wasm_resume(void *host, void *stream, proxy_stream_type_t type)
{
    ngx_http_proxy_wasm_stream_t  *s = stream;

    if (s == NULL || s->ctx->gone) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (type > PROXY_STREAM_HTTP_RESPONSE) {
        return PROXY_RESULT_BAD_ARGUMENT;   /* TCP directions */
    }

    /* applied after the running callback returns (REFERENCE §8.10) */
    s->ctx->resume |= 1 << type;
    ngx_http_proxy_wasm_post(s->ctx);

    return PROXY_RESULT_OK;
}


static proxy_status_t
ngx_http_proxy_wasm_close(void *host, void *stream, proxy_stream_type_t type)
{
    ngx_http_proxy_wasm_stream_t  *s = stream;

    if (s == NULL || s->ctx->gone) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (type > PROXY_STREAM_HTTP_RESPONSE) {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    s->ctx->close = 1;
    ngx_http_proxy_wasm_post(s->ctx);

    return PROXY_RESULT_OK;
}


/* A local response stored on this stream from another context's callback
 * (proxy_set_effective_context): applied from the posted event. */
static void
ngx_http_proxy_wasm_local_hook(void *host, void *stream)
{
    ngx_http_proxy_wasm_stream_t  *s = stream;

    if (s == NULL || s->ctx->gone || s->ctx->local || s->ctx->local_queued) {
        return;
    }

    s->ctx->local_queued = 1;
    s->ctx->local_stream = s;
    ngx_http_proxy_wasm_post(s->ctx);
}


/*
 * A trap discarded the VM of `host` (an owner): every stream context on it
 * is dead, and a request paused by one of them would never be continued.
 * Called from inside the failing call, maybe another request's: the
 * requests of the streams that paused on it are only marked here and their
 * event posted (by ngx_http_proxy_wasm_call once that request's callback
 * returned); ngx_http_proxy_wasm_stranded() applies the failure policy.
 */
static void
ngx_http_proxy_wasm_vm_discarded(void *host)
{
    ngx_queue_t                   *q;
    ngx_http_proxy_wasm_mod_t     *owner = host;
    ngx_http_proxy_wasm_stream_t  *s;

    while (!ngx_queue_empty(&owner->paused)) {
        q = ngx_queue_head(&owner->paused);
        ngx_queue_remove(q);

        s = ngx_queue_data(q, ngx_http_proxy_wasm_stream_t, queue);
        s->queued = 0;
        s->discarded = 1;
        s->ctx->discarded = 1;
        ngx_http_proxy_wasm_post(s->ctx);
    }
}


static const char *
ngx_http_proxy_wasm_cb_name(ngx_uint_t cb)
{
    static const char  *names[] = {
        "on_request_headers", "on_request_body", "on_response_headers",
        "on_response_body", "on_response_trailers"
    };

    return names[cb];
}


/*
 * Calls one plugin callback and applies what was queued during it: a
 * close, a resume of the same direction (a Pause then goes on), a second
 * local response (ignored). Resumes of the other direction or of other
 * requests are applied from their posted event.
 */
static ngx_int_t
ngx_http_proxy_wasm_call(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_http_proxy_wasm_stream_t *s, ngx_uint_t cb, size_t n, ngx_uint_t eos)
{
    ngx_uint_t           dir;
    pw_action            action;
    ngx_http_request_t  *r;

    r = ctx->r;

    if (s->stream == NULL && ngx_http_proxy_wasm_stream(r, s) != NGX_OK) {
        if (ngx_http_proxy_wasm_failed(r, ctx, s, ngx_http_proxy_wasm_cb_name(cb),
                                       "no stream context")
            == NGX_OK)
        {
            return NGX_HTTP_PROXY_WASM_CONTINUE;
        }

        return NGX_HTTP_PROXY_WASM_FAIL;
    }

    dir = (cb <= NGX_HTTP_PROXY_WASM_ON_REQ_BODY) ? NGX_HTTP_PROXY_WASM_REQ
                                                  : NGX_HTTP_PROXY_WASM_RESP;

    ctx->in_cb = 1;

    switch (cb) {
    case NGX_HTTP_PROXY_WASM_ON_REQ_HEADERS:
        action = pw_stream_on_request_headers(s->stream, n, eos);
        break;
    case NGX_HTTP_PROXY_WASM_ON_REQ_BODY:
        action = pw_stream_on_request_body(s->stream, n, eos);
        break;
    case NGX_HTTP_PROXY_WASM_ON_RESP_HEADERS:
        action = pw_stream_on_response_headers(s->stream, n, eos);
        break;
    case NGX_HTTP_PROXY_WASM_ON_RESP_BODY:
        action = pw_stream_on_response_body(s->stream, n, eos);
        break;
    default: /* NGX_HTTP_PROXY_WASM_ON_RESP_TRAILERS */
        action = pw_stream_on_response_trailers(s->stream, n);
        break;
    }

    ctx->in_cb = 0;

    if (ctx->close) {
        ctx->close = 0;
        ctx->resume = 0;
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "proxy_wasm \"%V\" closed the stream in %s",
                      &s->filter->name, ngx_http_proxy_wasm_cb_name(cb));
        return NGX_HTTP_PROXY_WASM_CLOSE;
    }

    if (ctx->resume & (1 << dir)) {
        if (action == PW_ACTION_PAUSE || action == PW_ACTION_PAUSE_NO_BUFFER) {
            action = PW_ACTION_CONTINUE;    /* resumed during the call */
            ctx->resume &= ~(1 << dir);

        } else if (!(dir == NGX_HTTP_PROXY_WASM_REQ
                     ? ctx->req_hdr_paused
                       || ctx->paused[NGX_HTTP_PROXY_WASM_REQ] >= 0
                     : ctx->headers_paused
                       || ctx->paused[NGX_HTTP_PROXY_WASM_RESP] >= 0))
        {
            ctx->resume &= ~(1 << dir);     /* nothing else to resume */
        }

        /* else: a continue for what an earlier callback paused (e.g. the
         * request headers, from a body callback): from the posted event */
    }

    if (ctx->resume || ctx->discarded) {
        ngx_http_proxy_wasm_post(ctx);
    }

    switch (action) {

    case PW_ACTION_CONTINUE:
        return NGX_HTTP_PROXY_WASM_CONTINUE;

    case PW_ACTION_PAUSE:
    case PW_ACTION_PAUSE_NO_BUFFER:
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "proxy_wasm \"%V\" paused in %s", &s->filter->name,
                       ngx_http_proxy_wasm_cb_name(cb));

        if (!s->queued) {
            /* woken by vm_discarded if its VM dies meanwhile */
            ngx_queue_insert_tail(&s->filter->plugin->mod->owner->paused,
                                  &s->queue);
            s->queued = 1;
        }

        return NGX_HTTP_PROXY_WASM_PAUSE;

    case PW_ACTION_LOCAL_RESPONSE:
        if (ctx->local || ctx->local_pending) {
            if (!s->filter->plugin->warned_local) {
                s->filter->plugin->warned_local = 1;
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "proxy_wasm \"%V\": second local response "
                              "ignored (logged once per worker)",
                              &s->filter->name);
            }

            return NGX_HTTP_PROXY_WASM_CONTINUE;
        }

        ctx->local_stream = s;
        return NGX_HTTP_PROXY_WASM_LOCAL;

    default: /* PW_ACTION_ERROR */
        if (ngx_http_proxy_wasm_failed(r, ctx, s,
                                       ngx_http_proxy_wasm_cb_name(cb), NULL)
            == NGX_OK)
        {
            return NGX_HTTP_PROXY_WASM_CONTINUE;
        }

        return NGX_HTTP_PROXY_WASM_FAIL;
    }
}


/* Whether some element holds data of a direction. */
static ngx_uint_t
ngx_http_proxy_wasm_holding(ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t dir)
{
    ngx_uint_t  i;

    for (i = 0; i < ctx->nstreams; i++) {
        if (ctx->streams[i].holding & (1 << dir)) {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_proxy_wasm_drop_held(ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t dir)
{
    ngx_uint_t  i;

    for (i = 0; i < ctx->nstreams; i++) {
        ctx->streams[i].holding &= ~(1 << dir);
        ctx->streams[i].held_eos &= ~(1 << dir);
        ngx_http_proxy_wasm_body_init(&ctx->streams[i].held[dir], 1);
    }

    ctx->paused[dir] = -1;
}


static void
ngx_http_proxy_wasm_update_buffered(ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_http_request_t  *r = ctx->r;

    if ((ctx->headers_held || ctx->headers_paused
         || ngx_http_proxy_wasm_holding(ctx, NGX_HTTP_PROXY_WASM_RESP))
        && !ctx->out_eos)
    {
        r->buffered |= NGX_HTTP_PROXY_WASM_BUFFERED;

    } else {
        r->buffered &= ~NGX_HTTP_PROXY_WASM_BUFFERED;
    }
}


/*
 * Runs a body chunk through the chain from element `from` (REFERENCE
 * §8.7): an element that paused before gets its buffered data plus the
 * chunk, with the total size; Pause buffers it in that element. On
 * NGX_HTTP_PROXY_WASM_CONTINUE, *cur is what goes on.
 */
static ngx_int_t
ngx_http_proxy_wasm_body_run(ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t dir,
    ngx_uint_t from, ngx_uint_t to, ngx_http_proxy_wasm_body_t *cur,
    ngx_uint_t eos)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i, buffering;
    ngx_http_request_t            *r;
    ngx_http_proxy_wasm_stream_t  *s;

    r = ctx->r;

    for (i = from; i < to; i++) {
        s = &ctx->streams[i];

        if (s->failed || s->stream == NULL) {
            continue;       /* failed open, or skipped by a local response */
        }

        buffering = s->holding & (1 << dir);

        if (buffering) {
            if (ngx_http_proxy_wasm_body_append(r, &s->held[dir], cur)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            *cur = s->held[dir];
            ngx_http_proxy_wasm_body_init(&s->held[dir], 1);
            s->holding &= ~(1 << dir);
            s->held_eos &= ~(1 << dir);

            if (cur->size > (off_t) ctx->plcf->limit[dir]) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "proxy_wasm \"%V\": %s body buffer limit of "
                              "%uz bytes exceeded (%O bytes)",
                              &s->filter->name,
                              dir ? "response" : "request",
                              ctx->plcf->limit[dir], cur->size);
                ctx->paused[dir] = -1;
                return NGX_HTTP_PROXY_WASM_OVERFLOW;
            }
        }

        ctx->cur[dir] = cur;

        rc = ngx_http_proxy_wasm_call(ctx, s,
                                      dir ? NGX_HTTP_PROXY_WASM_ON_RESP_BODY
                                          : NGX_HTTP_PROXY_WASM_ON_REQ_BODY,
                                      (size_t) cur->size, eos);

        ctx->cur[dir] = NULL;

        if (ctx->paused[dir] == (ngx_int_t) i) {
            ctx->paused[dir] = -1;
        }

        if (rc == NGX_HTTP_PROXY_WASM_CONTINUE) {
            continue;
        }

        if (rc == NGX_HTTP_PROXY_WASM_PAUSE) {
            /* StopIterationAndBuffer: this element keeps what it saw */
            if (ngx_http_proxy_wasm_body_own(r, cur) != NGX_OK) {
                return NGX_ERROR;
            }

            s->held[dir] = *cur;
            s->holding |= 1 << dir;

            if (eos) {
                s->held_eos |= 1 << dir;
            }

            ngx_http_proxy_wasm_body_init(cur, 1);
            ctx->paused[dir] = i;

            return NGX_HTTP_PROXY_WASM_PAUSE;
        }

        return rc;
    }

    return NGX_HTTP_PROXY_WASM_CONTINUE;
}


/* ----------------------------------------------------- request side */


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


static void ngx_http_proxy_wasm_body_read_done(ngx_http_request_t *r);
static void ngx_http_proxy_wasm_hold_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_request_flow(
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t from,
    ngx_http_proxy_wasm_body_t *body, ngx_uint_t eos);


/* After the request side: the upstream must get a valid message. */
static ngx_int_t
ngx_http_proxy_wasm_fix_request_length(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    off_t             size;
    u_char           *p;
    ngx_chain_t      *cl;
    ngx_table_elt_t  *h;

    if (!(ctx->changed & (1 << NGX_HTTP_PROXY_WASM_REQ))
        || r->request_body == NULL)
    {
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    /* proxy_pass & co. frame the body from content_length_n */
    r->headers_in.content_length_n = size;

    h = r->headers_in.content_length;

    if (h) {
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        h->value.data = p;
        h->value.len = ngx_sprintf(p, "%O", size) - p;
    }

    return NGX_OK;
}


/* Passes the request body on: to nginx's next request body filter while
 * it is being read, else into r->request_body->bufs. */
static ngx_int_t
ngx_http_proxy_wasm_request_out(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_http_proxy_wasm_body_t *body, ngx_uint_t eos, ngx_chain_t *in)
{
    ngx_chain_t         *out, **ll;
    ngx_http_request_t  *r;

    r = ctx->r;

    if (ctx->req_eos || ctx->body_read) {
        /* nginx has the whole body already: append to it */

        if (ngx_http_proxy_wasm_body_own(r, body) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        for (ll = &r->request_body->bufs; *ll; ll = &(*ll)->next) {
            if (ngx_buf_size((*ll)->buf) == 0) {
                break;          /* the empty last buffer we passed */
            }
        }

        *ll = body->chain;
        return NGX_OK;
    }

    if (in && !body->owned) {
        out = in;               /* untouched: as nginx made it */

    } else {
        ngx_http_proxy_wasm_consume(in);

        out = ngx_http_proxy_wasm_body_chain(r, body, eos);
        if (out == NGX_CHAIN_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (eos) {
        ctx->req_eos = 1;
    }

    return ngx_http_next_request_body_filter(r, out);
}


/*
 * The request body through the chain from element `from`, as far as the
 * elements whose on_request_headers ran: while request headers are paused
 * (a plugin that wants the body before deciding), the body goes to the
 * elements before the paused one and waits (ctx->gate) for the others.
 * NGX_DONE: the body waits at the gate.
 */
static ngx_int_t
ngx_http_proxy_wasm_request_flow(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_uint_t from, ngx_http_proxy_wasm_body_t *body, ngx_uint_t eos)
{
    ngx_int_t   rc;
    ngx_uint_t  to;

    to = (ctx->req_state == NGX_HTTP_PROXY_WASM_REQ_HEADERS)
         ? ctx->req_next : ctx->nstreams;

    if (from > to) {
        from = to;
    }

    rc = ngx_http_proxy_wasm_body_run(ctx, NGX_HTTP_PROXY_WASM_REQ, from, to,
                                      body, eos);

    if (rc != NGX_HTTP_PROXY_WASM_CONTINUE || to == ctx->nstreams) {
        return rc;
    }

    if (ngx_http_proxy_wasm_body_append(ctx->r, &ctx->gate, body) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->gate_from = to;
    ctx->gate_eos |= eos;

    return NGX_DONE;
}


/* Request body filter: each chunk nginx reads (after de-chunking) goes
 * through proxy_on_request_body before nginx stores it. */
static ngx_int_t
ngx_http_proxy_wasm_request_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    ngx_int_t                    rc;
    ngx_uint_t                   eos;
    ngx_http_proxy_wasm_ctx_t   *ctx;
    ngx_http_proxy_wasm_body_t   body;

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);

    if (ctx == NULL || !ctx->req_body || ctx->req_eos) {
        return ngx_http_next_request_body_filter(r, in);
    }

    if (ctx->req_state >= NGX_HTTP_PROXY_WASM_REQ_LOCAL) {
        /* answered already: the rest of the body is dropped, and nginx
         * finishes reading it (then the rewrite phase answers) */
        eos = 0;

        if (ngx_http_proxy_wasm_body_from(r, &body, in, &eos) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_proxy_wasm_consume(in);

        if (!eos) {
            return NGX_OK;
        }

        ngx_http_proxy_wasm_body_init(&body, 1);
        return ngx_http_proxy_wasm_request_out(ctx, &body, 1, NULL);
    }

    if (in == NULL) {
        return ngx_http_next_request_body_filter(r, NULL);
    }

    eos = 0;

    if (ngx_http_proxy_wasm_body_from(r, &body, in, &eos) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (body.size == 0 && !eos) {
        return ngx_http_next_request_body_filter(r, in);
    }

    rc = ngx_http_proxy_wasm_request_flow(ctx, 0, &body, eos);

    switch (rc) {

    case NGX_HTTP_PROXY_WASM_CONTINUE:
        return ngx_http_proxy_wasm_request_out(ctx, &body, eos, in);

    case NGX_DONE:
        /* stopped before elements whose request headers did not run */
        ngx_http_proxy_wasm_consume(in);

        if (!eos) {
            return NGX_OK;
        }

        ngx_http_proxy_wasm_body_init(&body, 1);
        return ngx_http_proxy_wasm_request_out(ctx, &body, 1, NULL);

    case NGX_HTTP_PROXY_WASM_PAUSE:
        ngx_http_proxy_wasm_consume(in);

        if (!eos) {
            return NGX_OK;
        }

        /* let nginx finish reading; the body is handed over on resume */
        ngx_http_proxy_wasm_body_init(&body, 1);
        return ngx_http_proxy_wasm_request_out(ctx, &body, 1, NULL);

    case NGX_HTTP_PROXY_WASM_LOCAL:
        /* answered at once (an nginx special response that the header
         * filter replaces by the local response); error_page skipped */
        ngx_http_proxy_wasm_consume(in);
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_LOCAL;
        ctx->local_pending = 1;
        r->error_page = 1;
        r->keepalive = 0;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    case NGX_HTTP_PROXY_WASM_OVERFLOW:
        ngx_http_proxy_wasm_consume(in);
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_FAIL;
        r->keepalive = 0;
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;

    case NGX_HTTP_PROXY_WASM_CLOSE:
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_FAIL;
        return NGX_HTTP_CLOSE;

    case NGX_HTTP_PROXY_WASM_FAIL:
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_FAIL;
        r->keepalive = 0;
        return NGX_HTTP_SERVICE_UNAVAILABLE;

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/* A body nginx read before this chain ran ("rewrite ... last", error_page
 * into another chain): delivered whole, memory or temporary file. */
static ngx_int_t
ngx_http_proxy_wasm_request_read_body(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_int_t                    rc;
    ngx_chain_t                 *cl;
    ngx_http_proxy_wasm_body_t   body;

    ngx_http_proxy_wasm_body_init(&body, 1);

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (ngx_buf_size(cl->buf) > 0
            && ngx_http_proxy_wasm_body_link(r->pool, &body, cl->buf)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    r->request_body->bufs = NULL;
    ctx->body_read = 1;
    ctx->req_eos = 1;

    rc = ngx_http_proxy_wasm_body_run(ctx, NGX_HTTP_PROXY_WASM_REQ, 0,
                                      ctx->nstreams, &body, 1);

    if (rc == NGX_HTTP_PROXY_WASM_CONTINUE) {
        r->request_body->bufs = body.chain;
    }

    return rc;
}


/* Outcome of the request side that the rewrite handler returns. */
static ngx_int_t
ngx_http_proxy_wasm_request_result(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_int_t rc)
{
    switch (rc) {

    case NGX_HTTP_PROXY_WASM_LOCAL:
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;
        return ngx_http_proxy_wasm_send_local(r, ctx, ctx->local_stream);

    case NGX_HTTP_PROXY_WASM_CLOSE:
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;
        return NGX_HTTP_CLOSE;

    case NGX_HTTP_PROXY_WASM_OVERFLOW:
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;

    case NGX_HTTP_PROXY_WASM_FAIL:
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;
        return NGX_HTTP_SERVICE_UNAVAILABLE;

    default:
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/* The request side is done. A :path written by a plugin chooses the
 * location again, as "rewrite ... last" does (Envoy clears its route
 * cache): the rest of this location's rewrite phase is skipped. */
static ngx_int_t
ngx_http_proxy_wasm_request_done(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_uint_t                  i;
    ngx_http_phase_handler_t   *ph;
    ngx_http_core_main_conf_t  *cmcf;

    ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;

    if (ngx_http_proxy_wasm_fix_request_length(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!r->uri_changed) {
        return NGX_DECLINED;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);
    ph = cmcf->phase_engine.handlers;

    for (i = r->phase_handler; ph[i].checker; i++) {
        if (ph[i].checker == ngx_http_core_post_rewrite_phase) {
            r->phase_handler = i - 1;   /* the checker adds one */
            break;
        }
    }

    return NGX_DECLINED;
}


/* Reads (and stores) the body now, through our request body filter; the
 * upstream request is made once it is complete. */
static ngx_int_t
ngx_http_proxy_wasm_read_body(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_int_t  rc;

    ctx->req_body = 1;
    r->request_body_no_buffering = 0;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_proxy_wasm_body_read_done);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/* After the request headers went through the whole chain: the body that
 * waited at the gate goes on; then wait for the rest of it, or go on. */
static ngx_int_t
ngx_http_proxy_wasm_open_gate(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_int_t                    rc;
    ngx_uint_t                   eos;
    ngx_http_proxy_wasm_body_t   body;

    if (ctx->gate.size || ctx->gate_eos) {
        body = ctx->gate;
        eos = ctx->gate_eos;
        ngx_http_proxy_wasm_body_init(&ctx->gate, 1);
        ctx->gate_eos = 0;

        rc = ngx_http_proxy_wasm_request_flow(ctx, ctx->gate_from, &body,
                                              eos);

        if (rc == NGX_HTTP_PROXY_WASM_PAUSE) {
            ngx_http_proxy_wasm_hold_request(r);
            return NGX_DONE;
        }

        if (rc != NGX_HTTP_PROXY_WASM_CONTINUE) {
            return ngx_http_proxy_wasm_request_result(r, ctx, rc);
        }

        rc = ngx_http_proxy_wasm_request_out(ctx, &body, eos, NULL);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (!ctx->body_read) {
        return NGX_DONE;            /* nginx goes on reading */
    }

    return ngx_http_proxy_wasm_request_done(r, ctx);
}


/* While a plugin holds the request, notice a client that goes away. */
static void
ngx_http_proxy_wasm_hold_request(ngx_http_request_t *r)
{
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_core_run_phases;
}


/*
 * Rewrite phase: our handler is registered after the rewrite module's, so
 * it runs first, before the location's return/rewrite/set/if and before
 * any access check. It is re-entered (the phase is run again) after a
 * pause is resumed and after the request body was read.
 */
static ngx_int_t
ngx_http_proxy_wasm_rewrite_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_uint_t                       i;
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_stream_t    *s;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    if (plcf->chain == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);

    if (ctx && ctx->plcf->chain != plcf->chain) {
        if (ctx->req_state != NGX_HTTP_PROXY_WASM_REQ_DONE) {
            return NGX_DECLINED;    /* another chain is still busy */
        }

        ctx = NULL;     /* "rewrite ... last" into another chain */
    }

    if (ctx == NULL) {
        ctx = ngx_http_proxy_wasm_create_ctx(r, plcf);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ctx->paused[NGX_HTTP_PROXY_WASM_REQ] >= 0 || ctx->req_hdr_paused) {
        return NGX_DONE;            /* still held by a plugin */
    }

    switch (ctx->req_state) {

    case NGX_HTTP_PROXY_WASM_REQ_DONE:
        return NGX_DECLINED;

    case NGX_HTTP_PROXY_WASM_REQ_LOCAL:
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;
        return ngx_http_proxy_wasm_send_local(r, ctx, ctx->local_stream);

    case NGX_HTTP_PROXY_WASM_REQ_FAIL:
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;
        return NGX_HTTP_SERVICE_UNAVAILABLE;

    case NGX_HTTP_PROXY_WASM_REQ_BODY:
        if (!ctx->body_read) {
            return NGX_DONE;        /* nginx is still reading it */
        }

        return ngx_http_proxy_wasm_request_done(r, ctx);

    default: /* NGX_HTTP_PROXY_WASM_REQ_HEADERS */
        break;
    }

    ctx->request_done = 1;
    ctx->phase = NGX_HTTP_PROXY_WASM_PHASE_REQ;

    for (i = ctx->req_next; i < ctx->nstreams; i++) {
        s = &ctx->streams[i];

        if (s->failed) {
            continue;
        }

        rc = ngx_http_proxy_wasm_call(ctx, s,
                                      NGX_HTTP_PROXY_WASM_ON_REQ_HEADERS,
                                      ngx_http_proxy_wasm_in_count(r),
                                      ngx_http_proxy_wasm_request_eos(r));

        if (rc == NGX_HTTP_PROXY_WASM_CONTINUE) {
            continue;
        }

        if (rc == NGX_HTTP_PROXY_WASM_PAUSE) {
            /* nothing goes upstream until proxy_continue_request; the
             * plugins that ran may still see the body meanwhile */
            ctx->req_next = i + 1;
            ctx->req_hdr_paused = 1;
            ngx_http_proxy_wasm_hold_request(r);

            if (ctx->req_body || r->request_body
                || ngx_http_proxy_wasm_request_eos(r)
                || !(ctx->cbs & NGX_HTTP_PROXY_WASM_CB_REQ_BODY))
            {
                return NGX_DONE;
            }

            return ngx_http_proxy_wasm_read_body(r, ctx);
        }

        /* the rest of the chain and the content handler are skipped */
        return ngx_http_proxy_wasm_request_result(r, ctx, rc);
    }

    ctx->req_next = ctx->nstreams;

    if (ctx->req_body) {
        /* nginx started reading the body while the headers were paused:
         * what waited goes through the rest of the chain */
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_BODY;
        return ngx_http_proxy_wasm_open_gate(r, ctx);
    }

    if ((ngx_http_proxy_wasm_request_eos(r) && r->request_body == NULL)
        || !(ctx->cbs & NGX_HTTP_PROXY_WASM_CB_REQ_BODY))
    {
        return ngx_http_proxy_wasm_request_done(r, ctx);
    }

    ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_BODY;

    if (r->request_body) {
        ctx->req_body = 1;

        if (r->request_body->rest != 0 && !r->request_body->last_saved) {
            /* nginx is reading it for someone else: our filter is on
             * the way, but the body was partly read already */
            ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;
            return NGX_DECLINED;
        }

        rc = ngx_http_proxy_wasm_request_read_body(r, ctx);

        if (rc == NGX_HTTP_PROXY_WASM_PAUSE) {
            ngx_http_proxy_wasm_hold_request(r);
            return NGX_DONE;
        }

        if (rc != NGX_HTTP_PROXY_WASM_CONTINUE) {
            return ngx_http_proxy_wasm_request_result(r, ctx, rc);
        }

        return ngx_http_proxy_wasm_request_done(r, ctx);
    }

    return ngx_http_proxy_wasm_read_body(r, ctx);
}


static void
ngx_http_proxy_wasm_body_read_done(ngx_http_request_t *r)
{
    ngx_http_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);
    if (ctx == NULL) {
        return;
    }

    ctx->body_read = 1;
    r->preserve_body = 1;

    if (ctx->response_done) {
        return;     /* answered while the body was still coming */
    }

    if (ctx->paused[NGX_HTTP_PROXY_WASM_REQ] >= 0 || ctx->req_hdr_paused) {
        ngx_http_proxy_wasm_hold_request(r);    /* held until resumed */
        return;
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static void
ngx_http_proxy_wasm_resume_request(ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_int_t                      rc, i;
    ngx_uint_t                     eos;
    ngx_http_request_t            *r;
    ngx_http_proxy_wasm_body_t     body;
    ngx_http_proxy_wasm_stream_t  *s;

    r = ctx->r;
    i = ctx->paused[NGX_HTTP_PROXY_WASM_REQ];

    /* like Envoy's continueDecoding(): whatever of the request is stopped
     * goes on, the body an element held and the headers */
    ctx->paused[NGX_HTTP_PROXY_WASM_REQ] = -1;
    ctx->req_hdr_paused = 0;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "proxy_wasm: request resumed");

    s = (i >= 0) ? &ctx->streams[i] : NULL;

    if (s && (s->holding & (1 << NGX_HTTP_PROXY_WASM_REQ))
        && ctx->req_state < NGX_HTTP_PROXY_WASM_REQ_LOCAL)
    {
        body = s->held[NGX_HTTP_PROXY_WASM_REQ];
        eos = (s->held_eos & (1 << NGX_HTTP_PROXY_WASM_REQ)) ? 1 : 0;

        ngx_http_proxy_wasm_body_init(&s->held[NGX_HTTP_PROXY_WASM_REQ], 1);
        s->holding &= ~(1 << NGX_HTTP_PROXY_WASM_REQ);
        s->held_eos &= ~(1 << NGX_HTTP_PROXY_WASM_REQ);

        rc = ngx_http_proxy_wasm_request_flow(ctx, i + 1, &body, eos);

        switch (rc) {
        case NGX_HTTP_PROXY_WASM_CONTINUE:
            rc = ngx_http_proxy_wasm_request_out(ctx, &body, eos, NULL);
            if (rc != NGX_OK) {
                ngx_http_finalize_request(r, rc);
                return;
            }
            break;
        case NGX_DONE:                      /* waits at the gate */
        case NGX_HTTP_PROXY_WASM_PAUSE:     /* another element holds it */
            break;
        case NGX_HTTP_PROXY_WASM_LOCAL:
            ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_LOCAL;
            break;
        case NGX_HTTP_PROXY_WASM_CLOSE:
            ngx_http_finalize_request(r, NGX_HTTP_CLOSE);
            return;
        case NGX_HTTP_PROXY_WASM_OVERFLOW:
            ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;
            ngx_http_finalize_request(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
            return;
        default:
            ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_FAIL;
            break;
        }
    }

    if (ctx->req_state == NGX_HTTP_PROXY_WASM_REQ_BODY
        && (!ctx->body_read || ctx->paused[NGX_HTTP_PROXY_WASM_REQ] >= 0))
    {
        return;     /* nginx goes on reading, or a plugin holds the body */
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/* ---------------------------------------------------- response side */


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


static ngx_uint_t
ngx_http_proxy_wasm_trailer_count(ngx_http_request_t *r)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = 0;

    for (part = &r->headers_out.trailers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash) {
                n++;
            }
        }
    }

    return n;
}


static ngx_int_t
ngx_http_proxy_wasm_fail_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t status)
{
    pw_str     body, type;
    ngx_str_t  page;

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        page = ngx_http_proxy_wasm_503_body;

    } else {
        page = ngx_http_proxy_wasm_500_body;
    }

    body = ngx_http_proxy_wasm_pw(&page);
    type.data = "text/html";
    type.len = sizeof("text/html") - 1;

    ctx->replace = 1;
    ctx->replace_sent = 0;
    ctx->failed = 1;            /* no more callbacks for this response */

    return ngx_http_proxy_wasm_set_response(r, ctx, status, body, type,
                                            NULL, 0, -1);
}


static ngx_uint_t
ngx_http_proxy_wasm_no_body(ngx_http_request_t *r)
{
    return r->header_only || r->method == NGX_HTTP_HEAD
           || r->headers_out.status == NGX_HTTP_NO_CONTENT
           || r->headers_out.status == NGX_HTTP_NOT_MODIFIED
           || r->headers_out.status < NGX_HTTP_OK;
}


static ngx_int_t
ngx_http_proxy_wasm_send_headers(ngx_http_proxy_wasm_ctx_t *ctx)
{
    ctx->headers_held = 0;
    ngx_http_proxy_wasm_update_buffered(ctx);

    return ngx_http_next_header_filter(ctx->r);
}


/*
 * on_response_headers of the chain from ctx->resp_next. The headers are
 * then held until the first body data has gone through the body
 * callbacks (so that a body callback can still answer locally, and the
 * length is known when the body is complete), or sent now when there is
 * no body.
 */
static ngx_int_t
ngx_http_proxy_wasm_response_headers(ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_http_request_t            *r;
    ngx_http_proxy_wasm_stream_t  *s;

    r = ctx->r;

again:

    for (i = ctx->resp_next; i < ctx->nstreams; i++) {
        s = &ctx->streams[i];

        if (s->failed || (s->stream == NULL && !ctx->lazy)) {
            continue;   /* skipped by an earlier local response */
        }

        rc = ngx_http_proxy_wasm_call(ctx, s,
                                      NGX_HTTP_PROXY_WASM_ON_RESP_HEADERS,
                                      ngx_http_proxy_wasm_out_nheaders(r),
                                      ngx_http_proxy_wasm_no_body(r)
                                      || r->headers_out.content_length_n
                                         == 0);

        switch (rc) {

        case NGX_HTTP_PROXY_WASM_CONTINUE:
            continue;

        case NGX_HTTP_PROXY_WASM_PAUSE:
            ctx->resp_next = i + 1;
            ctx->paused[NGX_HTTP_PROXY_WASM_RESP] = i;
            ctx->headers_held = 1;
            ctx->headers_paused = 1;
            ngx_http_proxy_wasm_update_buffered(ctx);
            return NGX_OK;

        case NGX_HTTP_PROXY_WASM_LOCAL:
            /* the response is replaced; the chain sees the new one */
            if (ngx_http_proxy_wasm_set_local(r, ctx, s) != NGX_OK) {
                return NGX_ERROR;
            }

            ctx->replace = 1;
            ctx->replace_sent = 0;
            ctx->resp_next = 0;
            goto again;

        case NGX_HTTP_PROXY_WASM_FAIL:
            if (ngx_http_proxy_wasm_fail_response(r, ctx,
                                                  NGX_HTTP_SERVICE_UNAVAILABLE)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            i = ctx->nstreams;
            break;

        default: /* CLOSE */
            return NGX_ERROR;
        }
    }

    ctx->resp_next = ctx->nstreams;
    ctx->headers_paused = 0;

    if (ngx_http_proxy_wasm_no_body(r)
        || !(ctx->cbs & NGX_HTTP_PROXY_WASM_CB_RESP_BODY))
    {
        return ngx_http_proxy_wasm_send_headers(ctx);
    }

    ctx->headers_held = 1;
    ngx_http_proxy_wasm_update_buffered(ctx);

    return NGX_OK;
}


static ngx_int_t
ngx_http_proxy_wasm_header_filter(ngx_http_request_t *r)
{
    ngx_http_proxy_wasm_ctx_t       *ctx;
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
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;
    }

    if (ctx->response_done) {
        return ngx_http_next_header_filter(r);
    }

    ctx->response_done = 1;
    ctx->phase = NGX_HTTP_PROXY_WASM_PHASE_RESP;

    if (ctx->failed) {
        /* failed closed in the request phase: nginx's 503 as it is */
        return ngx_http_next_header_filter(r);
    }

    /* from the request phase: the plugins asked for no body (a special
     * response replaced by the local response), or answered locally */
    if (ctx->local_pending) {
        ctx->local_pending = 0;
        ctx->req_state = NGX_HTTP_PROXY_WASM_REQ_DONE;

        if (ngx_http_proxy_wasm_set_local(r, ctx, ctx->local_stream)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->replace = 1;
    }

    ctx->resp_next = 0;

    return ngx_http_proxy_wasm_response_headers(ctx);
}


/* Response trailers: proxy_on_response_trailers when there are some. */
static ngx_int_t
ngx_http_proxy_wasm_response_trailers(ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i, n;
    ngx_http_proxy_wasm_stream_t  *s;

    ctx->trailers_done = 1;

    if (ctx->failed || !(ctx->cbs & NGX_HTTP_PROXY_WASM_CB_TRAILERS)) {
        return NGX_OK;
    }

    for (i = 0; i < ctx->nstreams; i++) {
        s = &ctx->streams[i];
        n = ngx_http_proxy_wasm_trailer_count(ctx->r);

        if (n == 0) {
            break;
        }

        if (s->failed || s->stream == NULL) {
            continue;
        }

        rc = ngx_http_proxy_wasm_call(ctx, s,
                                      NGX_HTTP_PROXY_WASM_ON_RESP_TRAILERS,
                                      n, 1);

        if (rc == NGX_HTTP_PROXY_WASM_CLOSE) {
            return NGX_ERROR;
        }

        /* Pause and local responses cannot apply once the body went
         * out: trailers go on (documented) */
    }

    if (ngx_http_proxy_wasm_trailer_count(ctx->r)) {
        ctx->r->expect_trailers = 1;
    }

    return NGX_OK;
}


/* Passes response body data on, sending the held headers first. */
static ngx_int_t
ngx_http_proxy_wasm_response_out(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_http_proxy_wasm_body_t *body, ngx_uint_t eos, ngx_chain_t *in)
{
    ngx_int_t            rc;
    ngx_chain_t         *out;
    ngx_http_request_t  *r;

    r = ctx->r;

    if (eos && !ctx->trailers_done
        && ngx_http_proxy_wasm_response_trailers(ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->headers_held) {

        if (eos && ctx->out_size == 0
            && !(ctx->modified & (1 << NGX_HTTP_PROXY_WASM_RESP))
            && !ctx->replace && r->headers_out.content_length_n == body->size)
        {
            /* the whole body, untouched: as the upstream sent it (ranges,
             * strong ETag and all) */

        } else {
            if (eos && ctx->out_size == 0) {
                /* the whole body is known: exact length */
                ngx_http_clear_content_length(r);
                r->headers_out.content_length_n = body->size;

            } else {
                /* a plugin may change what follows: let nginx chunk it */
                ngx_http_clear_content_length(r);
            }

            ngx_http_clear_accept_ranges(r);
            ngx_http_weak_etag(r);
        }

        if (ngx_http_proxy_wasm_trailer_count(r)) {
            r->expect_trailers = 1;
        }

        rc = ngx_http_proxy_wasm_send_headers(ctx);

        if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
            ngx_http_proxy_wasm_consume(in);
            ctx->out_eos = 1;
            ngx_http_proxy_wasm_update_buffered(ctx);
            return (rc == NGX_ERROR || rc > NGX_OK) ? NGX_ERROR : NGX_OK;
        }
    }

    if (in && !body->owned) {
        out = in;

    } else {
        ngx_http_proxy_wasm_consume(in);

        out = ngx_http_proxy_wasm_body_chain(r, body, eos);
        if (out == NGX_CHAIN_ERROR) {
            return NGX_ERROR;
        }
    }

    ctx->out_size += body->size;

    if (eos) {
        ctx->out_eos = 1;
    }

    ngx_http_proxy_wasm_update_buffered(ctx);

    if (out == NULL && in == NULL) {
        return NGX_OK;
    }

    return ngx_http_next_body_filter(r, out);
}


static ngx_int_t ngx_http_proxy_wasm_response_chunk(
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_proxy_wasm_replace_response(
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_stream_t *s);
static ngx_int_t ngx_http_proxy_wasm_replace_output(
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_int_t rc);
static void ngx_http_proxy_wasm_response_resumed(
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_int_t rc);


/* A body chunk through the response chain from element `from`. */
static ngx_int_t
ngx_http_proxy_wasm_response_body(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_uint_t from, ngx_http_proxy_wasm_body_t *body, ngx_uint_t eos,
    ngx_chain_t *in)
{
    ngx_int_t  rc;

    if (ctx->failed || !(ctx->cbs & NGX_HTTP_PROXY_WASM_CB_RESP_BODY)) {
        rc = NGX_HTTP_PROXY_WASM_CONTINUE;

    } else {
        rc = ngx_http_proxy_wasm_body_run(ctx, NGX_HTTP_PROXY_WASM_RESP, from,
                                          ctx->nstreams, body, eos);
    }

    switch (rc) {

    case NGX_HTTP_PROXY_WASM_CONTINUE:
        return ngx_http_proxy_wasm_response_out(ctx, body, eos, in);

    case NGX_HTTP_PROXY_WASM_PAUSE:
        ngx_http_proxy_wasm_consume(in);
        ngx_http_proxy_wasm_update_buffered(ctx);
        return NGX_OK;

    case NGX_HTTP_PROXY_WASM_CLOSE:
        ngx_http_proxy_wasm_consume(in);
        return NGX_ERROR;

    default:
        break;
    }

    /* LOCAL, FAIL, OVERFLOW: the response is replaced, if still possible */

    ngx_http_proxy_wasm_consume(in);

    return ngx_http_proxy_wasm_replace_output(ctx, rc);
}


/* Replaces the response, if its headers are still held, by the local
 * response (rc LOCAL) or an error page (FAIL: 503, OVERFLOW: 500); else
 * NGX_ERROR resets the stream. */
static ngx_int_t
ngx_http_proxy_wasm_replace_output(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_int_t rc)
{
    ngx_http_proxy_wasm_drop_held(ctx, NGX_HTTP_PROXY_WASM_RESP);

    if (!ctx->headers_held) {
        ngx_log_error(NGX_LOG_ERR, ctx->r->connection->log, 0,
                      "proxy_wasm: response headers already sent, "
                      "cannot answer locally: closing the stream");
        return NGX_ERROR;
    }

    if (rc == NGX_HTTP_PROXY_WASM_LOCAL) {
        return ngx_http_proxy_wasm_replace_response(ctx, ctx->local_stream);
    }

    if (ngx_http_proxy_wasm_fail_response(ctx->r, ctx,
                                          rc == NGX_HTTP_PROXY_WASM_OVERFLOW
                                          ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                          : NGX_HTTP_SERVICE_UNAVAILABLE)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_proxy_wasm_response_chunk(ctx, NULL);
}


/* One call of the body filter, or a resumption: `in` from nginx. */
static ngx_int_t
ngx_http_proxy_wasm_response_chunk(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_buf_t                   *b;
    ngx_uint_t                   eos;
    ngx_http_request_t          *r;
    ngx_http_proxy_wasm_body_t   body;

    r = ctx->r;

    if (ctx->out_eos) {
        ngx_http_proxy_wasm_consume(in);
        return ngx_http_next_body_filter(r, NULL);
    }

    if (ctx->replace) {
        /* the original body is consumed and dropped */
        ngx_http_proxy_wasm_consume(in);
        in = NULL;

        if (ctx->replace_sent) {
            return NGX_OK;
        }

        ctx->replace_sent = 1;

        ngx_http_proxy_wasm_body_init(&body, 1);

        if (ctx->body.len) {
            b = ngx_calloc_buf(r->pool);
            if (b == NULL) {
                return NGX_ERROR;
            }

            b->pos = ctx->body.data;
            b->last = ctx->body.data + ctx->body.len;
            b->memory = 1;

            if (ngx_http_proxy_wasm_body_link(r->pool, &body, b) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        eos = 1;

    } else {
        eos = 0;

        if (ngx_http_proxy_wasm_body_from(r, &body, in, &eos) != NGX_OK) {
            return NGX_ERROR;
        }

        if (body.size == 0 && !eos) {
            /* a flush: nothing for the plugins */
            if (ctx->headers_held) {
                return NGX_OK;
            }

            return ngx_http_next_body_filter(r, in);
        }
    }

    if (ctx->headers_paused) {
        /* on_response_headers paused: kept until resumed, no callbacks */
        if (ngx_http_proxy_wasm_body_append(r, &ctx->pending, &body)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_http_proxy_wasm_consume(in);
        ctx->pending_eos |= eos;

        if (ctx->pending.size
            > (off_t) ctx->plcf->limit[NGX_HTTP_PROXY_WASM_RESP])
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "proxy_wasm: response body buffer limit of %uz "
                          "bytes exceeded while the response headers are "
                          "paused", ctx->plcf->limit[NGX_HTTP_PROXY_WASM_RESP]);

            ctx->headers_paused = 0;
            ngx_http_proxy_wasm_body_init(&ctx->pending, 1);
            ngx_http_proxy_wasm_drop_held(ctx, NGX_HTTP_PROXY_WASM_RESP);

            if (ngx_http_proxy_wasm_fail_response(r, ctx,
                                           NGX_HTTP_INTERNAL_SERVER_ERROR)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            return ngx_http_proxy_wasm_response_chunk(ctx, NULL);
        }

        return NGX_OK;
    }

    return ngx_http_proxy_wasm_response_body(ctx, 0, &body, eos, in);
}


static ngx_int_t
ngx_http_proxy_wasm_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_http_proxy_wasm_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);

    if (ctx == NULL || !ctx->response_done
        || (ctx->failed && !ctx->replace && !ctx->headers_held))
    {
        return ngx_http_next_body_filter(r, in);
    }

    return ngx_http_proxy_wasm_response_chunk(ctx, in);
}


static void
ngx_http_proxy_wasm_resume_response(ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_int_t                      rc, i;
    ngx_uint_t                     eos;
    ngx_http_proxy_wasm_body_t     body;
    ngx_http_proxy_wasm_stream_t  *s;

    i = ctx->paused[NGX_HTTP_PROXY_WASM_RESP];
    s = &ctx->streams[i];

    ctx->paused[NGX_HTTP_PROXY_WASM_RESP] = -1;
    rc = NGX_OK;

    if (ctx->headers_paused) {
        /* on_response_headers of the rest of the chain, then the body
         * that arrived meanwhile */
        ctx->headers_paused = 0;

        rc = ngx_http_proxy_wasm_response_headers(ctx);

        if (rc == NGX_OK && !ctx->headers_paused) {
            body = ctx->pending;
            eos = ctx->pending_eos;
            ngx_http_proxy_wasm_body_init(&ctx->pending, 1);
            ctx->pending_eos = 0;

            if (ctx->replace) {
                rc = ngx_http_proxy_wasm_response_chunk(ctx, NULL);

            } else if (body.size || eos) {
                rc = ngx_http_proxy_wasm_response_body(ctx, 0, &body, eos,
                                                       NULL);
            }
        }

    } else if (s->holding & (1 << NGX_HTTP_PROXY_WASM_RESP)) {
        /* what the element buffered goes on to the next one */
        body = s->held[NGX_HTTP_PROXY_WASM_RESP];
        eos = (s->held_eos & (1 << NGX_HTTP_PROXY_WASM_RESP)) ? 1 : 0;

        ngx_http_proxy_wasm_body_init(&s->held[NGX_HTTP_PROXY_WASM_RESP], 1);
        s->holding &= ~(1 << NGX_HTTP_PROXY_WASM_RESP);
        s->held_eos &= ~(1 << NGX_HTTP_PROXY_WASM_RESP);

        rc = ngx_http_proxy_wasm_response_body(ctx, i + 1, &body, eos, NULL);
    }

    ngx_http_proxy_wasm_response_resumed(ctx, rc);
}


/* Replaces the response, while its headers are still held, by the local
 * response of s; the chain's response callbacks see the new one. */
static ngx_int_t
ngx_http_proxy_wasm_replace_response(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_http_proxy_wasm_stream_t *s)
{
    ngx_int_t  rc;

    ngx_http_proxy_wasm_drop_held(ctx, NGX_HTTP_PROXY_WASM_RESP);
    ngx_http_proxy_wasm_body_init(&ctx->pending, 1);
    ctx->headers_paused = 0;

    if (ngx_http_proxy_wasm_set_local(ctx->r, ctx, s) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->replace = 1;
    ctx->replace_sent = 0;
    ctx->resp_next = 0;

    rc = ngx_http_proxy_wasm_response_headers(ctx);

    if (rc != NGX_OK || ctx->headers_paused) {
        return rc;
    }

    return ngx_http_proxy_wasm_response_chunk(ctx, NULL);
}


/* After output made outside nginx's own calls of our filters. */
static void
ngx_http_proxy_wasm_response_resumed(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_int_t rc)
{
    ngx_http_request_t  *r = ctx->r;

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    ngx_http_proxy_wasm_update_buffered(ctx);

    /* whoever waits for the output (the upstream, ngx_http_writer) */
    ngx_post_event(r->connection->write, &ngx_posted_events);
}


/* From an event: the request side is answered by the rewrite phase in
 * `state` (REQ_LOCAL, REQ_FAIL), whatever held it; once nginx has read the
 * body, if it is reading it (our filter drops the rest). */
static void
ngx_http_proxy_wasm_answer_request(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_uint_t state)
{
    ngx_http_request_t  *r;

    r = ctx->r;

    ngx_http_proxy_wasm_drop_held(ctx, NGX_HTTP_PROXY_WASM_REQ);
    ngx_http_proxy_wasm_body_init(&ctx->gate, 1);
    ctx->req_hdr_paused = 0;
    ctx->req_state = state;

    if (ctx->req_body && !ctx->body_read) {
        return;
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/* A local response queued from another context (local_hook). */
static void
ngx_http_proxy_wasm_apply_local(ngx_http_proxy_wasm_ctx_t *ctx)
{
    if (ctx->req_state < NGX_HTTP_PROXY_WASM_REQ_DONE) {
        ngx_http_proxy_wasm_answer_request(ctx,
                                           NGX_HTTP_PROXY_WASM_REQ_LOCAL);
        return;
    }

    if (!ctx->response_done || ctx->out_eos) {
        return;     /* nothing to replace, or too late: ignored */
    }

    ngx_http_proxy_wasm_response_resumed(ctx,
        ngx_http_proxy_wasm_replace_output(ctx, NGX_HTTP_PROXY_WASM_LOCAL));
}


/*
 * The VM of a stream this request paused on was discarded (vm_discarded):
 * nothing can continue it any more. The failure policy applies as if that
 * plugin had failed in the callback that paused: 503 (closed), or the
 * request goes on without it (open; like a continue, whatever of that
 * direction is stopped goes on). Returns 0 when the request is not held by
 * such a stream (any more).
 */
static ngx_uint_t
ngx_http_proxy_wasm_stranded(ngx_http_proxy_wasm_ctx_t *ctx)
{
    u_char                        *p;
    pw_vm                         *vm;
    ngx_int_t                      i;
    ngx_uint_t                     dir, cb;
    ngx_http_proxy_wasm_stream_t  *s;
    u_char                         reason[PW_ERRLEN + 96];

    if (ctx->failed || ctx->phase == NGX_HTTP_PROXY_WASM_PHASE_LOG) {
        return 0;       /* answered already, or ending */
    }

    s = NULL;
    dir = NGX_HTTP_PROXY_WASM_REQ;
    cb = NGX_HTTP_PROXY_WASM_ON_REQ_HEADERS;

    if (ctx->req_state < NGX_HTTP_PROXY_WASM_REQ_LOCAL) {
        /* held in the rewrite phase */
        i = ctx->paused[NGX_HTTP_PROXY_WASM_REQ];

        if (ctx->req_hdr_paused
            && ctx->streams[ctx->req_next - 1].discarded)
        {
            s = &ctx->streams[ctx->req_next - 1];

        } else if (i >= 0 && ctx->streams[i].discarded) {
            s = &ctx->streams[i];
            cb = NGX_HTTP_PROXY_WASM_ON_REQ_BODY;
        }
    }

    i = ctx->paused[NGX_HTTP_PROXY_WASM_RESP];

    if (s == NULL && i >= 0 && ctx->streams[i].discarded) {
        s = &ctx->streams[i];
        dir = NGX_HTTP_PROXY_WASM_RESP;
        cb = ctx->headers_paused ? NGX_HTTP_PROXY_WASM_ON_RESP_HEADERS
                                 : NGX_HTTP_PROXY_WASM_ON_RESP_BODY;
    }

    if (s == NULL) {
        return 0;
    }

    ctx->resume &= ~(1 << dir);     /* a continue queued before the trap */

    vm = s->filter->plugin->mod->owner->vm;
    p = ngx_snprintf(reason, sizeof(reason) - 1,
                     "paused, and its VM was discarded after a trap in "
                     "another context (%s)", vm ? pw_vm_last_error(vm) : "");
    *p = '\0';

    if (ngx_http_proxy_wasm_failed(ctx->r, ctx, s,
                                   ngx_http_proxy_wasm_cb_name(cb),
                                   (const char *) reason)
        == NGX_OK)
    {
        /* open: skipped from now on */
        if (dir == NGX_HTTP_PROXY_WASM_REQ) {
            ngx_http_proxy_wasm_resume_request(ctx);
        } else {
            ngx_http_proxy_wasm_resume_response(ctx);
        }

        return 1;
    }

    if (dir == NGX_HTTP_PROXY_WASM_REQ) {
        ngx_http_proxy_wasm_answer_request(ctx, NGX_HTTP_PROXY_WASM_REQ_FAIL);
        return 1;
    }

    /* the 503 page replaces the response; what arrived while its headers
     * were paused is dropped */
    ngx_http_proxy_wasm_body_init(&ctx->pending, 1);
    ctx->pending_eos = 0;
    ctx->headers_paused = 0;

    ngx_http_proxy_wasm_response_resumed(ctx,
        ngx_http_proxy_wasm_replace_output(ctx, NGX_HTTP_PROXY_WASM_FAIL));

    return 1;
}


static void
ngx_http_proxy_wasm_event_handler(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    ctx = ev->data;

    if (ctx->gone) {
        return;
    }

    r = ctx->r;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    if (ctx->close) {
        ctx->close = 0;
        ctx->resume = 0;
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "proxy_wasm: stream closed by a plugin");
        ngx_http_finalize_request(r, NGX_HTTP_CLOSE);
        ngx_http_run_posted_requests(c);
        return;
    }

    if (ctx->local_queued) {
        ctx->local_queued = 0;
        ctx->resume = 0;
        ngx_http_proxy_wasm_apply_local(ctx);
        ngx_http_run_posted_requests(c);
        return;
    }

    if (ctx->discarded) {
        ctx->discarded = 0;

        if (ngx_http_proxy_wasm_stranded(ctx)) {
            ngx_http_run_posted_requests(c);
            return;
        }
    }

    if (ctx->resume & (1 << NGX_HTTP_PROXY_WASM_REQ)) {
        ctx->resume &= ~(1 << NGX_HTTP_PROXY_WASM_REQ);

        if (ctx->paused[NGX_HTTP_PROXY_WASM_REQ] >= 0 || ctx->req_hdr_paused) {
            ngx_http_proxy_wasm_resume_request(ctx);
        }
    }

    if (!ctx->gone && (ctx->resume & (1 << NGX_HTTP_PROXY_WASM_RESP))) {
        ctx->resume &= ~(1 << NGX_HTTP_PROXY_WASM_RESP);

        if (ctx->paused[NGX_HTTP_PROXY_WASM_RESP] >= 0) {
            ngx_http_proxy_wasm_resume_response(ctx);
        }
    }

    ngx_http_run_posted_requests(c);
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
        ngx_http_proxy_wasm_end_streams(ctx, 1);
    }

    return NGX_OK;
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
    pmcf->compile_timeout = NGX_CONF_UNSET_MSEC;
    pmcf->compile_memory = NGX_CONF_UNSET_SIZE;
    pmcf->module_max_size = NGX_CONF_UNSET_SIZE;

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
    plcf->limit[NGX_HTTP_PROXY_WASM_REQ] = NGX_CONF_UNSET_SIZE;
    plcf->limit[NGX_HTTP_PROXY_WASM_RESP] = NGX_CONF_UNSET_SIZE;

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
    ngx_conf_merge_size_value(conf->limit[NGX_HTTP_PROXY_WASM_REQ],
                              prev->limit[NGX_HTTP_PROXY_WASM_REQ],
                              1024 * 1024);
    ngx_conf_merge_size_value(conf->limit[NGX_HTTP_PROXY_WASM_RESP],
                              prev->limit[NGX_HTTP_PROXY_WASM_RESP],
                              1024 * 1024);

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


/* proxy_wasm_module NAME PATH [vm_id=ID] [vm_config=STR|vm_config_file=P]
 *                   [precompiled sha256=HEX] */
static char *
ngx_http_proxy_wasm_module_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_proxy_wasm_main_conf_t *pmcf = conf;

    ngx_int_t                    rc;
    ngx_str_t                   *value, path, cfg_inline, cfg_file, vm_id;
    ngx_str_t                    sha256;
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
    ngx_str_null(&sha256);
    file_seen = 0;

    for (i = 3; i < cf->args->nelts; i++) {

        if (value[i].len == 11
            && ngx_strncmp(value[i].data, "precompiled", 11) == 0)
        {
            mod->precompiled = 1;
            continue;
        }

        rc = ngx_http_proxy_wasm_param(cf, &value[i], "vm_id", &vm_id, NULL,
                                       NULL, NULL);

        if (rc == NGX_DECLINED) {
            rc = ngx_http_proxy_wasm_param(cf, &value[i], "sha256", &sha256,
                                           NULL, NULL, NULL);
        }

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

    /* a precompiled artifact is native code: it runs unsandboxed, so it
     * is loaded only when named as such, with the digest of the file */
    if (mod->precompiled != (sha256.data != NULL)) {
        return mod->precompiled
               ? "needs \"sha256=\" (the SHA-256 of the precompiled file) "
                 "with \"precompiled\""
               : "takes \"sha256=\" only with \"precompiled\"";
    }

    if (sha256.data) {
        if (sha256.len != 64) {
            return "needs \"sha256=\" with 64 hexadecimal digits";
        }

        for (i = 0; i < 64; i++) {
            if (ngx_hextoi(&sha256.data[i], 1) == NGX_ERROR) {
                return "needs \"sha256=\" with 64 hexadecimal digits";
            }
        }

        if (ngx_http_proxy_wasm_pstr(cf->pool, &mod->sha256, sha256.data,
                                     sha256.len)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
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
static void
ngx_http_proxy_wasm_runtime_warn(void *data, const char *msg)
{
    ngx_log_error(NGX_LOG_WARN, (ngx_log_t *) data, 0, "proxy_wasm: %s", msg);
}


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
    ngx_uint_t                       i, j;
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

    ngx_conf_init_msec_value(pmcf->compile_timeout, 120000);
    ngx_conf_init_size_value(pmcf->compile_memory, 4096 * 1024 * 1024ULL);
    ngx_conf_init_size_value(pmcf->module_max_size, 64 * 1024 * 1024);

    /* 0 is "no limit" in the directives, the maximum in the library */
    rcf.compile_timeout_ms = pmcf->compile_timeout ? pmcf->compile_timeout
                                                   : UINT32_MAX;
    rcf.compile_max_memory = pmcf->compile_memory ? pmcf->compile_memory
                                                  : UINT64_MAX;
    rcf.max_module_bytes = pmcf->module_max_size ? pmcf->module_max_size
                                                 : UINT64_MAX;
    rcf.warn = ngx_http_proxy_wasm_runtime_warn;
    rcf.warn_data = cf->cycle->log;

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

        if (mod->precompiled) {
            rc = pw_module_load_precompiled(pmcf->runtime,
                                            (const char *) mod->name.data,
                                            (const char *) mod->path.data,
                                            (const char *) mod->sha256.data,
                                            &mod->module, err, sizeof(err));

        } else {
            rc = pw_module_load_file(pmcf->runtime,
                                     (const char *) mod->name.data,
                                     (const char *) mod->path.data,
                                     &mod->module, err, sizeof(err));
        }
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

        /* one VM per worker per (module, vm_id): declarations of the same
         * file with the same vm_id and vm_config share it */
        mod->owner = mod;
        ngx_queue_init(&mod->paused);

        for (j = 0; j < i; j++) {
            if (ngx_http_proxy_wasm_str_eq(&mods[j]->path, &mod->path)
                && ngx_http_proxy_wasm_str_eq(&mods[j]->vm_id, &mod->vm_id)
                && ngx_http_proxy_wasm_str_eq(&mods[j]->vm_config,
                                              &mod->vm_config))
            {
                mod->owner = mods[j]->owner;
                break;
            }
        }

        if (pw_module_has_callback(mod->module, "proxy_on_request_body")) {
            mod->cbs |= NGX_HTTP_PROXY_WASM_CB_REQ_BODY;
        }

        if (pw_module_has_callback(mod->module, "proxy_on_response_body")) {
            mod->cbs |= NGX_HTTP_PROXY_WASM_CB_RESP_BODY;
        }

        if (pw_module_has_callback(mod->module,
                                   "proxy_on_response_trailers"))
        {
            mod->cbs |= NGX_HTTP_PROXY_WASM_CB_TRAILERS;
        }
    }

    if (ngx_http_proxy_wasm_canary(cf, pmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* the master runs no plugin code from here on: no trap handlers or
     * CPU timer in it (workers attach in init_process); a reload to a
     * configuration without this module can then unload it safely */
    pw_runtime_detach(pmcf->runtime);

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

    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_proxy_wasm_request_body_filter;

    return NGX_OK;
}
