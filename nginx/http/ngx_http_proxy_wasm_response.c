/*
 * ngx_http_proxy_wasm_response.c -- the response side: on_response_headers
 * from the header filter (the headers are then held until the first body
 * data went through the body callbacks), on_response_body and
 * on_response_trailers from the body filter; replacing the response by a
 * local response or an error page while its headers are held.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


static ngx_int_t ngx_http_proxy_wasm_response_chunk(
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_proxy_wasm_replace_response(
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_stream_t *s);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


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

        if (s->link->failed || (s->link->stream == NULL && !ctx->lazy)) {
            continue;   /* skipped by an earlier local response */
        }

        rc = ngx_http_proxy_wasm_call(ctx, s,
                                      PW_ON_RESPONSE_HEADERS,
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
    ctx->in_length = r->headers_out.content_length_n;   /* of what comes */

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

        if (s->link->failed || s->link->stream == NULL) {
            continue;
        }

        rc = ngx_http_proxy_wasm_call(ctx, s,
                                      PW_ON_RESPONSE_TRAILERS,
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

#if (NGX_HTTP_V2)
            if (r->stream) {
                /* trailers end a body without a length, as nginx's chunked
                 * filter makes it for HTTP/1.1: clients (curl) stop
                 * reading at Content-Length */
                ngx_http_clear_content_length(r);
            }
#endif
        }

        rc = ngx_http_proxy_wasm_send_headers(ctx);

        if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
            ngx_http_proxy_wasm_consume(in);
            ctx->out_eos = 1;
            ngx_http_proxy_wasm_update_buffered(ctx);
            return (rc == NGX_ERROR || rc > NGX_OK) ? NGX_ERROR : NGX_OK;
        }
    }

    if (in && !body->owned && !(eos && ctx->in_early)) {
        out = in;               /* untouched: as nginx made it */

    } else {
        if (body->owned) {
            ngx_http_proxy_wasm_consume(in);    /* copied */
        }

        /* else nginx's buffers, the end of the body without nginx's last
         * buffer (it comes later): ours is added */

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
ngx_int_t
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
    ngx_buf_t                  *b;
    ngx_uint_t                  eos;
    ngx_http_request_t         *r;
    ngx_http_proxy_wasm_body_t  body;

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

    } else if (ctx->in_eos) {
        /* after the end of the body (its last buffer, or its last bytes
         * when its length is known): nginx's own empty last buffer, or a
         * flush; nothing for the plugins */
        ngx_http_proxy_wasm_consume(in);

        if (ctx->headers_held) {
            return NGX_OK;
        }

        return ngx_http_next_body_filter(r, NULL);

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

        /* The end of the body comes with its last bytes when its length is
         * known (Envoy): nginx passes its last buffer separately, e.g. once
         * the upstream is finalized, and a plugin must not be called again
         * with an empty chunk. A body whose end only its last buffer tells
         * (chunked, closed connection) keeps that empty call. */
        ctx->in_size += body.size;

        if (!eos && body.size && ctx->in_length >= 0
            && ctx->in_size >= ctx->in_length
            && (ctx->cbs & NGX_HTTP_PROXY_WASM_CB_RESP_BODY))
        {
            eos = 1;
            ctx->in_early = 1;
        }

        if (eos) {
            ctx->in_eos = 1;
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


void
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
void
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


ngx_int_t
ngx_http_proxy_wasm_response_filter_init(void)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_proxy_wasm_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_proxy_wasm_body_filter;

    return NGX_OK;
}
