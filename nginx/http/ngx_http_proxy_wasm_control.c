/*
 * ngx_http_proxy_wasm_control.c -- a plugin callback and the actions left
 * pending after it, the failure policy, and the posted event that applies
 * pending actions: those asked from elsewhere (another request's callback,
 * through proxy_set_effective_context), a continue of what an earlier
 * callback paused, and the death of the VM of a paused stream. The library
 * keeps them on each stream context (pw_stream_pending) and announces them
 * with the wake hook.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


/* The period (ms) of the worker's check of requests paused by plugins: a
 * worker exiting (reload, nginx -s quit) gives them up within about as
 * long. */
#define NGX_HTTP_PROXY_WASM_EXIT_CHECK  1000


static void ngx_http_proxy_wasm_queue(ngx_http_proxy_wasm_ctx_t *ctx);


/* Chain element s could not run (why: the library's reason) and the
 * failure policy gave `action`: logged; NGX_OK when the request goes on
 * without it (open), else NGX_ERROR (closed: the request is failed). */
static ngx_int_t
ngx_http_proxy_wasm_failed(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_http_proxy_wasm_stream_t *s, const char *callback, const char *why,
    pw_action action)
{
    ngx_uint_t  open;

    open = (action != PW_ACTION_ERROR);

    ngx_log_error(NGX_LOG_ERR, ctx->r->connection->log, 0,
                  "proxy_wasm \"%V\" failed in %s: %s; %s",
                  &s->filter->name, callback, why,
                  open ? "continuing without it (failure policy open)"
                       : "answering 503 (failure policy closed)");

    if (open) {
        return NGX_OK;
    }

    ctx->failed = 1;

    return NGX_ERROR;
}


static void
ngx_http_proxy_wasm_post(ngx_http_proxy_wasm_ctx_t *ctx)
{
    if (!ctx->gone && !ctx->event.posted) {
        ngx_post_event(&ctx->event, &ngx_posted_events);
    }
}


/*
 * pw_host_stream_ops.wake: an action became pending on stream context s
 * while none of its callbacks runs (from another context's callback, or a
 * trap elsewhere discarded its VM). Called from inside that other call,
 * maybe another request's: only the request's event is posted; the event
 * handler takes what is pending.
 */
void
ngx_http_proxy_wasm_wake(void *host, void *stream)
{
    ngx_http_proxy_wasm_stream_t  *s = stream;

    if (s != NULL) {
        ngx_http_proxy_wasm_post(s->ctx);
    }
}


/* 1 if something of direction dir is held by a Pause now. */
static ngx_uint_t
ngx_http_proxy_wasm_held(ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t dir)
{
    if (dir == NGX_HTTP_PROXY_WASM_REQ) {
        return ctx->req_hdr_paused || ctx->paused[NGX_HTTP_PROXY_WASM_REQ] >= 0;
    }

    return ctx->headers_paused || ctx->paused[NGX_HTTP_PROXY_WASM_RESP] >= 0;
}


/*
 * Calls one plugin callback. The library has applied to its result what
 * was asked during it (a close; a continue of the direction it paused);
 * a second local response is ignored here. A continue of this direction
 * while nothing of it is held means nothing and is dropped; what else is
 * pending (a continue of the other direction, or of what an earlier
 * callback paused) is taken by the posted event.
 */
