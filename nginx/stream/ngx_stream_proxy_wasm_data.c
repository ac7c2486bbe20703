/*
 * ngx_stream_proxy_wasm_data.c -- the bytes of each direction through the
 * chain: the stream filter (ngx_stream_top_filter, from_upstream 0: the
 * client's bytes on their way to the upstream, 1: the reverse), Pause and
 * the bytes it holds, backpressure, and the DownstreamData / UpstreamData
 * buffers of the network hooks.
 *
 * A chunk the proxy reads runs through the links in order
 * (on_downstream_data / on_upstream_data, end_of_stream with the side's
 * last buffer). Untouched, the proxy's own buffers are passed on (no
 * copy); a plugin that writes the buffer makes the chunk ours (malloc'ed
 * bytes, freed once the next filter sent them). A link that pauses holds
 * the chunk: its bytes are copied, the proxy's buffers marked consumed (so
 * it reads on), and what arrives later is appended and the same link is
 * called again with the accumulated size. On proxy_continue_stream the held
 * bytes run through the links after it, then on. Nothing passes a link that
 * holds bytes: order is kept.
 *
 * Backpressure: the bytes a direction holds plus those of ours the next
 * filter has not sent yet are at most proxy_wasm_max_held. At the limit
 * the proxy's buffers are left unconsumed: its buffer (proxy_buffer_size)
 * fills and it stops reading that side until the plugin continues (or
 * proxy_timeout ends the session). The plugin is not called again until
 * then: it sees at most proxy_wasm_max_held bytes.
 *
 * Links whose on_new_connection has not continued yet (one paused it:
 * preread) get no data: bytes wait before them.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_stream.h>

#include "ngx_stream_proxy_wasm.h"


static ngx_stream_filter_pt  ngx_stream_next_filter;


static ngx_int_t
ngx_stream_proxy_wasm_bytes_reserve(ngx_stream_proxy_wasm_bytes_t *b,
    size_t len, ngx_log_t *log)
{
    size_t   cap;
    u_char  *p;

    if (len <= b->cap) {
        return NGX_OK;
    }

    cap = b->cap ? b->cap : 4096;

    while (cap < len) {
        cap *= 2;
    }

    p = ngx_alloc(cap, log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (b->len) {
        ngx_memcpy(p, b->data, b->len);
    }

    if (b->data) {
        ngx_free(b->data);
    }

    b->data = p;
    b->cap = cap;

    return NGX_OK;
}


static ngx_int_t
ngx_stream_proxy_wasm_bytes_append(ngx_stream_proxy_wasm_bytes_t *b,
    u_char *p, size_t n, ngx_log_t *log)
{
    if (ngx_stream_proxy_wasm_bytes_reserve(b, b->len + n, log) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memcpy(b->data + b->len, p, n);
    b->len += n;

    return NGX_OK;
}


static void
ngx_stream_proxy_wasm_bytes_swap(ngx_stream_proxy_wasm_bytes_t *a,
    ngx_stream_proxy_wasm_bytes_t *b)
{
    ngx_stream_proxy_wasm_bytes_t  t;

    t = *a;
    *a = *b;
    *b = t;
}


/* Frees the links of d->in up to the end (their buffers are consumed). */
static void
ngx_stream_proxy_wasm_drop_in(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_stream_proxy_wasm_dir_t *d)
{
    ngx_chain_t  *cl;

    while (d->in) {
        cl = d->in;
        d->in = cl->next;

        if (cl->buf->last_buf) {
            d->eos = 1;
        }

        cl->buf->pos = cl->buf->last;
        ngx_free_chain(ctx->s->connection->pool, cl);
    }
}


/* Copies up to `room` bytes of the input into the held bytes, consuming
 * the proxy's buffers; the side's end is taken with its last buffer. */
