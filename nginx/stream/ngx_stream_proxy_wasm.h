/*
 * ngx_stream_proxy_wasm.h -- the stream (TCP) module's types and what its
 * files (ngx_stream_proxy_wasm_*.c next to this file) share:
 *
 *   ngx_stream_proxy_wasm_module.c  the module: directives, configuration,
 *                                   per-session state, the preread phase
 *                                   (on_new_connection), the wake event,
 *                                   the log phase (closes, on_done, on_log,
 *                                   on_delete)
 *   ngx_stream_proxy_wasm_data.c    the bytes of each direction through the
 *                                   chain: the stream filter, Pause and the
 *                                   bytes it holds, backpressure, the
 *                                   DownstreamData / UpstreamData hooks
 *   ngx_stream_proxy_wasm_props.c   stream properties, proxy_set_property,
 *                                   $proxy_wasm_upstream
 *
 * What does not depend on the subsystem is in ../common (ngx_proxy_wasm.h).
 */

#ifndef _NGX_STREAM_PROXY_WASM_H_INCLUDED_
#define _NGX_STREAM_PROXY_WASM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_stream.h>

#include "ngx_proxy_wasm.h"


/* Directions: from_upstream of the stream filters. */
#define NGX_STREAM_PROXY_WASM_DOWN       0   /* client -> upstream */
#define NGX_STREAM_PROXY_WASM_UP         1   /* upstream -> client */

/* c->buffered bit of the connection we write to while we hold or pass
 * bytes of our own (the proxy then keeps calling the filter chain). */
#define NGX_STREAM_PROXY_WASM_BUFFERED   0x20


typedef struct {
    ngx_proxy_wasm_conf_t            wasm;       /* commands: cmd->offset */
} ngx_stream_proxy_wasm_main_conf_t;


typedef struct {
    ngx_array_t                     *chain;      /* ..._filter_t * */
    ngx_uint_t                       failure;
    size_t                           max_held;   /* per direction */
} ngx_stream_proxy_wasm_srv_conf_t;


/* Bytes in malloc'ed memory (long sessions: never the connection's pool). */
typedef struct {
    u_char                          *data;
    size_t                           len;
    size_t                           cap;
} ngx_stream_proxy_wasm_bytes_t;


typedef struct ngx_stream_proxy_wasm_ctx_s  ngx_stream_proxy_wasm_ctx_t;

/* One chain element on a session: the `stream` pointer of the hooks. */
typedef struct {
    ngx_stream_proxy_wasm_ctx_t     *ctx;
    ngx_proxy_wasm_filter_t         *filter;
    pw_link                         *link;
} ngx_stream_proxy_wasm_stream_t;


/* One direction of a session. */
typedef struct {
    ngx_chain_t                     *in;         /* the proxy's buffers given
                                                    to us, not consumed yet
                                                    (our links) */
    ngx_stream_proxy_wasm_bytes_t    held;       /* held at link `at` */
    ngx_int_t                        at;         /* -1: nothing held */
    ngx_chain_t                     *out;        /* for the next filter */
    ngx_chain_t                     *busy;       /* ours, passed on, unsent */
    ngx_chain_t                     *free;       /* our links and bufs */
    size_t                           inflight;   /* bytes of busy */
    size_t                           skip;       /* preread bytes taken */

    /* the bytes of the current callback (data hooks) */
    ngx_chain_t                     *cur_chain;  /* proxy bufs, or */
    ngx_stream_proxy_wasm_bytes_t   *cur_flat;   /* ... our bytes */
    ngx_stream_proxy_wasm_bytes_t    work;       /* a chunk made ours */
    size_t                           cur_size;

    unsigned                         shown:1;    /* `at` saw held, paused */
    unsigned                         resumed:1;  /* `at` continued */
    unsigned                         eos:1;      /* the side's end taken */
    unsigned                         closed:1;   /* close events sent */
} ngx_stream_proxy_wasm_dir_t;


struct ngx_stream_proxy_wasm_ctx_s {
    ngx_stream_session_t            *s;
    ngx_stream_proxy_wasm_srv_conf_t *pscf;
    ngx_stream_proxy_wasm_stream_t  *streams;
    ngx_uint_t                       nstreams;
    pw_chain                         chain;
    ngx_uint_t                       nc_next;    /* first link whose
                                                    on_new_connection has
                                                    not continued; nstreams:
                                                    all did */
    ngx_stream_proxy_wasm_dir_t      dir[2];
    ngx_pool_t                      *tmp;        /* property values, reset
                                                    before each callback */
    ngx_event_t                      event;      /* wake: pending actions */
    ngx_str_t                        upstream;   /* $proxy_wasm_upstream */
    ngx_array_t                     *props;      /* ..._prop_t */

    unsigned                         preread:1;  /* in the preread phase */
    unsigned                         proxying:1; /* the filter was called */
    unsigned                         closing:1;  /* close or fail closed */
    unsigned                         ended:1;
    unsigned                         gone:1;     /* pool being freed */
};


typedef struct {
    ngx_str_t                        path;
    ngx_str_t                        value;
} ngx_stream_proxy_wasm_prop_t;


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif

/* ngx_stream_proxy_wasm_module.c */
pw_action ngx_stream_proxy_wasm_call(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_uint_t i, pw_event event, size_t n, ngx_uint_t eos);
void ngx_stream_proxy_wasm_post(ngx_stream_proxy_wasm_ctx_t *ctx);

/* ngx_stream_proxy_wasm_data.c */
ngx_int_t ngx_stream_proxy_wasm_filter_init(void);
ngx_int_t ngx_stream_proxy_wasm_run(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_uint_t d, u_char *extra, size_t nextra);
void ngx_stream_proxy_wasm_closes(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_uint_t d, ngx_uint_t peer);
void ngx_stream_proxy_wasm_data_free(ngx_stream_proxy_wasm_ctx_t *ctx);
proxy_status_t ngx_stream_proxy_wasm_data_size(void *host, void *stream,
    proxy_buffer_type_t type, size_t *size);
proxy_status_t ngx_stream_proxy_wasm_data_copy(void *host, void *stream,
    proxy_buffer_type_t type, size_t start, size_t len, void *dst);
proxy_status_t ngx_stream_proxy_wasm_data_replace(void *host, void *stream,
    proxy_buffer_type_t type, size_t start, size_t len, pw_str data);

/* ngx_stream_proxy_wasm_props.c */
proxy_status_t ngx_stream_proxy_wasm_get_property(void *host, void *stream,
    const pw_str *path, size_t nseg, pw_str *value);
proxy_status_t ngx_stream_proxy_wasm_set_property(void *host, void *stream,
    const pw_str *path, size_t nseg, pw_str value);
ngx_int_t ngx_stream_proxy_wasm_add_variables(ngx_conf_t *cf);

#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


extern ngx_module_t  ngx_stream_proxy_wasm_module;


/* The session context of a hook's stream, NULL once it is being freed. */
static ngx_inline ngx_stream_proxy_wasm_ctx_t *
ngx_stream_proxy_wasm_ctx(void *stream)
{
    ngx_stream_proxy_wasm_stream_t  *st = stream;

    if (st == NULL || st->ctx->gone) {
        return NULL;
    }

    return st->ctx;
}


#endif /* _NGX_STREAM_PROXY_WASM_H_INCLUDED_ */