ngx_int_t
ngx_http_proxy_wasm_call(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_http_proxy_wasm_stream_t *s, ngx_uint_t cb, size_t n, ngx_uint_t eos)
{
    ngx_uint_t           dir;
    unsigned             own, pending;
    pw_action            action;
    pw_stream           *stream;
    ngx_http_request_t  *r;
    char                 why[PW_ERRLEN];

    r = ctx->r;

    if (s->link->stream == NULL) {
        ngx_http_proxy_wasm_link_plugin(ctx, s);
    }

    /* creates the stream context on first use; the failure policy */
    action = pw_chain_call(&ctx->chain, s - ctx->streams, (pw_event) cb, n,
                           eos, why, sizeof(why));

    if (why[0] != '\0') {
        if (ngx_http_proxy_wasm_failed(ctx, s, pw_event_name(cb), why, action)
            == NGX_OK)
        {
            return NGX_HTTP_PROXY_WASM_CONTINUE;
        }

        return NGX_HTTP_PROXY_WASM_FAIL;
    }

    if (action == PW_ACTION_CLOSE) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "proxy_wasm \"%V\" closed the stream in %s",
                      &s->filter->name, pw_event_name(cb));
        return NGX_HTTP_PROXY_WASM_CLOSE;
    }

    stream = s->link->stream;
    dir = (cb < PW_ON_RESPONSE_HEADERS) ? NGX_HTTP_PROXY_WASM_REQ
                                        : NGX_HTTP_PROXY_WASM_RESP;

    own = (dir == NGX_HTTP_PROXY_WASM_REQ) ? PW_PENDING_CONTINUE_REQUEST
                                           : PW_PENDING_CONTINUE_RESPONSE;

    pending = pw_stream_pending(stream);

    if (((pending & own) || ctx->event.posted)
        && !ngx_http_proxy_wasm_held(ctx, dir))
    {
        /* a continue of this direction means nothing: dropped, also where
         * another plugin of the request asked it (through
         * proxy_set_effective_context: its wake posted the event) */
        (void) pw_chain_take(&ctx->chain, own, NULL);
        pending = pw_stream_pending(stream);
    }

    /* else: a continue for what an earlier callback paused (e.g. the
     * request headers, from a body callback): from the posted event */

    if (pending) {
        ngx_http_proxy_wasm_post(ctx);
    }

    switch (action) {

    case PW_ACTION_CONTINUE:
        return NGX_HTTP_PROXY_WASM_CONTINUE;

    case PW_ACTION_PAUSE:
    case PW_ACTION_PAUSE_NO_BUFFER:
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "proxy_wasm \"%V\" paused in %s", &s->filter->name,
                       pw_event_name(cb));

        ngx_http_proxy_wasm_queue(ctx);

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

    default: /* PW_ACTION_ERROR: pw_chain_call gives a reason with it */
        (void) ngx_http_proxy_wasm_failed(ctx, s, pw_event_name(cb),
                                          "plugin unavailable", action);
        return NGX_HTTP_PROXY_WASM_FAIL;
    }
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


/* 1 if element s, holding the request paused, is to be given up: its
 * VM was discarded (discarded), or (else) it is alive, has no action
 * pending (e.g. a continue from a call's answer, not applied yet) and
 * waits for no call-out its own stream context made. */
static ngx_uint_t
ngx_http_proxy_wasm_gives_up(ngx_http_proxy_wasm_stream_t *s,
    ngx_uint_t discarded)
{
    if (discarded) {
        return s->link->discarded;
    }

    return s->link->stream != NULL && !s->link->failed && !s->link->ended
           && pw_stream_pending(s->link->stream) == 0
           && pw_stream_callouts(s->link->stream) == 0;
}


/*
 * The chain element holding the request paused that `gives_up` picks: s,
 * its direction and the callback that paused; NULL when none (answered
 * already, ending, or not held by such an element). discarded: an element
 * whose VM was discarded (link->discarded); else an element still alive
 * whose stream context waits for no call-out of its own (the worker
 * exits, nothing of ours will wake it).
 */