static ngx_int_t
ngx_stream_proxy_wasm_take_input(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_stream_proxy_wasm_dir_t *d, size_t room, size_t *taken)
{
    size_t        n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    *taken = 0;

    while (d->in) {
        cl = d->in;
        b = cl->buf;

        n = b->last - b->pos;

        if (n > room - *taken) {
            n = room - *taken;
        }

        if (n) {
            if (ngx_stream_proxy_wasm_bytes_append(&d->held, b->pos, n,
                                                   ctx->s->connection->log)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            b->pos += n;
            *taken += n;
        }

        if (b->pos < b->last) {
            break;                      /* the limit */
        }

        if (b->last_buf) {
            d->eos = 1;
        }

        d->in = cl->next;
        ngx_free_chain(ctx->s->connection->pool, cl);
    }

    return NGX_OK;
}


/* The chunk of the current callback is held by link i from now on. */
static ngx_int_t
ngx_stream_proxy_wasm_hold(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_stream_proxy_wasm_dir_t *d, ngx_uint_t i, ngx_uint_t shown)
{
    size_t  taken;

    if (d->cur_flat && d->cur_flat != &d->held) {
        /* held is empty: the chunk's bytes become the held ones */
        ngx_stream_proxy_wasm_bytes_swap(&d->held, d->cur_flat);
        d->cur_flat->len = 0;

        if (d->cur_chain) {
            ngx_stream_proxy_wasm_drop_in(ctx, d);
        }

    } else if (d->cur_flat == NULL && d->cur_chain) {
        if (ngx_stream_proxy_wasm_take_input(ctx, d, (size_t) -1, &taken)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    d->cur_chain = NULL;
    d->cur_flat = NULL;
    d->at = i;
    d->shown = shown;
    d->resumed = 0;

    return NGX_OK;
}


static ngx_chain_t *
ngx_stream_proxy_wasm_get_buf(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_stream_proxy_wasm_dir_t *d)
{
    ngx_chain_t  *cl;

    if (d->free) {
        cl = d->free;
        d->free = cl->next;
        cl->next = NULL;
        ngx_memzero(cl->buf, sizeof(ngx_buf_t));
        return cl;
    }

    cl = ngx_alloc_chain_link(ctx->s->connection->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = ngx_calloc_buf(ctx->s->connection->pool);
    if (cl->buf == NULL) {
        return NULL;
    }

    cl->next = NULL;

    return cl;
}


static void
ngx_stream_proxy_wasm_append(ngx_chain_t **ll, ngx_chain_t *cl)
{
    while (*ll) {
        ll = &(*ll)->next;
    }

    *ll = cl;
}


/* The chunk of the current callback went through every link: on to the
 * next filter. */
static ngx_int_t
ngx_stream_proxy_wasm_emit(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_stream_proxy_wasm_dir_t *d)
{
    ngx_chain_t  *cl, *ln;

    if (d->cur_flat == NULL) {
        /* the proxy's buffers as they are */
        ngx_stream_proxy_wasm_append(&d->out, d->in);

        for (cl = d->in; cl; cl = cl->next) {
            if (cl->buf->last_buf) {
                d->eos = 1;
            }
        }

        d->in = NULL;
        d->cur_chain = NULL;
        return NGX_OK;
    }

    if (d->cur_chain) {
        ngx_stream_proxy_wasm_drop_in(ctx, d);
    }

    if (d->cur_flat->len) {
        cl = ngx_stream_proxy_wasm_get_buf(ctx, d);
        ln = ngx_alloc_chain_link(ctx->s->connection->pool);

        if (cl == NULL || ln == NULL) {
            return NGX_ERROR;
        }

        cl->buf->start = d->cur_flat->data;
        cl->buf->pos = cl->buf->start;
        cl->buf->last = cl->buf->start + d->cur_flat->len;
        cl->buf->end = cl->buf->start + d->cur_flat->cap;
        cl->buf->temporary = 1;
        cl->buf->flush = 1;
        cl->buf->tag = (ngx_buf_tag_t) &ngx_stream_proxy_wasm_module;

        d->inflight += d->cur_flat->len;
        ngx_stream_proxy_wasm_append(&d->busy, cl);

        ln->buf = cl->buf;
        ln->next = NULL;
        ngx_stream_proxy_wasm_append(&d->out, ln);

        d->cur_flat->data = NULL;
        d->cur_flat->len = 0;
        d->cur_flat->cap = 0;
    }

    d->cur_flat = NULL;
    d->cur_chain = NULL;

    return NGX_OK;
}


/* Runs the current chunk through links from..n-1, then on. */
static ngx_int_t
ngx_stream_proxy_wasm_links(ngx_stream_proxy_wasm_ctx_t *ctx, ngx_uint_t dn,
    ngx_uint_t from, ngx_uint_t eos)
{
    ngx_uint_t                    i;
    pw_action                     a;
    ngx_stream_proxy_wasm_dir_t  *d;

    d = &ctx->dir[dn];

    for (i = from; i < ctx->nstreams; i++) {

        if (i > ctx->nc_next) {
            /* on_new_connection did not reach this link yet */
            return ngx_stream_proxy_wasm_hold(ctx, d, i, 0);
        }

        if (d->cur_flat) {
            d->cur_size = d->cur_flat->len;
        }

        a = ngx_stream_proxy_wasm_call(ctx, i,
                                       dn == NGX_STREAM_PROXY_WASM_DOWN
                                       ? PW_ON_DOWNSTREAM_DATA
                                       : PW_ON_UPSTREAM_DATA,
                                       d->cur_size, eos);

        switch (a) {
        case PW_ACTION_CONTINUE:
        case PW_ACTION_LOCAL_RESPONSE:
            break;

        case PW_ACTION_PAUSE:
        case PW_ACTION_PAUSE_NO_BUFFER:
            return ngx_stream_proxy_wasm_hold(ctx, d, i, 1);

        default:
            ctx->closing = 1;
            return NGX_ERROR;
        }
    }

    return ngx_stream_proxy_wasm_emit(ctx, d);
}


/*
 * Runs what direction dn has: the bytes `extra` (the preread buffer's new
 * bytes, copied), the input the proxy gave, what a link holds (called
 * again when more came, or passed on when it continued). NGX_ERROR: the
 * session ends (close, fail closed, no memory).
 */
ngx_int_t
ngx_stream_proxy_wasm_run(ngx_stream_proxy_wasm_ctx_t *ctx, ngx_uint_t dn,
    u_char *extra, size_t nextra)
{
    size_t                        size, room, taken, max;
    ngx_uint_t                    eos, was_eos, from;
    ngx_chain_t                  *cl;
    pw_action                     a;
    ngx_log_t                    *log;
    ngx_stream_proxy_wasm_dir_t  *d;

    d = &ctx->dir[dn];
    max = ctx->pscf->max_held;
    log = ctx->s->connection->log;

    for ( ;; ) {

        if (ctx->closing) {
            return NGX_ERROR;
        }

        if (d->at >= 0) {
            was_eos = d->eos;
            taken = 0;

            if (extra) {
                if (ngx_stream_proxy_wasm_bytes_append(&d->held, extra,
                                                       nextra, log)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                taken = nextra;
                extra = NULL;
            }

            room = d->held.len + d->inflight < max
                   ? max - d->held.len - d->inflight : 0;

            if (ngx_stream_proxy_wasm_take_input(ctx, d, room, &size)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            taken += size;

            if ((ngx_uint_t) d->at > ctx->nc_next) {
                return NGX_OK;          /* waits for on_new_connection */
            }

            if (!d->resumed) {
                if (d->shown && taken == 0 && d->eos == was_eos) {
                    return NGX_OK;      /* nothing new for the link */
                }

                d->cur_flat = &d->held;
                d->cur_chain = NULL;
                d->cur_size = d->held.len;

                a = ngx_stream_proxy_wasm_call(ctx, d->at,
                                               dn == NGX_STREAM_PROXY_WASM_DOWN
                                               ? PW_ON_DOWNSTREAM_DATA
                                               : PW_ON_UPSTREAM_DATA,
                                               d->held.len, d->eos);
                d->cur_flat = NULL;
                d->shown = 1;

                if (a == PW_ACTION_PAUSE || a == PW_ACTION_PAUSE_NO_BUFFER) {
                    return NGX_OK;
                }

                if (a != PW_ACTION_CONTINUE
                    && a != PW_ACTION_LOCAL_RESPONSE)
                {
                    ctx->closing = 1;
                    return NGX_ERROR;
                }
            }

            /* continued: the held bytes go on after the link */
            from = d->at + 1;
            d->at = -1;
            d->shown = 0;
            d->resumed = 0;

            ngx_stream_proxy_wasm_bytes_swap(&d->work, &d->held);
            d->held.len = 0;
            d->cur_flat = &d->work;
            d->cur_chain = NULL;

            if (ngx_stream_proxy_wasm_links(ctx, dn, from, d->eos)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (extra) {
            d->work.len = 0;

            if (ngx_stream_proxy_wasm_bytes_append(&d->work, extra, nextra,
                                                   log)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            extra = NULL;
            d->cur_flat = &d->work;
            d->cur_chain = NULL;

            if (ngx_stream_proxy_wasm_links(ctx, dn, 0, 0) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (d->in == NULL || d->inflight >= max) {
            break;
        }

        size = 0;
        eos = 0;

        for (cl = d->in; cl; cl = cl->next) {
            size += cl->buf->last - cl->buf->pos;
            eos |= cl->buf->last_buf;
        }

        if (size == 0 && !eos) {
            ngx_stream_proxy_wasm_drop_in(ctx, d);
            break;
        }

        d->cur_chain = d->in;
        d->cur_flat = NULL;
        d->cur_size = size;

        if (ngx_stream_proxy_wasm_links(ctx, dn, 0, eos) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (d->eos && !d->closed && d->at < 0 && d->in == NULL) {
        /* the side ended (its peer closed or shut its half): remote */
        ngx_stream_proxy_wasm_closes(ctx, dn, 2);
    }

    return ctx->closing ? NGX_ERROR : NGX_OK;
}


/* on_downstream_connection_close / on_upstream_connection_close on every
 * link that had on_new_connection; peer 1: local, 2: remote. */
void
ngx_stream_proxy_wasm_closes(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_uint_t dn, ngx_uint_t peer)
{
    ngx_uint_t  i;

    ctx->dir[dn].closed = 1;

    for (i = 0; i < ctx->nstreams && i <= ctx->nc_next; i++) {
        if (ctx->chain.links[i].stream == NULL) {
            continue;
        }

        (void) ngx_stream_proxy_wasm_call(ctx, i,
                                          dn == NGX_STREAM_PROXY_WASM_DOWN
                                          ? PW_ON_DOWNSTREAM_CLOSE
                                          : PW_ON_UPSTREAM_CLOSE,
                                          peer, 0);
    }
}


/* Links to the proxy's buffers of `in` at the end of d->in. */
static ngx_int_t
ngx_stream_proxy_wasm_link_in(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_stream_proxy_wasm_dir_t *d, ngx_chain_t *in)
{
    size_t        n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl, *ln, **ll;

    for (ll = &d->in; *ll; ll = &(*ll)->next) { /* void */ }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (d->skip) {
            /* the preread bytes that went through the chain already */
            n = ngx_min(d->skip, (size_t) (b->last - b->pos));
            b->pos += n;
            d->skip -= n;
        }

        if (b->pos == b->last && !b->last_buf) {
            continue;
        }

        ln = ngx_alloc_chain_link(ctx->s->connection->pool);
        if (ln == NULL) {
            return NGX_ERROR;
        }

        ln->buf = b;
        ln->next = NULL;
        *ll = ln;
        ll = &ln->next;
    }

    return NGX_OK;
}


/*
 * The common case, apart: nothing held or skipped, nothing of ours unsent,
 * every link past on_new_connection, a chunk of bytes without the side's
 * end. The links see the proxy's chain itself, and unless one of them
 * writes the buffer, pauses or fails, it goes on as it is: no links of
 * ours, no bookkeeping per chunk. NGX_OK: `in` goes to the next filter;
 * NGX_DECLINED: a link left the common case, the chunk is in d->in and
 * went on the general way (d->out); NGX_ERROR: the session ends.
 */
static ngx_int_t
ngx_stream_proxy_wasm_pass(ngx_stream_proxy_wasm_ctx_t *ctx, ngx_uint_t dn,
    ngx_chain_t *in, size_t size)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    pw_event                      event;
    pw_action                     a;
    ngx_stream_proxy_wasm_dir_t  *d;

    d = &ctx->dir[dn];
    event = dn == NGX_STREAM_PROXY_WASM_DOWN ? PW_ON_DOWNSTREAM_DATA
                                             : PW_ON_UPSTREAM_DATA;

    d->cur_chain = in;
    d->cur_flat = NULL;
    d->cur_size = size;

    for (i = 0; i < ctx->nstreams; i++) {

        a = ngx_stream_proxy_wasm_call(ctx, i, event, d->cur_size, 0);

        if ((a == PW_ACTION_CONTINUE || a == PW_ACTION_LOCAL_RESPONSE)
            && d->cur_flat == NULL && !ctx->closing)
        {
            continue;
        }

        /* the general way from link i on, with our links to the chunk */

        if (ngx_stream_proxy_wasm_link_in(ctx, d, in) != NGX_OK) {
            return NGX_ERROR;
        }

        if (d->cur_chain) {
            d->cur_chain = d->in;
        }

        switch (a) {
        case PW_ACTION_CONTINUE:
        case PW_ACTION_LOCAL_RESPONSE:
            rc = ngx_stream_proxy_wasm_links(ctx, dn, i + 1, 0);
            break;

        case PW_ACTION_PAUSE:
        case PW_ACTION_PAUSE_NO_BUFFER:
            rc = ngx_stream_proxy_wasm_hold(ctx, d, i, 1);
            break;

        default:
            ctx->closing = 1;
            rc = NGX_ERROR;
        }

        if (rc != NGX_OK
            || ngx_stream_proxy_wasm_run(ctx, dn, NULL, 0) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }

    d->cur_chain = NULL;

    return NGX_OK;
}


static ngx_int_t
ngx_stream_proxy_wasm_filter(ngx_stream_session_t *s, ngx_chain_t *in,
    ngx_uint_t from_upstream)
{
    size_t                        n, size;
    ngx_int_t                     rc;
    ngx_chain_t                  *cl, *out;
    ngx_connection_t             *c, *dst;
    ngx_stream_proxy_wasm_dir_t  *d;
    ngx_stream_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_stream_get_module_ctx(s, ngx_stream_proxy_wasm_module);

    if (ctx == NULL || ctx->ended || s->upstream == NULL) {
        return ngx_stream_next_filter(s, in, from_upstream);
    }

    c = s->connection;
    d = &ctx->dir[from_upstream ? 1 : 0];
    dst = from_upstream ? c : s->upstream->peer.connection;

    ctx->proxying = 1;

    if (ctx->closing) {
        return NGX_ERROR;
    }

    if (in && d->in == NULL && d->at < 0 && d->busy == NULL && d->skip == 0
        && ctx->nc_next + 1 >= ctx->nstreams)
    {
        size = 0;

        for (cl = in; cl; cl = cl->next) {
            n = cl->buf->last - cl->buf->pos;

            if (n == 0 || cl->buf->last_buf) {
                size = 0;
                break;
            }

            size += n;
        }

        if (size) {
            rc = ngx_stream_proxy_wasm_pass(ctx, from_upstream ? 1 : 0, in,
                                            size);

            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (rc == NGX_OK) {
                rc = ngx_stream_next_filter(s, in, from_upstream);

                if (dst) {
                    dst->buffered &= ~NGX_STREAM_PROXY_WASM_BUFFERED;
                }

                return rc;
            }

            goto out;
        }
    }

    /* the input: our links to the proxy's buffers; the preread bytes
     * that went through the chain already are skipped */

    if (ngx_stream_proxy_wasm_link_in(ctx, d, in) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_stream_proxy_wasm_run(ctx, from_upstream ? 1 : 0, NULL, 0)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

out:

    out = d->out;
    d->out = NULL;

    if (out == NULL
        && (dst == NULL || !(dst->buffered & ~NGX_STREAM_PROXY_WASM_BUFFERED)))
    {
        /* nothing to send, nothing buffered below: the write filter would
         * call an empty call an error (the proxy's empty flush buffers
         * were dropped above) */
        rc = NGX_OK;

    } else {
        rc = ngx_stream_next_filter(s, out, from_upstream);
    }

    while (out) {
        cl = out;
        out = cl->next;
        ngx_free_chain(c->pool, cl);
    }

    /* ours the next filter sent */
    while (d->busy && d->busy->buf->pos == d->busy->buf->last) {
        cl = d->busy;
        d->busy = cl->next;
        d->inflight -= cl->buf->last - cl->buf->start;
        ngx_free(cl->buf->start);
        cl->buf->start = NULL;
        cl->next = d->free;
        d->free = cl;
    }

    if (dst) {
        if (d->in || d->at >= 0 || d->busy) {
            dst->buffered |= NGX_STREAM_PROXY_WASM_BUFFERED;

        } else {
            dst->buffered &= ~NGX_STREAM_PROXY_WASM_BUFFERED;
        }
    }

    if (rc == NGX_OK && (d->in || d->at >= 0)) {
        return NGX_AGAIN;
    }

    return rc;
}


ngx_int_t
ngx_stream_proxy_wasm_filter_init(void)
{
    ngx_stream_next_filter = ngx_stream_top_filter;
    ngx_stream_top_filter = ngx_stream_proxy_wasm_filter;

    return NGX_OK;
}


void
ngx_stream_proxy_wasm_data_free(ngx_stream_proxy_wasm_ctx_t *ctx)
{
    ngx_uint_t                    i;
    ngx_chain_t                  *cl;
    ngx_stream_proxy_wasm_dir_t  *d;

    for (i = 0; i < 2; i++) {
        d = &ctx->dir[i];

        if (d->held.data) {
            ngx_free(d->held.data);
            d->held.data = NULL;
        }

        if (d->work.data) {
            ngx_free(d->work.data);
            d->work.data = NULL;
        }

        for (cl = d->busy; cl; cl = cl->next) {
            if (cl->buf->start) {
                ngx_free(cl->buf->start);
                cl->buf->start = NULL;
            }
        }

        d->busy = NULL;
    }
}


/* ------------------------------------------------- the network hooks */


static ngx_stream_proxy_wasm_dir_t *
ngx_stream_proxy_wasm_cur(void *stream, proxy_buffer_type_t type)
{
    ngx_stream_proxy_wasm_ctx_t  *ctx;
    ngx_stream_proxy_wasm_dir_t  *d;

    ctx = ngx_stream_proxy_wasm_ctx(stream);

    if (ctx == NULL) {
        return NULL;
    }

    if (type == PROXY_BUFFER_DOWNSTREAM_DATA) {
        d = &ctx->dir[NGX_STREAM_PROXY_WASM_DOWN];

    } else if (type == PROXY_BUFFER_UPSTREAM_DATA) {
        d = &ctx->dir[NGX_STREAM_PROXY_WASM_UP];

    } else {
        return NULL;
    }

    if (d->cur_flat == NULL && d->cur_chain == NULL && d->at >= 0) {
        d->cur_flat = &d->held;     /* what it holds, outside a callback */
        d->cur_size = d->held.len;
    }

    return d;
}


static size_t
ngx_stream_proxy_wasm_cur_size(ngx_stream_proxy_wasm_dir_t *d)
{
    if (d->cur_flat) {
        return d->cur_flat->len;
    }

    return d->cur_chain ? d->cur_size : 0;
}


proxy_status_t
ngx_stream_proxy_wasm_data_size(void *host, void *stream,
    proxy_buffer_type_t type, size_t *size)
{
    ngx_stream_proxy_wasm_dir_t  *d;

    d = ngx_stream_proxy_wasm_cur(stream, type);
    if (d == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    *size = ngx_stream_proxy_wasm_cur_size(d);

    return PROXY_RESULT_OK;
}


/* Copies bytes [start, start + len) of the chain's data to dst. */
static void
ngx_stream_proxy_wasm_chain_copy(ngx_chain_t *cl, size_t start, size_t len,
    u_char *dst)
{
    size_t  n;

    for ( /* void */ ; cl && len; cl = cl->next) {
        n = cl->buf->last - cl->buf->pos;

        if (start >= n) {
            start -= n;
            continue;
        }

        n = ngx_min(n - start, len);
        dst = ngx_cpymem(dst, cl->buf->pos + start, n);
        len -= n;
        start = 0;
    }
}


proxy_status_t
ngx_stream_proxy_wasm_data_copy(void *host, void *stream,
    proxy_buffer_type_t type, size_t start, size_t len, void *dst)
{
    size_t                        size;
    ngx_stream_proxy_wasm_dir_t  *d;

    d = ngx_stream_proxy_wasm_cur(stream, type);
    if (d == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    size = ngx_stream_proxy_wasm_cur_size(d);

    if (start > size || len > size - start) {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    if (d->cur_flat) {
        ngx_memcpy(dst, d->cur_flat->data + start, len);

    } else {
        ngx_stream_proxy_wasm_chain_copy(d->cur_chain, start, len, dst);
    }

    return PROXY_RESULT_OK;
}


/* Replaces bytes [start, start + len) with data (clamped to the size):
 * replace, prepend (0, 0), append (size, 0), drain (data empty). */
proxy_status_t
ngx_stream_proxy_wasm_data_replace(void *host, void *stream,
    proxy_buffer_type_t type, size_t start, size_t len, pw_str data)
{
    size_t                          size, nsize;
    ngx_log_t                      *log;
    ngx_stream_proxy_wasm_dir_t    *d;
    ngx_stream_proxy_wasm_bytes_t  *f;

    d = ngx_stream_proxy_wasm_cur(stream, type);
    if (d == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    log = ngx_stream_proxy_wasm_ctx(stream)->s->connection->log;
    size = ngx_stream_proxy_wasm_cur_size(d);

    if (d->cur_flat == NULL) {
        if (d->cur_chain == NULL) {
            return PROXY_RESULT_NOT_FOUND;
        }

        /* the proxy's chunk becomes ours (its buffers are consumed when
         * it is passed on or held) */
        d->work.len = 0;

        if (ngx_stream_proxy_wasm_bytes_reserve(&d->work, size, log)
            != NGX_OK)
        {
            return PROXY_RESULT_INTERNAL_FAILURE;
        }

        ngx_stream_proxy_wasm_chain_copy(d->cur_chain, 0, size,
                                         d->work.data);
        d->work.len = size;
        d->cur_flat = &d->work;
    }

    f = d->cur_flat;

    if (start > size) {
        start = size;
    }

    if (len > size - start) {
        len = size - start;
    }

    nsize = size - len + data.len;

    if (ngx_stream_proxy_wasm_bytes_reserve(f, nsize, log) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    ngx_memmove(f->data + start + data.len, f->data + start + len,
                size - start - len);

    if (data.len) {
        ngx_memcpy(f->data + start, data.data, data.len);
    }

    f->len = nsize;
    d->cur_size = nsize;

    return PROXY_RESULT_OK;
}
