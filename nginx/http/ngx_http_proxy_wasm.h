/*
 * ngx_http_proxy_wasm.h -- the HTTP module's types and what its files
 * (ngx_http_proxy_wasm_*.c next to this file) share:
 *
 *   ngx_http_proxy_wasm_module.c    the module: directives, configuration,
 *                                   per-request state, log phase
 *   ngx_http_proxy_wasm_request.c   rewrite phase handler, request body
 *                                   filter: the request side
 *   ngx_http_proxy_wasm_response.c  header and body filters: the response
 *                                   side
 *   ngx_http_proxy_wasm_body.c      bodies as plugins see them, the body
 *                                   hooks, a body chunk through the chain
 *   ngx_http_proxy_wasm_control.c   a callback and the actions pending
 *                                   after it; the posted event
 *   ngx_http_proxy_wasm_local.c     local responses and error pages
 *   ngx_http_proxy_wasm_headers.c   nginx's header lists as the maps see
 *                                   them (request, response, trailers)
 *   ngx_http_proxy_wasm_maps.c      the header map hooks, pseudo-headers
 *   ngx_http_proxy_wasm_props.c     HTTP properties, proxy_set_property
 *   ngx_http_proxy_wasm_metrics.c   proxy_wasm_metrics: the store's metrics
 *                                   in the Prometheus text format
 *
 * What does not depend on HTTP is in ../common (ngx_proxy_wasm.h).
 */

#ifndef _NGX_HTTP_PROXY_WASM_H_INCLUDED_
#define _NGX_HTTP_PROXY_WASM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_proxy_wasm.h"


#define NGX_HTTP_PROXY_WASM_FAIL_CLOSED   PW_FAIL_CLOSED
#define NGX_HTTP_PROXY_WASM_FAIL_OPEN     PW_FAIL_OPEN

#define NGX_HTTP_PROXY_WASM_PHASE_NONE    0
#define NGX_HTTP_PROXY_WASM_PHASE_REQ     1
#define NGX_HTTP_PROXY_WASM_PHASE_RESP    2
#define NGX_HTTP_PROXY_WASM_PHASE_LOG     3


