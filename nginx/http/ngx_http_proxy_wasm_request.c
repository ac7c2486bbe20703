/*
 * ngx_http_proxy_wasm_request.c -- the request side: on_request_headers
 * from the rewrite phase handler, then the request body, read early by
 * nginx through our request body filter when a plugin of the chain exports
 * on_request_body (chunk by chunk, or whole when nginx read it before the
 * chain ran); a body that arrives while request headers are paused waits
 * at the gate for the plugins after the paused one.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


static void ngx_http_proxy_wasm_body_read_done(ngx_http_request_t *r);
static void ngx_http_proxy_wasm_hold_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_request_flow(
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t from,
    ngx_http_proxy_wasm_body_t *body, ngx_uint_t eos);


static ngx_http_request_body_filter_pt   ngx_http_next_request_body_filter;


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
    ngx_int_t                   rc;
    ngx_uint_t                  eos;
    ngx_http_proxy_wasm_ctx_t  *ctx;
    ngx_http_proxy_wasm_body_t  body;

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
    ngx_int_t                   rc;
    ngx_chain_t                *cl;
    ngx_http_proxy_wasm_body_t  body;

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
    ngx_int_t                   rc;
    ngx_uint_t                  eos;
    ngx_http_proxy_wasm_body_t  body;

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
ngx_int_t
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

        if (s->link->failed) {
            continue;
        }

        rc = ngx_http_proxy_wasm_call(ctx, s,
                                      PW_ON_REQUEST_HEADERS,
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


void
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


ngx_int_t
ngx_http_proxy_wasm_request_filter_init(void)
{
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_proxy_wasm_request_body_filter;

    return NGX_OK;
}