static ngx_http_proxy_wasm_stream_t *
ngx_http_proxy_wasm_holder(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_uint_t discarded, ngx_uint_t *dir, ngx_uint_t *cb)
{
    ngx_int_t                      i;
    ngx_http_proxy_wasm_stream_t  *s;

    if (ctx->failed || ctx->gone
        || ctx->phase == NGX_HTTP_PROXY_WASM_PHASE_LOG)
    {
        return NULL;       /* answered already, or ending */
    }

    s = NULL;
    *dir = NGX_HTTP_PROXY_WASM_REQ;
    *cb = PW_ON_REQUEST_HEADERS;

    if (ctx->req_state < NGX_HTTP_PROXY_WASM_REQ_LOCAL) {
        /* held in the rewrite phase */
        i = ctx->paused[NGX_HTTP_PROXY_WASM_REQ];

        if (ctx->req_hdr_paused
            && ngx_http_proxy_wasm_gives_up(&ctx->streams[ctx->req_next - 1],
                                            discarded))
        {
            s = &ctx->streams[ctx->req_next - 1];

        } else if (i >= 0
                   && ngx_http_proxy_wasm_gives_up(&ctx->streams[i],
                                                   discarded))
        {
            s = &ctx->streams[i];
            *cb = PW_ON_REQUEST_BODY;
        }
    }

    i = ctx->paused[NGX_HTTP_PROXY_WASM_RESP];

    if (s == NULL && i >= 0
        && ngx_http_proxy_wasm_gives_up(&ctx->streams[i], discarded))
    {
        s = &ctx->streams[i];
        *dir = NGX_HTTP_PROXY_WASM_RESP;
        *cb = ctx->headers_paused ? PW_ON_RESPONSE_HEADERS
                                  : PW_ON_RESPONSE_BODY;
    }

    return s;
}


/*
 * The element holding direction dir of the request failed and nothing will
 * continue it; `open` is its failure policy's answer: the request goes on
 * without it (like a continue, whatever of that direction is stopped goes
 * on), or 503 (closed; ctx->failed is set).
 */
static void
ngx_http_proxy_wasm_give_up(ngx_http_proxy_wasm_ctx_t *ctx, ngx_uint_t dir,
    ngx_uint_t open)
{
    if (open) {
        /* skipped from now on */
        if (dir == NGX_HTTP_PROXY_WASM_REQ) {
            ngx_http_proxy_wasm_resume_request(ctx);
        } else {
            ngx_http_proxy_wasm_resume_response(ctx);
        }

        return;
    }

    ctx->failed = 1;

    if (dir == NGX_HTTP_PROXY_WASM_REQ) {
        ngx_http_proxy_wasm_answer_request(ctx, NGX_HTTP_PROXY_WASM_REQ_FAIL);
        return;
    }

    /* the 503 page replaces the response; what arrived while its headers
     * were paused is dropped */
    ngx_http_proxy_wasm_body_init(&ctx->pending, 1);
    ctx->pending_eos = 0;
    ctx->headers_paused = 0;

    ngx_http_proxy_wasm_response_resumed(ctx,
        ngx_http_proxy_wasm_replace_output(ctx, NGX_HTTP_PROXY_WASM_FAIL));
}


/*
 * The VM of a stream this request paused on was discarded
 * (PW_PENDING_FAILED):
 * nothing can continue it any more. The failure policy applies as if that
 * plugin had failed in the callback that paused (give_up). Returns 0 when
 * the request is not held by such a stream (any more).
 */
static ngx_uint_t
ngx_http_proxy_wasm_stranded(ngx_http_proxy_wasm_ctx_t *ctx)
{
    pw_action                      action;
    ngx_uint_t                     dir, cb;
    ngx_http_proxy_wasm_stream_t  *s;
    char                           why[PW_ERRLEN + 96];

    s = ngx_http_proxy_wasm_holder(ctx, 1, &dir, &cb);
    if (s == NULL) {
        return 0;
    }

    action = pw_chain_stranded(&ctx->chain, s - ctx->streams, why,
                               sizeof(why));

    ngx_http_proxy_wasm_give_up(ctx, dir,
        ngx_http_proxy_wasm_failed(ctx, s, pw_event_name(cb), why, action)
        == NGX_OK);

    return 1;
}


/* The context an event handler works on, cleared by the request's pool
 * cleanup: resuming a request can finalize it and free its pool, ctx
 * included, so the handler checks this before touching ctx again. */
ngx_http_proxy_wasm_ctx_t  *ngx_http_proxy_wasm_live;


/*
 * The request's posted event: takes what is pending on each of its stream
 * contexts and applies it, most final first: a close, a local response
 * asked from elsewhere, a discarded VM holding the request (failure
 * policy), then continues of the request, then of the response side. A
 * continue of a direction nothing holds means nothing.
 */
