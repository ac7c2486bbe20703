/*
 * ngx_http_proxy_wasm_control.c -- a plugin callback and the actions it
 * queued (continue, close, local response: applied after it returns), the
 * failure policy, and the posted event that applies what was asked from
 * elsewhere: another request's callback, or a trap that discarded the VM
 * of a paused stream.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_proxy_wasm.h"


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


static void
ngx_http_proxy_wasm_post(ngx_http_proxy_wasm_ctx_t *ctx)
{
    if (!ctx->in_cb && !ctx->gone && !ctx->event.posted) {
        ngx_post_event(&ctx->event, &ngx_posted_events);
    }
}


proxy_status_t
ngx_http_proxy_wasm_resume(void *host, void *stream, proxy_stream_type_t type)
{
    ngx_http_proxy_wasm_stream_t  *s = stream;

    if (s == NULL || s->ctx->gone) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (type > PROXY_STREAM_HTTP_RESPONSE) {
        return PROXY_RESULT_BAD_ARGUMENT;   /* TCP directions */
    }

    /* applied after the running callback returns */
    s->ctx->resume |= 1 << type;
    ngx_http_proxy_wasm_post(s->ctx);

    return PROXY_RESULT_OK;
}


proxy_status_t
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
void
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
 * The VM of a stream that paused was discarded (subsys->discarded, from
 * ngx_proxy_wasm_vm_discarded, inside the failing call, maybe another
 * request's): the request is only marked here and its event posted (by
 * ngx_http_proxy_wasm_call once that request's callback returned);
 * ngx_http_proxy_wasm_stranded() applies the failure policy.
 */
void
ngx_http_proxy_wasm_discarded(ngx_proxy_wasm_stream_t *ps)
{
    ngx_http_proxy_wasm_stream_t  *s;

    s = (ngx_http_proxy_wasm_stream_t *) ps;    /* its first member */

    s->ctx->discarded = 1;
    ngx_http_proxy_wasm_post(s->ctx);
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
ngx_int_t
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

        /* woken by vm_discarded if its VM dies meanwhile */
        ngx_proxy_wasm_queue_paused(s->filter->plugin->mod, &s->base);

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
            && ctx->streams[ctx->req_next - 1].base.discarded)
        {
            s = &ctx->streams[ctx->req_next - 1];

        } else if (i >= 0 && ctx->streams[i].base.discarded) {
            s = &ctx->streams[i];
            cb = NGX_HTTP_PROXY_WASM_ON_REQ_BODY;
        }
    }

    i = ctx->paused[NGX_HTTP_PROXY_WASM_RESP];

    if (s == NULL && i >= 0 && ctx->streams[i].base.discarded) {
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


/* The context an event handler works on, cleared by the request's pool
 * cleanup: resuming a request can finalize it and free its pool, ctx
 * included, so the handler checks this before touching ctx again. */
ngx_http_proxy_wasm_ctx_t  *ngx_http_proxy_wasm_live;


void
ngx_http_proxy_wasm_event_handler(ngx_event_t *ev)
{
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
    }

    if (!ctx->gone && (ctx->resume & (1 << NGX_HTTP_PROXY_WASM_RESP))) {
        ctx->resume &= ~(1 << NGX_HTTP_PROXY_WASM_RESP);

        if (ctx->paused[NGX_HTTP_PROXY_WASM_RESP] >= 0) {
            ngx_http_proxy_wasm_resume_response(ctx);
        }
    }

    ngx_http_run_posted_requests(c);
}