typedef struct {
    ngx_proxy_wasm_conf_t            wasm;       /* commands: cmd->offset */
    ngx_int_t                        request_id_index;
    ngx_flag_t                       metrics;    /* a proxy_wasm_metrics
                                                    location exists */
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

/* One chain element on a request: the `stream` pointer the library hands
 * back to every pw_host_ops hook (link->host_stream). */
typedef struct {
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_proxy_wasm_filter_t         *filter;
    pw_link                         *link;       /* in ctx->chain: its
                                                    stream context, failed
                                                    (open: skipped), ended,
                                                    discarded */
    ngx_http_proxy_wasm_body_t       held[2];    /* buffered by its Pause */
    unsigned                         holding:2;  /* bit per direction */
    unsigned                         held_eos:2;
} ngx_http_proxy_wasm_stream_t;


/* Per request and location (an internal redirect starts a new one). */
struct ngx_http_proxy_wasm_ctx_s {
    ngx_http_request_t              *r;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;
    ngx_http_proxy_wasm_stream_t    *streams;    /* one per chain element */
    ngx_uint_t                       nstreams;
    pw_chain                         chain;      /* their links, the
                                                    failure policy */
    ngx_uint_t                       cbs;        /* ..._CB_* of the chain */
    ngx_http_proxy_wasm_ctx_t       *next;       /* next ctx of the request */
    ngx_uint_t                       phase;
    ngx_str_t                        authority;  /* :authority */
    ngx_str_t                        scheme;     /* :scheme override */
    ngx_str_t                        body;       /* replacement body */

    ngx_event_t                      event;      /* actions pending on its
                                                    streams: see wake */
    ngx_queue_t                      held_q;     /* in the worker's list
                                                    of requests that paused
                                                    (queued), until the end */
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
    off_t                            in_size;    /* response bytes nginx gave */
    off_t                            in_length;  /* their Content-Length when
                                                    the headers came, or -1 */

    unsigned                         request_done:1;
    unsigned                         response_done:1;
    unsigned                         lazy:1;     /* created by the filter */
    unsigned                         local:1;    /* local response sent */
    unsigned                         failed:1;   /* failed closed */
    unsigned                         replace:1;  /* body filter replaces */
    unsigned                         replace_sent:1;
    unsigned                         gone:1;     /* request being freed */

    unsigned                         changed:2;  /* body size changed */
    unsigned                         modified:2; /* body written at all */
    unsigned                         req_body:1; /* request body handled */
    unsigned                         body_read:1; /* ... and read by nginx */
    unsigned                         req_eos:1;  /* last buf passed on */
    unsigned                         local_pending:1;
    unsigned                         req_hdr_paused:1; /* on_request_headers */
    unsigned                         gate_eos:1;
    unsigned                         headers_held:1;   /* not sent yet */
    unsigned                         headers_paused:1; /* ... by a Pause */
    unsigned                         pending_eos:1;
    unsigned                         out_eos:1;  /* response last buf sent */
    unsigned                         in_eos:1;   /* plugins had the response
                                                    body's end */
    unsigned                         in_early:1; /* ... with its last bytes,
                                                    before nginx's last buf */
    unsigned                         trailers_done:1;
    unsigned                         queued:1;   /* in that list */
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


/* Headers nginx keeps outside headers_out.headers (ngx_http_proxy_wasm_
 * out_special): :status, content-type, content-length, last-modified. */
#define NGX_HTTP_PROXY_WASM_OUT_SPECIAL  4


/* Hidden, as in ngx_proxy_wasm.h. */
#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif

/* ngx_http_proxy_wasm_module.c */
ngx_http_proxy_wasm_req_t *ngx_http_proxy_wasm_req(ngx_http_request_t *r,
    ngx_uint_t create);
ngx_http_proxy_wasm_ctx_t *ngx_http_proxy_wasm_create_ctx(
    ngx_http_request_t *r, ngx_http_proxy_wasm_loc_conf_t *plcf);
void ngx_http_proxy_wasm_link_plugin(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_http_proxy_wasm_stream_t *s);

/* ngx_http_proxy_wasm_request.c */
ngx_int_t ngx_http_proxy_wasm_request_filter_init(void);
ngx_int_t ngx_http_proxy_wasm_rewrite_handler(ngx_http_request_t *r);
void ngx_http_proxy_wasm_resume_request(ngx_http_proxy_wasm_ctx_t *ctx);

/* ngx_http_proxy_wasm_response.c */
ngx_int_t ngx_http_proxy_wasm_response_filter_init(void);
ngx_int_t ngx_http_proxy_wasm_replace_output(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_int_t rc);
void ngx_http_proxy_wasm_resume_response(ngx_http_proxy_wasm_ctx_t *ctx);
void ngx_http_proxy_wasm_response_resumed(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_int_t rc);

/* ngx_http_proxy_wasm_body.c */
ngx_int_t ngx_http_proxy_wasm_body_link(ngx_pool_t *pool,
    ngx_http_proxy_wasm_body_t *body, ngx_buf_t *b);
ngx_int_t ngx_http_proxy_wasm_body_own(ngx_http_request_t *r,
    ngx_http_proxy_wasm_body_t *body);
ngx_int_t ngx_http_proxy_wasm_body_append(ngx_http_request_t *r,
    ngx_http_proxy_wasm_body_t *dst, ngx_http_proxy_wasm_body_t *src);
ngx_int_t ngx_http_proxy_wasm_body_from(ngx_http_request_t *r,
    ngx_http_proxy_wasm_body_t *body, ngx_chain_t *in, ngx_uint_t *eos);
ngx_chain_t *ngx_http_proxy_wasm_body_chain(ngx_http_request_t *r,
    ngx_http_proxy_wasm_body_t *body, ngx_uint_t eos);
proxy_status_t ngx_http_proxy_wasm_body_size(void *host, void *stream,
    proxy_buffer_type_t type, size_t *size);
proxy_status_t ngx_http_proxy_wasm_body_copy(void *host, void *stream,
    proxy_buffer_type_t type, size_t start, size_t len, void *dst);
proxy_status_t ngx_http_proxy_wasm_body_replace(void *host, void *stream,
    proxy_buffer_type_t type, size_t start, size_t len, pw_str data);
void ngx_http_proxy_wasm_drop_held(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_uint_t dir);
void ngx_http_proxy_wasm_update_buffered(ngx_http_proxy_wasm_ctx_t *ctx);
ngx_int_t ngx_http_proxy_wasm_body_run(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_uint_t dir, ngx_uint_t from, ngx_uint_t to,
    ngx_http_proxy_wasm_body_t *cur, ngx_uint_t eos);

/* ngx_http_proxy_wasm_control.c */
void ngx_http_proxy_wasm_wake(void *host, void *stream);
ngx_int_t ngx_http_proxy_wasm_call(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_http_proxy_wasm_stream_t *s, ngx_uint_t cb, size_t n, ngx_uint_t eos);
void ngx_http_proxy_wasm_event_handler(ngx_event_t *ev);
void ngx_http_proxy_wasm_unqueue(ngx_http_proxy_wasm_ctx_t *ctx);
extern ngx_http_proxy_wasm_ctx_t  *ngx_http_proxy_wasm_live;

/* ngx_http_proxy_wasm_local.c */
ngx_int_t ngx_http_proxy_wasm_set_local(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_stream_t *s);
ngx_int_t ngx_http_proxy_wasm_send_local(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_stream_t *s);
ngx_int_t ngx_http_proxy_wasm_fail_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t status);

/* ngx_http_proxy_wasm_headers.c */
ngx_int_t ngx_http_proxy_wasm_valid(pw_str s, ngx_uint_t name);
ngx_uint_t ngx_http_proxy_wasm_in_count(ngx_http_request_t *r);
ngx_str_t *ngx_http_proxy_wasm_authority(ngx_http_request_t *r);
ngx_int_t ngx_http_proxy_wasm_in_pseudo(ngx_http_request_t *r, pw_str key,
    ngx_str_t *value);
proxy_status_t ngx_http_proxy_wasm_in_pairs(ngx_http_request_t *r,
    pw_kv **pairs, size_t *n);
proxy_status_t ngx_http_proxy_wasm_in_get(ngx_http_request_t *r, pw_str key,
    pw_str *value);
ngx_int_t ngx_http_proxy_wasm_in_rewrite(ngx_http_request_t *r, pw_str key,
    pw_str *value);
proxy_status_t ngx_http_proxy_wasm_in_add(ngx_http_request_t *r, pw_str key,
    pw_str value);
proxy_status_t ngx_http_proxy_wasm_in_set_pairs(ngx_http_request_t *r,
    const pw_kv *pairs, size_t n);
ngx_uint_t ngx_http_proxy_wasm_out_count(ngx_http_request_t *r);
proxy_status_t ngx_http_proxy_wasm_out_pairs(ngx_http_request_t *r,
    pw_kv **pairs, size_t *n);
proxy_status_t ngx_http_proxy_wasm_out_get(ngx_http_request_t *r, pw_str key,
    pw_str *value);
proxy_status_t ngx_http_proxy_wasm_out_remove(ngx_http_request_t *r,
    pw_str key);
proxy_status_t ngx_http_proxy_wasm_out_add(ngx_http_request_t *r, pw_str key,
    pw_str value);
void ngx_http_proxy_wasm_out_reset(ngx_http_request_t *r);
proxy_status_t ngx_http_proxy_wasm_out_set_pairs(ngx_http_request_t *r,
    const pw_kv *pairs, size_t n);
proxy_status_t ngx_http_proxy_wasm_list_pairs(ngx_http_request_t *r,
    ngx_list_t *list, pw_kv **pairs, size_t *n);
proxy_status_t ngx_http_proxy_wasm_list_get(ngx_list_t *list, pw_str key,
    pw_str *value);
void ngx_http_proxy_wasm_list_remove(ngx_list_t *list, pw_str *key);
proxy_status_t ngx_http_proxy_wasm_list_add(ngx_http_request_t *r,
    ngx_list_t *list, pw_str key, pw_str value);

/* ngx_http_proxy_wasm_maps.c */
proxy_status_t ngx_http_proxy_wasm_map_pairs(void *host, void *stream,
    proxy_map_type_t map, pw_kv **pairs, size_t *n);
proxy_status_t ngx_http_proxy_wasm_map_get(void *host, void *stream,
    proxy_map_type_t map, pw_str key, pw_str *value);
proxy_status_t ngx_http_proxy_wasm_map_add(void *host, void *stream,
    proxy_map_type_t map, pw_str key, pw_str value);
proxy_status_t ngx_http_proxy_wasm_map_replace(void *host, void *stream,
    proxy_map_type_t map, pw_str key, pw_str value);
proxy_status_t ngx_http_proxy_wasm_map_remove(void *host, void *stream,
    proxy_map_type_t map, pw_str key);
proxy_status_t ngx_http_proxy_wasm_map_set_pairs(void *host, void *stream,
    proxy_map_type_t map, const pw_kv *pairs, size_t n);

/* ngx_http_proxy_wasm_props.c */
proxy_status_t ngx_http_proxy_wasm_get_property(void *host, void *stream,
    const pw_str *path, size_t nseg, pw_str *value);
proxy_status_t ngx_http_proxy_wasm_set_property(void *host, void *stream,
    const pw_str *path, size_t nseg, pw_str value);

/* ngx_http_proxy_wasm_metrics.c */
ngx_int_t ngx_http_proxy_wasm_metrics_handler(ngx_http_request_t *r);

#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


extern ngx_module_t  ngx_http_proxy_wasm_module;


/* The request of a hook's stream, NULL once it is being freed. */
static ngx_inline ngx_http_request_t *
ngx_http_proxy_wasm_request(void *stream)
{
    ngx_http_proxy_wasm_stream_t  *s = stream;

    if (s == NULL || s->ctx->gone) {
        return NULL;
    }

    return s->ctx->r;
}


static ngx_inline void
ngx_http_proxy_wasm_body_init(ngx_http_proxy_wasm_body_t *body,
    ngx_uint_t owned)
{
    body->chain = NULL;
    body->size = 0;
    body->owned = owned;
}


/* Marks nginx's buffers as consumed (their data was copied or dropped). */
static ngx_inline void
ngx_http_proxy_wasm_consume(ngx_chain_t *in)
{
    for ( /* void */ ; in; in = in->next) {
        in->buf->pos = in->buf->last;
        in->buf->file_pos = in->buf->file_last;
    }
}


#endif /* _NGX_HTTP_PROXY_WASM_H_INCLUDED_ */