void
ngx_http_proxy_wasm_event_handler(ngx_event_t *ev)
{
    size_t                      first_local;
    unsigned                    bits;
    ngx_uint_t                  resp;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_proxy_wasm_ctx_t  *ctx, *prev;

    ctx = ev->data;

    if (ctx->gone) {
        return;
    }

    r = ctx->r;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    /* marks the links whose VM died (link->discarded) */
    bits = pw_chain_take(&ctx->chain, PW_PENDING_ALL, &first_local);

    if (bits & PW_PENDING_CLOSE) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "proxy_wasm: stream closed by a plugin");
        ngx_http_finalize_request(r, NGX_HTTP_CLOSE);
        ngx_http_run_posted_requests(c);
        return;
    }

    if (first_local < ctx->nstreams && !ctx->local) {
        ctx->local_stream = &ctx->streams[first_local];
        ngx_http_proxy_wasm_apply_local(ctx);
        ngx_http_run_posted_requests(c);
        return;
    }

    if ((bits & PW_PENDING_FAILED) && ngx_http_proxy_wasm_stranded(ctx)) {
        ngx_http_run_posted_requests(c);
        return;
    }

    if ((bits & PW_PENDING_CONTINUE_REQUEST)
        && ngx_http_proxy_wasm_held(ctx, NGX_HTTP_PROXY_WASM_REQ))
    {
        prev = ngx_http_proxy_wasm_live;
        ngx_http_proxy_wasm_live = ctx;

        ngx_http_proxy_wasm_resume_request(ctx);

        resp = (ngx_http_proxy_wasm_live == ctx);
        ngx_http_proxy_wasm_live = prev;

        if (!resp) {
            /* the request ended and its pool, ctx with it, is freed */
            ngx_http_run_posted_requests(c);
            return;
        }
    }

    if (!ctx->gone && (bits & PW_PENDING_CONTINUE_RESPONSE)
        && ctx->paused[NGX_HTTP_PROXY_WASM_RESP] >= 0)
    {
        ngx_http_proxy_wasm_resume_response(ctx);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * A gracefully exiting worker (reload, nginx -s quit) ends once it has no
 * timers but cancelable ones, closing the connections left. A request a
 * plugin paused for something with no timer of ours (a tick, a shared
 * queue, another request, nothing) has none: it would be dropped without
 * an answer. So every request that paused is kept in a per-worker list
 * until it ends, and while the list is not empty a non-cancelable timer
 * checks it every NGX_HTTP_PROXY_WASM_EXIT_CHECK ms; once the worker
 * exits, each request still paused by a plugin is given up by that
 * plugin's failure policy, as if the plugin had failed in the callback
 * that paused (open: the request goes on without it; closed: 503). A
 * request paused while its plugin's own stream context waits for a
 * call-out is left to the call (its timer holds the worker). The timer
 * stops once no request is held, and the worker can end.
 */
static ngx_queue_t  ngx_http_proxy_wasm_paused_list;
static ngx_event_t  ngx_http_proxy_wasm_exit_ev;
/* its data: nginx's debug log of timers reads ev->data as a connection */
static ngx_connection_t  ngx_http_proxy_wasm_exit_conn;


/* 1 if a plugin holds ctx's request paused (either side) and it is not
 * answered or ending. */
static ngx_uint_t
ngx_http_proxy_wasm_is_held(ngx_http_proxy_wasm_ctx_t *ctx)
{
    return !ctx->failed && !ctx->gone
           && ctx->phase != NGX_HTTP_PROXY_WASM_PHASE_LOG
           && (ngx_http_proxy_wasm_held(ctx, NGX_HTTP_PROXY_WASM_REQ)
               || ngx_http_proxy_wasm_held(ctx, NGX_HTTP_PROXY_WASM_RESP));
}


/* The worker exits: the plugin holding ctx's request paused, if nothing
 * else will wake it, is given up by its failure policy. */
static void
ngx_http_proxy_wasm_exit_request(ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_uint_t                     dir, cb, open;
    ngx_connection_t              *c;
    ngx_http_proxy_wasm_stream_t  *s;

    if (ctx->event.posted) {
        return;     /* something to apply first (e.g. a call's continue) */
    }

    s = ngx_http_proxy_wasm_holder(ctx, 0, &dir, &cb);
    if (s == NULL) {
        return;
    }

    c = ctx->r->connection;
    ngx_http_set_log_request(c->log, ctx->r);

    open = (pw_chain_fail(&ctx->chain, s - ctx->streams) != PW_ACTION_ERROR);

    ngx_log_error(NGX_LOG_WARN, c->log, 0,
                  "proxy_wasm: worker exiting: request paused by plugin "
                  "\"%V\" in %s resumed by its failure policy (%s)",
                  &s->filter->name, pw_event_name(cb),
                  open ? "open" : "closed");

    /* may end the request and free ctx */
    ngx_http_proxy_wasm_give_up(ctx, dir, open);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_proxy_wasm_exit_check(ngx_event_t *ev)
{
    ngx_uint_t                  rearm;
    ngx_queue_t                 seen, *q;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    if (ngx_exiting) {
        /* one by one, each moved to `seen` first: giving a request up can
         * end it (it leaves whichever list it is in), never another one */
        ngx_queue_init(&seen);

        while (!ngx_queue_empty(&ngx_http_proxy_wasm_paused_list)) {
            q = ngx_queue_head(&ngx_http_proxy_wasm_paused_list);
            ngx_queue_remove(q);
            ngx_queue_insert_tail(&seen, q);

            ngx_http_proxy_wasm_exit_request(
                ngx_queue_data(q, ngx_http_proxy_wasm_ctx_t, held_q));
        }

        if (!ngx_queue_empty(&seen)) {
            ngx_queue_add(&ngx_http_proxy_wasm_paused_list, &seen);
        }

        /* again while a request is held (e.g. a later plugin paused it
         * after an open one was given up, or a call-out's answer comes) */
        rearm = 0;

        for (q = ngx_queue_head(&ngx_http_proxy_wasm_paused_list);
             q != ngx_queue_sentinel(&ngx_http_proxy_wasm_paused_list);
             q = ngx_queue_next(q))
        {
            ctx = ngx_queue_data(q, ngx_http_proxy_wasm_ctx_t, held_q);

            if (ngx_http_proxy_wasm_is_held(ctx)) {
                rearm = 1;
                break;
            }
        }

    } else {
        rearm = !ngx_queue_empty(&ngx_http_proxy_wasm_paused_list);
    }

    if (rearm) {
        ngx_add_timer(ev, NGX_HTTP_PROXY_WASM_EXIT_CHECK);
    }
}


/* A plugin paused ctx's request: into the worker's list (once), and the
 * check armed. */
static void
ngx_http_proxy_wasm_queue(ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_event_t  *ev;

    if (ngx_http_proxy_wasm_paused_list.next == NULL) {
        ngx_queue_init(&ngx_http_proxy_wasm_paused_list);
    }

    if (!ctx->queued) {
        ngx_queue_insert_tail(&ngx_http_proxy_wasm_paused_list, &ctx->held_q);
        ctx->queued = 1;
    }

    ev = &ngx_http_proxy_wasm_exit_ev;

    if (!ev->timer_set) {
        ngx_http_proxy_wasm_exit_conn.fd = (ngx_socket_t) -1;
        ev->data = &ngx_http_proxy_wasm_exit_conn;
        ev->handler = ngx_http_proxy_wasm_exit_check;
        ev->log = ngx_cycle->log;
        ev->cancelable = 0;
        ngx_add_timer(ev, NGX_HTTP_PROXY_WASM_EXIT_CHECK);
    }
}


/* ctx's streams end: out of the list. */
void
ngx_http_proxy_wasm_unqueue(ngx_http_proxy_wasm_ctx_t *ctx)
{
    if (ctx->queued) {
        ngx_queue_remove(&ctx->held_q);
        ctx->queued = 0;
    }
}
