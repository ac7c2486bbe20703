/*
 * ngx_http_proxy_wasm_body.c -- bodies as plugins see them (data buffers in
 * memory or in a file; nginx's, or ours once kept), the body host hooks
 * (proxy_get_buffer_bytes & co.), and a body chunk through the chain, where
 * a Pause makes an element hold what it saw.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


ngx_int_t
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
ngx_int_t
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
ngx_int_t
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
    ngx_buf_t                  *b;
    ngx_http_proxy_wasm_body_t  nb;

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
ngx_int_t
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


/* An nginx chain for the body, with a last buffer when eos. */
ngx_chain_t *
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


proxy_status_t
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


proxy_status_t
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


proxy_status_t
ngx_http_proxy_wasm_body_replace(void *host, void *stream,
    proxy_buffer_type_t type, size_t start, size_t len, pw_str data)
{
    ngx_http_proxy_wasm_body_t  *body;
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


void
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


void
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
 * Runs a body chunk through the chain from element `from`, as Envoy's
 * StopIterationAndBuffer: an element that paused before gets its buffered
 * data plus the chunk, with the total size; Pause buffers it in that
 * element. On NGX_HTTP_PROXY_WASM_CONTINUE, *cur is what goes on.
 */
ngx_int_t
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

        if (s->link->failed || s->link->stream == NULL) {
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
                                      dir ? PW_ON_RESPONSE_BODY
                                          : PW_ON_REQUEST_BODY,
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
