/*
 * ngx_proxy_wasm_callout.c -- proxy_http_call in nginx: an HTTP/1.1 client
 * inside the worker's event loop (no thread, nothing blocks), and the
 * callout host hooks (pw_host_callout_ops: http_call, cancel).
 *
 * One call: the hook finds the target (ngx_proxy_wasm_target.c), writes
 * the whole request into a buffer of a pool made for the call, and
 * connects (ngx_event_connect_peer, the peer chosen by the target: round
 * robin over an upstream{} block's servers, the next one after a failed
 * connection); TLS when :scheme is https (nginx's OpenSSL, SNI and
 * certificate check with the :authority's host). The response is read
 * with ngx_http's exported parsers (ngx_http_parse_status_line,
 * ngx_http_parse_header_line, ngx_http_parse_chunked) over a request
 * struct that only holds their state; with the target lookup, the one
 * exception to "common/ has no ngx_http_*". The answer (or a failure:
 * resp NULL and a short reason, logged at warn) is delivered with
 * pw_vm_http_call_response() from the event handler; a failure known in
 * the hook itself is delivered from a posted event (the library refuses a
 * delivery from inside a plugin call). The call's pool goes when it ends.
 *
 * Keep-alive: after a complete response that allows it, the connection
 * waits in a per-worker list of idle connections (at most
 * proxy_wasm_callout_keepalive, each for proxy_wasm_callout_keepalive_timeout)
 * and a later call to the same peer address (and TLS name) takes it. A
 * connection is never kept after a failure, a cancel, or a response whose
 * end was the close. A call on a kept connection that the server closed
 * meanwhile (nothing read yet) is tried once more on a new connection.
 *
 * Limits: proxy_wasm_callout_max_response_headers (the status line and
 * headers, bytes) and proxy_wasm_callout_max_response_body; over either:
 * failure "response too large". The plugin's timeout covers the whole
 * call (0: none, as Envoy); connecting has its own timeout
 * (proxy_wasm_callout_connect_timeout) in every case.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include "ngx_proxy_wasm.h"


/* the period of the timer of a call without a timeout (it only re-arms) */
#define NGX_PROXY_WASM_CALLOUT_HOLD       60000

#define NGX_PROXY_WASM_CALLOUT_STATUS     0
#define NGX_PROXY_WASM_CALLOUT_HEADERS    1
#define NGX_PROXY_WASM_CALLOUT_BODY       2   /* Content-Length, or close */
#define NGX_PROXY_WASM_CALLOUT_CHUNKED    3
#define NGX_PROXY_WASM_CALLOUT_TRAILERS   4
#define NGX_PROXY_WASM_CALLOUT_DONE       5

/* sw_trailer of ngx_http_parse_chunked()'s states (ngx_http_parse.c, the
 * same value from 1.22 to 1.31): "0" CRLF was passed, trailers follow */
#define NGX_PROXY_WASM_CHUNKED_TRAILER    9


/* A connection of ours: busy with a call, or idle in cc->idle. Allocated
 * from the connection's own pool (c->pool), which lives as it does. */
typedef struct {
    ngx_queue_t                      queue;      /* cc->idle while idle */
    ngx_connection_t                *c;
    ngx_proxy_wasm_callout_conf_t   *cc;
    struct sockaddr                 *sockaddr;   /* the peer: reuse key */
    socklen_t                        socklen;
    ngx_str_t                        sni;        /* TLS: the name checked;
                                                    len 0: plain */
    unsigned                         ssl:1;
} ngx_proxy_wasm_conn_t;


struct ngx_proxy_wasm_callout_s {
    ngx_queue_t                      queue;      /* cc->calls */
    ngx_pool_t                      *pool;
    ngx_proxy_wasm_mod_t            *mod;        /* the VM owner */
    ngx_proxy_wasm_callout_conf_t   *cc;
    ngx_log_t                       *log;
    uint32_t                         token;
    const char                      *plugin;     /* its name, for the log */

    ngx_proxy_wasm_target_t         *target;
    ngx_proxy_wasm_peer_t           *peer;
    ngx_peer_connection_t            pc;
    ngx_event_get_peer_pt            peer_get;   /* the target's */
    ngx_event_free_peer_pt           peer_free;
    void                            *peer_data;
    ngx_proxy_wasm_conn_t           *conn;
    ngx_str_t                        sni;        /* :authority's host */

    ngx_buf_t                        request;    /* what is sent */
    ngx_buf_t                       *in;         /* what is read */

    ngx_event_t                      timer;      /* the plugin's timeout */
    ngx_event_t                      post;       /* a failure from the hook */
    const char                      *reason;     /* of that failure */

    /* the parsers' state */
    ngx_http_request_t               r;
    ngx_http_status_t                status;
    ngx_http_chunked_t               chunked;
    ngx_uint_t                       state;
    off_t                            rest;       /* BODY: bytes to come;
                                                    -1: until the close */
    ngx_array_t                      headers;    /* pw_kv, ":status" first */
    ngx_array_t                      trailers;   /* pw_kv */
    u_char                          *body;
    size_t                           body_len;
    size_t                           body_cap;

    unsigned                         ssl:1;
    unsigned                         reused:1;   /* a kept connection */
    unsigned                         keepalive:1; /* the answer allows it */
    unsigned                         chunked_body:1;
    unsigned                         no_body:1;
    unsigned                         read_any:1;
    unsigned                         in_chunk:1; /* in a chunk's data */
};


static void ngx_proxy_wasm_callout_connect(ngx_proxy_wasm_callout_t *call);
static void ngx_proxy_wasm_callout_resolved(void *data, ngx_int_t rc);
static void ngx_proxy_wasm_callout_handler(ngx_event_t *ev);
static void ngx_proxy_wasm_callout_send(ngx_proxy_wasm_callout_t *call);
static void ngx_proxy_wasm_callout_recv(ngx_proxy_wasm_callout_t *call);
static void ngx_proxy_wasm_callout_ssl_init(ngx_proxy_wasm_callout_t *call);
static void ngx_proxy_wasm_callout_ssl_done(ngx_connection_t *c);
static void ngx_proxy_wasm_callout_fail(ngx_proxy_wasm_callout_t *call,
    const char *reason);
static void ngx_proxy_wasm_callout_finish(ngx_proxy_wasm_callout_t *call,
    const char *reason);
static void ngx_proxy_wasm_callout_posted(ngx_event_t *ev);
static void ngx_proxy_wasm_callout_timeout(ngx_event_t *ev);
static void ngx_proxy_wasm_callout_hold(ngx_event_t *ev);
static void ngx_proxy_wasm_callout_free(ngx_proxy_wasm_callout_t *call);
static void ngx_proxy_wasm_conn_close(ngx_connection_t *c);
static void ngx_proxy_wasm_conn_keep(ngx_proxy_wasm_callout_t *call);
static void ngx_proxy_wasm_idle_handler(ngx_event_t *ev);
static void ngx_proxy_wasm_idle_close(ngx_proxy_wasm_conn_t *k);


/* ---------------------------------------------------- configuration */


/* From ngx_proxy_wasm_conf_init: the directives not set. */
void
ngx_proxy_wasm_callout_conf_init(ngx_proxy_wasm_conf_t *wc)
{
    ngx_proxy_wasm_callout_conf_t  *cc = &wc->callout;

    cc->connect_timeout = NGX_CONF_UNSET_MSEC;
    cc->header_max = NGX_CONF_UNSET_SIZE;
    cc->body_max = NGX_CONF_UNSET_SIZE;
    cc->keepalive = NGX_CONF_UNSET_UINT;
    cc->keepalive_timeout = NGX_CONF_UNSET_MSEC;
    cc->ssl_verify = NGX_CONF_UNSET;
    cc->ssl_server_name = NGX_CONF_UNSET;
}


/* At the end of http{} (http 1) or stream{} (0): the targets, the
 * defaults, the TLS client context (its CA file is read now: `nginx -t`
 * reports a bad one). */
ngx_int_t
ngx_proxy_wasm_callout_init_conf(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc,
    ngx_uint_t http)
{
    ngx_ssl_t                      *ssl;
    ngx_pool_cleanup_t             *cln;
    ngx_proxy_wasm_callout_conf_t  *cc = &wc->callout;

    if (ngx_proxy_wasm_targets_init(cf, wc, http) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_conf_init_msec_value(cc->connect_timeout, 5000);
    ngx_conf_init_size_value(cc->header_max, 16384);
    ngx_conf_init_size_value(cc->body_max, 1024 * 1024);
    ngx_conf_init_uint_value(cc->keepalive, 64);
    ngx_conf_init_msec_value(cc->keepalive_timeout, 60000);
    ngx_conf_init_value(cc->ssl_verify, 1);
    ngx_conf_init_value(cc->ssl_server_name, 1);

    if (cc->header_max < 256) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_callout_max_response_headers must "
                           "be at least 256 bytes");
        return NGX_ERROR;
    }

    ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (ssl == NULL) {
        return NGX_ERROR;
    }

    ssl->log = cf->log;

    if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ssl;

    if (cc->ssl_verify) {
        if (cc->ssl_trusted.data) {
            if (ngx_ssl_trusted_certificate(cf, ssl, &cc->ssl_trusted, 9)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (SSL_CTX_set_default_verify_paths(ssl->ctx) != 1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "proxy_wasm callouts: cannot load the system's "
                          "trusted certificates");
            return NGX_ERROR;
        }
    }

    cc->ssl = ssl;

    return NGX_OK;
}


static void
ngx_proxy_wasm_callout_ready(ngx_proxy_wasm_callout_conf_t *cc)
{
    if (!cc->ready) {
        ngx_queue_init(&cc->calls);
        ngx_queue_init(&cc->idle);
        cc->ready = 1;
    }
}


/* ------------------------------------------------------------ the hooks */


/* The callout hooks of both modules: HTTP (here) and gRPC
 * (ngx_proxy_wasm_grpc.c); the HTTP client's cancel hands the tokens that
 * are not its own to the gRPC client. */
const pw_host_callout_ops  ngx_proxy_wasm_callout_ops = {
    .http_call = ngx_proxy_wasm_host_http_call,
    .grpc_call = ngx_proxy_wasm_host_grpc_call,
    .grpc_send = ngx_proxy_wasm_host_grpc_send,
    .grpc_close = ngx_proxy_wasm_host_grpc_close,
    .cancel = ngx_proxy_wasm_host_callout_cancel
};


static ngx_int_t
ngx_proxy_wasm_callout_sendable(pw_str s, ngx_uint_t name)
{
    size_t  i;
    u_char  ch;

    if (name && s.len == 0) {
        return 0;
    }

    for (i = 0; i < s.len; i++) {
        ch = (u_char) s.data[i];

        if (ch == CR || ch == LF || ch == '\0'
            || (name && (ch == ':' || ch <= ' ' || ch == 0x7f)))
        {
            return 0;
        }
    }

    return 1;
}


/* Headers the client writes itself, or that make no sense to forward. */
static ngx_int_t
ngx_proxy_wasm_callout_dropped(pw_str key)
{
    return ngx_proxy_wasm_key_is(key, (u_char *) "host", 4)
           || ngx_proxy_wasm_key_is(key, (u_char *) "connection", 10)
           || ngx_proxy_wasm_key_is(key, (u_char *) "keep-alive", 10)
           || ngx_proxy_wasm_key_is(key, (u_char *) "transfer-encoding", 17)
           || ngx_proxy_wasm_key_is(key, (u_char *) "content-length", 14);
}


/* The request bytes of `hc` into call->request; NGX_DECLINED: a header
 * that cannot be sent (CR, LF, NUL, a bad name). */
static ngx_int_t
ngx_proxy_wasm_callout_request(ngx_proxy_wasm_callout_t *call,
    const pw_http_callout *hc)
{
    size_t      len;
    u_char     *p;
    ngx_uint_t  i, chunked;

    chunked = hc->ntrailers > 0;

    if (!ngx_proxy_wasm_callout_sendable(hc->method, 1)
        || !ngx_proxy_wasm_callout_sendable(hc->path, 0)
        || hc->path.len == 0
        || !ngx_proxy_wasm_callout_sendable(hc->authority, 0))
    {
        return NGX_DECLINED;
    }

    len = hc->method.len + 1 + hc->path.len + sizeof(" HTTP/1.1" CRLF) - 1
          + sizeof("Host: " CRLF) - 1 + hc->authority.len
          + sizeof("Connection: close" CRLF) - 1
          + sizeof("Content-Length: " CRLF) - 1 + NGX_OFF_T_LEN
          + sizeof("Transfer-Encoding: chunked" CRLF) - 1
          + 2 + hc->body.len
          + NGX_OFF_T_LEN + 2 + 2 + 3 + 2;   /* chunk size, CRLFs, "0" */

    for (i = 0; i < hc->nheaders; i++) {
        if (hc->headers[i].key.len && hc->headers[i].key.data[0] == ':') {
            continue;
        }

        if (!ngx_proxy_wasm_callout_sendable(hc->headers[i].key, 1)
            || !ngx_proxy_wasm_callout_sendable(hc->headers[i].value, 0))
        {
            return NGX_DECLINED;
        }

        len += hc->headers[i].key.len + 2 + hc->headers[i].value.len + 2;
    }

    for (i = 0; i < hc->ntrailers; i++) {
        if (!ngx_proxy_wasm_callout_sendable(hc->trailers[i].key, 1)
            || !ngx_proxy_wasm_callout_sendable(hc->trailers[i].value, 0))
        {
            return NGX_DECLINED;
        }

        len += hc->trailers[i].key.len + 2 + hc->trailers[i].value.len + 2;
    }

    p = ngx_pnalloc(call->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    call->request.start = p;
    call->request.pos = p;

    p = ngx_sprintf(p, "%*s %*s HTTP/1.1" CRLF "Host: %*s" CRLF,
                    hc->method.len, hc->method.data,
                    hc->path.len, hc->path.data,
                    hc->authority.len, hc->authority.data);

    for (i = 0; i < hc->nheaders; i++) {
        if ((hc->headers[i].key.len && hc->headers[i].key.data[0] == ':')
            || ngx_proxy_wasm_callout_dropped(hc->headers[i].key))
        {
            continue;
        }

        p = ngx_sprintf(p, "%*s: %*s" CRLF,
                        hc->headers[i].key.len, hc->headers[i].key.data,
                        hc->headers[i].value.len, hc->headers[i].value.data);
    }

    if (call->cc->keepalive == 0) {
        p = ngx_cpymem(p, "Connection: close" CRLF,
                       sizeof("Connection: close" CRLF) - 1);
    }

    if (chunked) {
        p = ngx_cpymem(p, "Transfer-Encoding: chunked" CRLF CRLF,
                       sizeof("Transfer-Encoding: chunked" CRLF CRLF) - 1);

        if (hc->body.len) {
            p = ngx_sprintf(p, "%xz" CRLF, hc->body.len);
            p = ngx_cpymem(p, hc->body.data, hc->body.len);
            *p++ = CR; *p++ = LF;
        }

        *p++ = '0'; *p++ = CR; *p++ = LF;

        for (i = 0; i < hc->ntrailers; i++) {
            p = ngx_sprintf(p, "%*s: %*s" CRLF,
                            hc->trailers[i].key.len, hc->trailers[i].key.data,
                            hc->trailers[i].value.len,
                            hc->trailers[i].value.data);
        }

        *p++ = CR; *p++ = LF;

    } else {
        if (hc->body.len) {
            p = ngx_sprintf(p, "Content-Length: %uz" CRLF, hc->body.len);
        }

        *p++ = CR; *p++ = LF;
        p = ngx_cpymem(p, hc->body.data, hc->body.len);
    }

    call->request.last = p;
    call->request.end = p;
    call->request.temporary = 1;

    return NGX_OK;
}


/* The host of an authority: without the port, without IPv6 brackets. */
static ngx_int_t
ngx_proxy_wasm_callout_host(ngx_proxy_wasm_callout_t *call, pw_str a)
{
    size_t   len;
    u_char  *colon;

    len = a.len;

    if (len && a.data[0] == '[') {
        colon = ngx_strlchr((u_char *) a.data, (u_char *) a.data + len, ']');
        len = colon ? (size_t) (colon - (u_char *) a.data) - 1 : 0;
        a.data++;

    } else {
        colon = ngx_strlchr((u_char *) a.data, (u_char *) a.data + len, ':');
        if (colon) {
            len = colon - (u_char *) a.data;
        }
    }

    return ngx_proxy_wasm_pstr(call->pool, &call->sni, (u_char *) a.data,
                               len);
}


/*
 * pw_host_callout_ops.http_call: host is the VM owner module. Returns
 * PROXY_RESULT_OK (the answer comes later), PROXY_RESULT_BAD_ARGUMENT (the
 * target is unknown or not allowed, the scheme is neither http nor https,
 * a header cannot be sent; logged at warn) or
 * PROXY_RESULT_INTERNAL_FAILURE (no memory).
 */
proxy_status_t
ngx_proxy_wasm_host_http_call(void *host, pw_plugin *plugin, uint32_t token,
    const pw_http_callout *hc)
{
    ngx_int_t                       rc;
    ngx_log_t                      *log;
    ngx_pool_t                     *pool;
    const char                     *name;
    ngx_proxy_wasm_mod_t           *mod = host;
    ngx_proxy_wasm_target_t        *target;
    ngx_proxy_wasm_callout_t       *call;
    ngx_proxy_wasm_callout_conf_t  *cc;

    cc = &mod->conf->callout;
    log = mod->log ? mod->log : ngx_cycle->log;
    name = pw_plugin_name(plugin);

    if (!mod->conf->running) {
        return PROXY_RESULT_INTERNAL_FAILURE;   /* the master's canary */
    }

    ngx_proxy_wasm_callout_ready(cc);

    if (ngx_proxy_wasm_target_find(mod, name, hc->upstream, &target, log)
        != NGX_OK)
    {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    if (hc->scheme.len
        && !ngx_proxy_wasm_key_is(hc->scheme, (u_char *) "http", 4)
        && !ngx_proxy_wasm_key_is(hc->scheme, (u_char *) "https", 5))
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "proxy_wasm \"%s\": callout refused: :scheme \"%*s\" "
                      "is neither http nor https", name, hc->scheme.len,
                      hc->scheme.data);
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    call = ngx_pcalloc(pool, sizeof(ngx_proxy_wasm_callout_t));
    if (call == NULL) {
        ngx_destroy_pool(pool);
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    call->pool = pool;
    call->mod = mod;
    call->cc = cc;
    call->log = log;
    call->token = token;
    call->plugin = name;
    call->target = target;
    call->ssl = hc->scheme.len == 5;
    call->no_body = ngx_proxy_wasm_key_is(hc->method, (u_char *) "HEAD", 4);

    rc = ngx_proxy_wasm_callout_request(call, hc);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "proxy_wasm \"%s\": callout refused: a header or "
                      "pseudo-header has a character HTTP/1.1 cannot carry",
                      name);
        ngx_destroy_pool(pool);
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    if (rc != NGX_OK
        || ngx_proxy_wasm_callout_host(call, hc->authority) != NGX_OK
        || ngx_array_init(&call->headers, pool, 8, sizeof(pw_kv)) != NGX_OK
        || ngx_array_init(&call->trailers, pool, 2, sizeof(pw_kv)) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    call->peer = ngx_proxy_wasm_peer_create(target, pool, log);
    if (call->peer == NULL) {
        ngx_destroy_pool(pool);
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    call->timer.handler = ngx_proxy_wasm_callout_timeout;
    call->timer.data = call;
    call->timer.log = log;
    call->post.handler = ngx_proxy_wasm_callout_posted;
    call->post.data = call;
    call->post.log = log;

    ngx_queue_insert_tail(&cc->calls, &call->queue);

    if (hc->timeout_ms) {
        ngx_add_timer(&call->timer, (ngx_msec_t) hc->timeout_ms);

    } else {
        /* No timeout: a timer all the same, which only re-arms itself. A
         * graceful shutdown (reload, nginx -s quit) ends a worker once it
         * has no timers but cancelable ones, aborting its connections; the
         * call's connection has none while it waits for the answer, so
         * without this the request paused for it would be dropped. */
        call->timer.handler = ngx_proxy_wasm_callout_hold;
        ngx_add_timer(&call->timer, NGX_PROXY_WASM_CALLOUT_HOLD);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, log, 0,
                   "proxy_wasm \"%s\": callout %uD to \"%V\", timeout %uD ms",
                   name, token, ngx_proxy_wasm_target_name(target),
                   hc->timeout_ms);

    /* resolving (literal hostnames) and connecting start at once: no VM
     * call here; a failure of either is posted (reason set) */
    rc = ngx_proxy_wasm_peer_resolve(call->peer,
                                     ngx_proxy_wasm_callout_resolved, call);

    if (rc == NGX_OK) {
        ngx_proxy_wasm_callout_connect(call);

    } else if (rc == NGX_ERROR) {
        ngx_proxy_wasm_callout_fail(call, "resolver error");
    }

    return PROXY_RESULT_OK;
}


/* pw_host_callout_ops.cancel: abandons call `token` of VM owner `host`,
 * without an answer. */
void
ngx_proxy_wasm_host_callout_cancel(void *host, uint32_t token)
{
    ngx_queue_t                    *q;
    ngx_proxy_wasm_mod_t           *mod = host;
    ngx_proxy_wasm_callout_t       *call;
    ngx_proxy_wasm_callout_conf_t  *cc;

    cc = &mod->conf->callout;

    if (cc->ready) {
        for (q = ngx_queue_head(&cc->calls);
             q != ngx_queue_sentinel(&cc->calls);
             q = ngx_queue_next(q))
        {
            call = ngx_queue_data(q, ngx_proxy_wasm_callout_t, queue);

            if (call->mod == mod && call->token == token) {
                ngx_log_debug2(NGX_LOG_DEBUG_EVENT, call->log, 0,
                               "proxy_wasm \"%s\": callout %uD cancelled",
                               call->plugin, token);
                ngx_proxy_wasm_callout_free(call);
                return;
            }
        }
    }

    /* not an HTTP call: a gRPC call's (ngx_proxy_wasm_grpc.c) */
    (void) ngx_proxy_wasm_grpc_cancel(host, token);
}


/* At worker exit, after the VMs were freed (which cancelled their calls):
 * whatever is left, and the idle connections. */
void
ngx_proxy_wasm_callout_exit_process(ngx_proxy_wasm_conf_t *wc)
{
    ngx_queue_t                    *q;
    ngx_proxy_wasm_callout_conf_t  *cc = &wc->callout;

    if (!cc->ready) {
        return;
    }

    while (!ngx_queue_empty(&cc->calls)) {
        q = ngx_queue_head(&cc->calls);
        ngx_proxy_wasm_callout_free(ngx_queue_data(q, ngx_proxy_wasm_callout_t,
                                                   queue));
    }

    while (!ngx_queue_empty(&cc->idle)) {
        q = ngx_queue_head(&cc->idle);
        ngx_proxy_wasm_idle_close(ngx_queue_data(q, ngx_proxy_wasm_conn_t,
                                                 queue));
    }
}


/* ------------------------------------------------------------ connect */


static void
ngx_proxy_wasm_callout_resolved(void *data, ngx_int_t rc)
{
    ngx_proxy_wasm_callout_t  *call = data;

    if (rc != NGX_OK) {
        ngx_proxy_wasm_callout_finish(call, "resolver error");
        return;
    }

    ngx_proxy_wasm_callout_connect(call);
}


/* A kept connection to the peer just chosen (same TLS name), taken out of
 * the idle list; or NULL. */
static ngx_proxy_wasm_conn_t *
ngx_proxy_wasm_idle_find(ngx_proxy_wasm_callout_t *call)
{
    ngx_queue_t                    *q;
    ngx_proxy_wasm_conn_t          *k;
    ngx_proxy_wasm_callout_conf_t  *cc = call->cc;

    for (q = ngx_queue_last(&cc->idle);
         q != ngx_queue_sentinel(&cc->idle);
         q = ngx_queue_prev(q))
    {
        k = ngx_queue_data(q, ngx_proxy_wasm_conn_t, queue);

        if (k->ssl == call->ssl
            && ngx_cmp_sockaddr(k->sockaddr, k->socklen, call->pc.sockaddr,
                                call->pc.socklen, 1) == NGX_OK
            && (!call->ssl
                || (k->sni.len == call->sni.len
                    && ngx_strncmp(k->sni.data, call->sni.data,
                                   k->sni.len) == 0)))
        {
            ngx_queue_remove(q);
            cc->nidle--;
            return k;
        }
    }

    return NULL;
}


/* pc->get: the target's next peer, then a kept connection to it if one
 * waits (NGX_DONE: pc->connection is that one). */
static ngx_int_t
ngx_proxy_wasm_callout_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_proxy_wasm_callout_t  *call = data;

    ngx_int_t               rc;
    ngx_connection_t       *c;
    ngx_proxy_wasm_conn_t  *k;

    rc = call->peer_get(pc, call->peer_data);
    if (rc != NGX_OK) {
        return rc;
    }

    k = ngx_proxy_wasm_idle_find(call);
    if (k == NULL) {
        return NGX_OK;
    }

    c = k->c;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    c->idle = 0;
    c->read->cancelable = 0;
    c->log = call->log;
    c->read->log = call->log;
    c->write->log = call->log;
    c->pool->log = call->log;

    pc->connection = c;
    pc->cached = 1;
    call->conn = k;

    return NGX_DONE;
}


static void
ngx_proxy_wasm_callout_put(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_proxy_wasm_callout_t  *call = data;

    call->peer_free(pc, call->peer_data, state);
}


/* Connects to the next peer (or takes a kept connection), then sends. */
static void
ngx_proxy_wasm_callout_connect(ngx_proxy_wasm_callout_t *call)
{
    ngx_int_t               rc;
    ngx_connection_t       *c;
    ngx_peer_connection_t  *pc;
    ngx_proxy_wasm_conn_t  *k;

    pc = &call->pc;

    if (call->peer_get == NULL) {
        ngx_proxy_wasm_peer_init(call->peer, pc);
        call->peer_get = pc->get;
        call->peer_free = pc->free;
        call->peer_data = pc->data;
        pc->get = ngx_proxy_wasm_callout_get;
        pc->free = ngx_proxy_wasm_callout_put;
        pc->data = call;
        pc->log = call->log;
        pc->log_error = NGX_ERROR_ERR;
    }

    for ( ;; ) {
        call->conn = NULL;
        pc->cached = 0;

        rc = ngx_event_connect_peer(pc);

        if (rc == NGX_BUSY || rc == NGX_ERROR) {
            ngx_proxy_wasm_callout_fail(call, rc == NGX_BUSY
                                              ? "no live upstreams"
                                              : "connect error");
            return;
        }

        if (rc != NGX_DECLINED) {
            break;
        }

        /* that peer refused at once: the next one, if any */
        pc->free(pc, pc->data, NGX_PEER_FAILED);
        pc->connection = NULL;

        if (pc->tries == 0) {
            ngx_proxy_wasm_callout_fail(call, "connect error");
            return;
        }
    }

    c = pc->connection;
    c->data = call;
    c->read->handler = ngx_proxy_wasm_callout_handler;
    c->write->handler = ngx_proxy_wasm_callout_handler;

    call->reused = (rc == NGX_DONE);
    call->request.pos = call->request.start;

    if (!call->reused) {
        /* a new connection: its own pool and record, which outlive the
         * call when it is kept */
        c->pool = ngx_create_pool(512, call->log);
        if (c->pool == NULL) {
            ngx_proxy_wasm_callout_fail(call, "no memory");
            return;
        }

        k = ngx_pcalloc(c->pool, sizeof(ngx_proxy_wasm_conn_t));
        if (k == NULL) {
            ngx_proxy_wasm_callout_fail(call, "no memory");
            return;
        }

        k->c = c;
        k->cc = call->cc;
        k->ssl = call->ssl;
        k->socklen = pc->socklen;
        k->sockaddr = ngx_palloc(c->pool, pc->socklen);
        if (k->sockaddr == NULL
            || (call->ssl
                && ngx_proxy_wasm_pstr(c->pool, &k->sni, call->sni.data,
                                       call->sni.len)
                   != NGX_OK))
        {
            ngx_proxy_wasm_callout_fail(call, "no memory");
            return;
        }

        ngx_memcpy(k->sockaddr, pc->sockaddr, pc->socklen);
        call->conn = k;
    }

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, call->cc->connect_timeout);
        return;
    }

    if (call->ssl && c->ssl == NULL) {
        ngx_proxy_wasm_callout_ssl_init(call);
        return;
    }

    ngx_proxy_wasm_callout_send(call);
}


/* After a failure on the connection: the next peer when nothing of the
 * answer was read and the connection was new and tries are left, or a
 * new connection when a kept one turned out closed; else the failure. */
static void
ngx_proxy_wasm_callout_retry(ngx_proxy_wasm_callout_t *call,
    const char *reason, ngx_uint_t peer_failed)
{
    ngx_uint_t              tries;
    ngx_peer_connection_t  *pc = &call->pc;

    if (call->read_any || pc->connection == NULL) {
        ngx_proxy_wasm_callout_fail(call, reason);
        return;
    }

    ngx_proxy_wasm_conn_close(pc->connection);
    pc->connection = NULL;
    call->conn = NULL;

    if (call->reused) {
        /* the server closed a kept connection: not the peer's fault, and
         * not a try (restored: nginx's round robin sets tries to 0 when
         * an upstream{} block has a single server) */
        tries = pc->tries;
        pc->free(pc, pc->data, 0);
        pc->tries = tries;

    } else {
        pc->free(pc, pc->data, peer_failed ? NGX_PEER_FAILED : 0);
    }

    if (pc->tries == 0) {
        ngx_proxy_wasm_callout_fail(call, reason);
        return;
    }

    ngx_proxy_wasm_callout_connect(call);
}


static void
ngx_proxy_wasm_callout_handler(ngx_event_t *ev)
{
    ngx_connection_t          *c;
    ngx_proxy_wasm_callout_t  *call;

    c = ev->data;
    call = c->data;

    if (ev->timedout) {
        /* only connecting has a timer on the connection */
        ngx_log_error(NGX_LOG_WARN, call->log, NGX_ETIMEDOUT,
                      "proxy_wasm \"%s\": callout %uD: connecting to %V "
                      "timed out", call->plugin, call->token,
                      call->pc.name);
        ngx_proxy_wasm_callout_retry(call, "connect timeout", 1);
        return;
    }

    if (ev->write) {
        if (ev->timer_set) {
            ngx_del_timer(ev);      /* connected */
        }

        if (call->ssl && c->ssl == NULL) {
            ngx_proxy_wasm_callout_ssl_init(call);
            return;
        }

        if (call->request.pos < call->request.last) {
            ngx_proxy_wasm_callout_send(call);
        }

        return;
    }

    ngx_proxy_wasm_callout_recv(call);
}


/* ---------------------------------------------------------------- TLS */


static void
ngx_proxy_wasm_callout_ssl_init(ngx_proxy_wasm_callout_t *call)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = call->pc.connection;

    if (ngx_ssl_create_connection(call->cc->ssl, c,
                                  NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_proxy_wasm_callout_fail(call, "TLS failure");
        return;
    }

    if (call->cc->ssl_server_name && call->sni.len
        && ngx_inet_addr(call->sni.data, call->sni.len) == INADDR_NONE
        && call->sni.data[0] != '[' && ngx_strlchr(call->sni.data,
                                                  call->sni.data
                                                  + call->sni.len, ':')
                                       == NULL)
    {
        /* a name, not an address (RFC 6066 3) */
        if (SSL_set_tlsext_host_name(c->ssl->connection,
                                     (char *) call->sni.data)
            != 1)
        {
            ngx_ssl_error(NGX_LOG_ERR, call->log, 0,
                          "SSL_set_tlsext_host_name(\"%V\") failed",
                          &call->sni);
            ngx_proxy_wasm_callout_fail(call, "TLS failure");
            return;
        }
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write, call->cc->connect_timeout);
        }

        c->ssl->handler = ngx_proxy_wasm_callout_ssl_done;
        return;
    }

    ngx_proxy_wasm_callout_ssl_done(c);
}


static void
ngx_proxy_wasm_callout_ssl_done(ngx_connection_t *c)
{
    long                       rc;
    ngx_proxy_wasm_callout_t  *call;

    call = c->data;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->read->handler = ngx_proxy_wasm_callout_handler;
    c->write->handler = ngx_proxy_wasm_callout_handler;

    if (!c->ssl->handshaked) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "proxy_wasm \"%s\": callout %uD: TLS handshake with "
                      "%V failed", call->plugin, call->token, call->pc.name);
        ngx_proxy_wasm_callout_fail(call, "TLS handshake failed");
        return;
    }

    if (call->cc->ssl_verify) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_log_error(NGX_LOG_WARN, call->log, 0,
                          "proxy_wasm \"%s\": callout %uD: certificate of "
                          "%V not trusted: (%l:%s)", call->plugin,
                          call->token, call->pc.name, rc,
                          X509_verify_cert_error_string(rc));
            ngx_proxy_wasm_callout_fail(call, "TLS certificate not trusted");
            return;
        }

        if (ngx_ssl_check_host(c, &call->sni) != NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, call->log, 0,
                          "proxy_wasm \"%s\": callout %uD: certificate of "
                          "%V is not for \"%V\"", call->plugin, call->token,
                          call->pc.name, &call->sni);
            ngx_proxy_wasm_callout_fail(call, "TLS certificate not trusted");
            return;
        }
    }

    ngx_proxy_wasm_callout_send(call);
}


/* ------------------------------------------------------------- the I/O */


static void
ngx_proxy_wasm_callout_send(ngx_proxy_wasm_callout_t *call)
{
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = call->pc.connection;
    b = &call->request;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_proxy_wasm_callout_fail(call, "connection error");
            }
            return;
        }

        if (n == NGX_ERROR) {
            /* nothing sent on a new connection: it never connected */
            ngx_proxy_wasm_callout_retry(call,
                                         b->pos == b->start && !call->reused
                                         ? "connect error"
                                         : "connection reset", 1);
            return;
        }

        b->pos += n;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_proxy_wasm_callout_fail(call, "connection error");
        return;
    }

    /* never read here: this may run inside the hook, and a complete
     * answer must be delivered from the event loop */
    if (c->read->ready && !c->read->posted) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static ngx_int_t
ngx_proxy_wasm_callout_body_add(ngx_proxy_wasm_callout_t *call, u_char *p,
    size_t n)
{
    size_t   cap;
    u_char  *nb;

    if (n == 0) {
        return NGX_OK;
    }

    if (call->body_len + n > call->cc->body_max) {
        return NGX_DECLINED;
    }

    if (call->body_len + n > call->body_cap) {
        cap = ngx_max(call->body_cap * 2, call->body_len + n);
        cap = ngx_max(cap, 4096);
        cap = ngx_min(cap, call->cc->body_max);

        nb = ngx_pnalloc(call->pool, cap);
        if (nb == NULL) {
            return NGX_ERROR;
        }

        if (call->body_len) {
            ngx_memcpy(nb, call->body, call->body_len);
        }

        call->body = nb;
        call->body_cap = cap;
    }

    ngx_memcpy(call->body + call->body_len, p, n);
    call->body_len += n;

    return NGX_OK;
}


/* One header line just parsed into `to`: name lower-cased, copied. */
static ngx_int_t
ngx_proxy_wasm_callout_header(ngx_proxy_wasm_callout_t *call,
    ngx_array_t *to)
{
    pw_kv               *kv;
    u_char              *k, *v;
    size_t               klen, vlen;
    ngx_http_request_t  *r = &call->r;

    klen = r->header_name_end - r->header_name_start;
    vlen = r->header_end - r->header_start;

    k = ngx_pnalloc(call->pool, klen + vlen);
    kv = ngx_array_push(to);
    if (k == NULL || kv == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(k, r->header_name_start, klen);
    v = k + klen;
    ngx_memcpy(v, r->header_start, vlen);

    kv->key.data = (const char *) k;
    kv->key.len = klen;
    kv->value.data = (const char *) v;
    kv->value.len = vlen;

    return NGX_OK;
}


/* The framing the headers say: Content-Length, chunked, Connection. */
static ngx_int_t
ngx_proxy_wasm_callout_framing(ngx_proxy_wasm_callout_t *call)
{
    ngx_str_t    v;
    ngx_uint_t   i, n;
    pw_kv       *h;
    off_t        len;

    h = call->headers.elts;
    n = call->headers.nelts;
    len = -1;

    call->keepalive = call->status.http_version >= NGX_HTTP_VERSION_11;

    for (i = 1; i < n; i++) {
        v.data = (u_char *) h[i].value.data;
        v.len = h[i].value.len;

        if (ngx_proxy_wasm_key_is(h[i].key, (u_char *) "content-length", 14)) {
            len = ngx_atoof(v.data, v.len);
            if (len == NGX_ERROR) {
                return NGX_ERROR;
            }

        } else if (ngx_proxy_wasm_key_is(h[i].key,
                                         (u_char *) "transfer-encoding", 17))
        {
            if (v.len == 7 && ngx_strncasecmp(v.data, (u_char *) "chunked", 7)
                              == 0)
            {
                call->chunked_body = 1;

            } else {
                return NGX_ERROR;   /* nothing else is defined */
            }

        } else if (ngx_proxy_wasm_key_is(h[i].key,
                                         (u_char *) "connection", 10))
        {
            if (ngx_strlcasestrn(v.data, v.data + v.len,
                                 (u_char *) "close", 5 - 1))
            {
                call->keepalive = 0;

            } else if (ngx_strlcasestrn(v.data, v.data + v.len,
                                        (u_char *) "keep-alive", 10 - 1))
            {
                call->keepalive = 1;
            }
        }
    }

    if (call->cc->keepalive == 0) {
        call->keepalive = 0;
    }

    if (call->no_body || call->status.code == 204
        || call->status.code == 304)
    {
        call->state = NGX_PROXY_WASM_CALLOUT_DONE;
        return NGX_OK;
    }

    if (call->chunked_body) {
        call->state = NGX_PROXY_WASM_CALLOUT_CHUNKED;
        return NGX_OK;
    }

    if (len >= 0) {
        if ((size_t) len > call->cc->body_max) {
            return NGX_DECLINED;
        }

        call->rest = len;
        call->state = len ? NGX_PROXY_WASM_CALLOUT_BODY
                          : NGX_PROXY_WASM_CALLOUT_DONE;
        return NGX_OK;
    }

    call->rest = -1;            /* until the close */
    call->keepalive = 0;
    call->state = NGX_PROXY_WASM_CALLOUT_BODY;

    return NGX_OK;
}


/*
 * Parses what `in` holds. NGX_AGAIN: more is needed; NGX_OK: the response
 * is complete; NGX_ERROR: malformed (parse error); NGX_DECLINED: over a
 * limit (too large); NGX_ABORT: no memory.
 */
static ngx_int_t
ngx_proxy_wasm_callout_parse(ngx_proxy_wasm_callout_t *call)
{
    size_t      n;
    u_char     *p;
    pw_kv      *kv;
    ngx_int_t   rc;
    ngx_buf_t  *b, one;

    b = call->in;

    for ( ;; ) {
        switch (call->state) {

        case NGX_PROXY_WASM_CALLOUT_STATUS:
            rc = ngx_http_parse_status_line(&call->r, b, &call->status);

            if (rc == NGX_AGAIN) {
                return NGX_AGAIN;
            }

            if (rc != NGX_OK) {
                return NGX_ERROR;
            }

            if (call->status.code < 200) {
                return NGX_ERROR;   /* 1xx: no Expect was sent */
            }

            p = ngx_pnalloc(call->pool, NGX_INT_T_LEN);
            kv = ngx_array_push(&call->headers);
            if (p == NULL || kv == NULL) {
                return NGX_ABORT;
            }

            kv->key.data = ":status";
            kv->key.len = 7;
            kv->value.data = (const char *) p;
            kv->value.len = ngx_sprintf(p, "%ui", call->status.code) - p;

            call->r.state = 0;
            call->state = NGX_PROXY_WASM_CALLOUT_HEADERS;
            break;

        case NGX_PROXY_WASM_CALLOUT_HEADERS:
        case NGX_PROXY_WASM_CALLOUT_TRAILERS:
            rc = ngx_http_parse_header_line(&call->r, b, 1);

            if (rc == NGX_OK) {
                if (ngx_proxy_wasm_callout_header(call,
                        call->state == NGX_PROXY_WASM_CALLOUT_HEADERS
                        ? &call->headers : &call->trailers)
                    != NGX_OK)
                {
                    return NGX_ABORT;
                }

                break;
            }

            if (rc == NGX_AGAIN) {
                return NGX_AGAIN;
            }

            if (rc != NGX_HTTP_PARSE_HEADER_DONE) {
                return NGX_ERROR;
            }

            if (call->state == NGX_PROXY_WASM_CALLOUT_TRAILERS) {
                call->state = NGX_PROXY_WASM_CALLOUT_DONE;
                break;
            }

            rc = ngx_proxy_wasm_callout_framing(call);
            if (rc != NGX_OK) {
                return rc;
            }

            break;

        case NGX_PROXY_WASM_CALLOUT_BODY:
            n = b->last - b->pos;

            if (call->rest >= 0 && (off_t) n > call->rest) {
                n = call->rest;
            }

            rc = ngx_proxy_wasm_callout_body_add(call, b->pos, n);
            if (rc != NGX_OK) {
                return rc == NGX_DECLINED ? NGX_DECLINED : NGX_ABORT;
            }

            b->pos += n;

            if (call->rest >= 0) {
                call->rest -= n;

                if (call->rest == 0) {
                    call->state = NGX_PROXY_WASM_CALLOUT_DONE;
                    break;
                }
            }

            return NGX_AGAIN;

        case NGX_PROXY_WASM_CALLOUT_CHUNKED:
            if (b->pos == b->last) {
                return NGX_AGAIN;
            }

            if (call->in_chunk) {
                /* inside a chunk's data (ngx_http_parse_chunked said so) */
                n = ngx_min((off_t) (b->last - b->pos), call->chunked.size);

                rc = ngx_proxy_wasm_callout_body_add(call, b->pos, n);
                if (rc != NGX_OK) {
                    return rc == NGX_DECLINED ? NGX_DECLINED : NGX_ABORT;
                }

                b->pos += n;
                call->chunked.size -= n;
                call->in_chunk = call->chunked.size > 0;
                break;
            }

            /*
             * Outside data, one byte at a time: nginx 1.22's parser skips
             * the trailer section, so the last chunk's CRLF is noticed as
             * it is passed (the parser's state becomes sw_trailer) and the
             * trailers are then parsed as header lines.
             */
            one = *b;
            one.last = one.pos + 1;

#if (nginx_version >= 1027002)
            /* 1.27.2 added keep_trailers; 0 keeps the 1.22 behaviour */
            rc = ngx_http_parse_chunked(&call->r, &one, &call->chunked, 0);
#else
            rc = ngx_http_parse_chunked(&call->r, &one, &call->chunked);
#endif

            if (rc == NGX_OK) {
                if (call->chunked.size == 0) {
                    return NGX_ERROR;
                }

                call->in_chunk = 1;
                break;          /* data: ctx->size bytes from b->pos */
            }

            if (rc == NGX_AGAIN) {
                b->pos = one.pos;

                if (call->chunked.state == NGX_PROXY_WASM_CHUNKED_TRAILER) {
                    call->r.state = 0;
                    call->state = NGX_PROXY_WASM_CALLOUT_TRAILERS;
                }

                break;
            }

            if (rc == NGX_DONE) {
                b->pos = one.pos;
                call->state = NGX_PROXY_WASM_CALLOUT_DONE;
                break;
            }

            return NGX_ERROR;

        default: /* NGX_PROXY_WASM_CALLOUT_DONE */
            return NGX_OK;
        }
    }
}


/*
 * Makes room at the end of `in`. The status line and the headers stay
 * where they were read (the buffer, proxy_wasm_callout_max_response_headers
 * bytes, is their limit): while a line is incomplete the parsers keep
 * pointers into it (ngx_http_parse_header_line's header_name_start ...,
 * ngx_http_status_t's start), and a read that ends inside a line leaves
 * nothing unparsed, so the buffer must not start over then. In a body,
 * what is not parsed yet moves to the start; a trailer line in progress
 * moves with the parser's pointers.
 */
static void
ngx_proxy_wasm_callout_compact(ngx_proxy_wasm_callout_t *call)
{
    size_t               n;
    u_char              *from;
    ngx_buf_t           *b = call->in;
    ngx_http_request_t  *r = &call->r;

    if (call->state < NGX_PROXY_WASM_CALLOUT_BODY) {
        return;
    }

    if (call->state == NGX_PROXY_WASM_CALLOUT_TRAILERS && r->state != 0) {
        if (b->last < b->end) {
            return;
        }

        /* the line started at header_name_start (sw_start sets it) */
        from = r->header_name_start;
        n = from - b->start;

        if (n == 0) {
            return;         /* one line fills the buffer: too large */
        }

        ngx_memmove(b->start, from, b->last - from);
        b->pos -= n;
        b->last -= n;
        r->header_name_start -= n;
        r->header_name_end -= n;
        r->header_start -= n;
        r->header_end -= n;
        return;
    }

    if (b->pos == b->last) {
        b->pos = b->start;
        b->last = b->start;
        return;
    }

    if (b->last < b->end) {
        return;
    }

    n = b->last - b->pos;
    ngx_memmove(b->start, b->pos, n);
    b->pos = b->start;
    b->last = b->start + n;
}


static void
ngx_proxy_wasm_callout_recv(ngx_proxy_wasm_callout_t *call)
{
    ssize_t            n;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = call->pc.connection;

    if (call->in == NULL) {
        call->in = ngx_create_temp_buf(call->pool, call->cc->header_max);
        if (call->in == NULL) {
            ngx_proxy_wasm_callout_fail(call, "no memory");
            return;
        }

        call->r.connection = c;
        call->r.pool = call->pool;
    }

    b = call->in;

    for ( ;; ) {
        ngx_proxy_wasm_callout_compact(call);

        if (b->last == b->end) {
            ngx_proxy_wasm_callout_fail(call, "response too large");
            return;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_proxy_wasm_callout_fail(call, "connection error");
            }
            return;
        }

        if (n == NGX_ERROR) {
            ngx_proxy_wasm_callout_retry(call, "connection reset", 0);
            return;
        }

        if (n == 0) {
            if (call->state == NGX_PROXY_WASM_CALLOUT_BODY
                && call->rest == -1)
            {
                call->state = NGX_PROXY_WASM_CALLOUT_DONE;
                call->keepalive = 0;
                ngx_proxy_wasm_callout_finish(call, NULL);
                return;
            }

            ngx_proxy_wasm_callout_retry(call, "connection closed early", 0);
            return;
        }

        call->read_any = 1;
        b->last += n;

        rc = ngx_proxy_wasm_callout_parse(call);

        switch (rc) {

        case NGX_AGAIN:
            continue;

        case NGX_OK:
            if (b->pos != b->last) {
                call->keepalive = 0;    /* more than the answer */
            }

            ngx_proxy_wasm_callout_finish(call, NULL);
            return;

        case NGX_DECLINED:
            ngx_proxy_wasm_callout_fail(call, "response too large");
            return;

        case NGX_ERROR:
            ngx_proxy_wasm_callout_fail(call, "invalid response");
            return;

        default:
            ngx_proxy_wasm_callout_fail(call, "no memory");
            return;
        }
    }
}


/* ------------------------------------------------------------ the end */


/* A failure: delivered now, or from a posted event when the hook is
 * still running (the first connect happens inside it). */
static void
ngx_proxy_wasm_callout_fail(ngx_proxy_wasm_callout_t *call,
    const char *reason)
{
    if (call->pc.connection) {
        ngx_proxy_wasm_conn_close(call->pc.connection);
        call->pc.connection = NULL;
        call->pc.free(&call->pc, call->pc.data, NGX_PEER_FAILED);
    }

    call->reason = reason;

    if (!call->post.posted) {
        ngx_post_event(&call->post, &ngx_posted_events);
    }
}


static void
ngx_proxy_wasm_callout_posted(ngx_event_t *ev)
{
    ngx_proxy_wasm_callout_t  *call = ev->data;

    ngx_proxy_wasm_callout_finish(call, call->reason);
}


static void
ngx_proxy_wasm_callout_timeout(ngx_event_t *ev)
{
    ngx_proxy_wasm_callout_t  *call = ev->data;

    if (call->pc.connection) {
        ngx_proxy_wasm_conn_close(call->pc.connection);
        call->pc.connection = NULL;
        call->pc.free(&call->pc, call->pc.data, 0);
    }

    ngx_proxy_wasm_callout_finish(call, "timeout");
}


static void
ngx_proxy_wasm_callout_hold(ngx_event_t *ev)
{
    ngx_add_timer(ev, NGX_PROXY_WASM_CALLOUT_HOLD);
}


/* Out of the table of calls, with no timer, event or resolution left. */
static void
ngx_proxy_wasm_callout_stop(ngx_proxy_wasm_callout_t *call)
{
    ngx_queue_remove(&call->queue);

    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    if (call->post.posted) {
        ngx_delete_posted_event(&call->post);
    }

    ngx_proxy_wasm_peer_done(call->peer);
}


/* Delivers the answer (reason NULL) or the failure, then frees the call;
 * the connection is kept when the answer allows it. */
static void
ngx_proxy_wasm_callout_finish(ngx_proxy_wasm_callout_t *call,
    const char *reason)
{
    int                    rc;
    pw_str                 why;
    pw_vm                 *vm;
    uint32_t               token;
    pw_http_response       resp;
    ngx_proxy_wasm_mod_t  *mod;

    mod = call->mod;
    vm = mod->vm;
    token = call->token;

    ngx_proxy_wasm_callout_stop(call);

    if (reason == NULL && call->pc.connection) {
        if (call->keepalive) {
            ngx_proxy_wasm_conn_keep(call);

        } else {
            ngx_proxy_wasm_conn_close(call->pc.connection);
        }

        call->pc.connection = NULL;
        call->pc.free(&call->pc, call->pc.data, 0);
    }

    why.data = reason ? reason : "";
    why.len = ngx_strlen(why.data);

    if (reason) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "proxy_wasm \"%s\": callout %uD to \"%V\" failed: %s",
                      call->plugin, token,
                      ngx_proxy_wasm_target_name(call->target), reason);
    }

    if (vm) {
        resp.headers = call->headers.elts;
        resp.nheaders = call->headers.nelts;
        resp.body.data = (const char *) call->body;
        resp.body.len = call->body_len;
        resp.trailers = call->trailers.elts;
        resp.ntrailers = call->trailers.nelts;

        rc = pw_vm_http_call_response(vm, token, reason ? NULL : &resp, why);

        if (rc != PW_OK && rc != PW_ETRAP) {
            ngx_log_error(NGX_LOG_ERR, call->log, 0,
                          "proxy_wasm \"%s\": callout %uD: answer not "
                          "delivered: %s", call->plugin, token,
                          pw_strerror(rc));
        }
    }

    call->pc.connection = NULL;
    ngx_destroy_pool(call->pool);
}


/* Cancel, worker exit: frees the call without an answer, the connection
 * closed (a half-read one is never kept). */
static void
ngx_proxy_wasm_callout_free(ngx_proxy_wasm_callout_t *call)
{
    ngx_proxy_wasm_callout_stop(call);

    if (call->pc.connection) {
        ngx_proxy_wasm_conn_close(call->pc.connection);
        call->pc.connection = NULL;
        call->pc.free(&call->pc, call->pc.data, 0);
    }

    ngx_destroy_pool(call->pool);
}


/* ------------------------------------------------- kept connections */


static void
ngx_proxy_wasm_conn_close(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }

    pool = c->pool;
    ngx_close_connection(c);

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


static void
ngx_proxy_wasm_conn_keep(ngx_proxy_wasm_callout_t *call)
{
    ngx_queue_t                    *q;
    ngx_connection_t               *c;
    ngx_proxy_wasm_conn_t          *k;
    ngx_proxy_wasm_callout_conf_t  *cc = call->cc;

    c = call->pc.connection;
    k = call->conn;

    if (k == NULL || ngx_terminate || ngx_exiting
        || ngx_handle_read_event(c->read, 0) != NGX_OK)
    {
        ngx_proxy_wasm_conn_close(c);
        return;
    }

    if (cc->nidle >= cc->keepalive) {
        q = ngx_queue_head(&cc->idle);      /* the oldest goes */
        ngx_proxy_wasm_idle_close(ngx_queue_data(q, ngx_proxy_wasm_conn_t,
                                                 queue));
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->data = k;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->pool->log = ngx_cycle->log;
    c->read->handler = ngx_proxy_wasm_idle_handler;
    c->write->handler = ngx_proxy_wasm_idle_handler;

    ngx_add_timer(c->read, cc->keepalive_timeout);
    c->read->cancelable = 1;

    ngx_queue_insert_tail(&cc->idle, &k->queue);
    cc->nidle++;
}


/* An idle connection: readable (the server closed it, or sent what no
 * call asked for), timed out, or closed at shutdown (c->close): it goes. */
static void
ngx_proxy_wasm_idle_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c;
    ngx_proxy_wasm_conn_t  *k;

    c = ev->data;
    k = c->data;

    if (ev->write) {
        return;
    }

    ngx_proxy_wasm_idle_close(k);
}


static void
ngx_proxy_wasm_idle_close(ngx_proxy_wasm_conn_t *k)
{
    ngx_queue_remove(&k->queue);
    k->cc->nidle--;
    k->c->read->cancelable = 0;
    ngx_proxy_wasm_conn_close(k->c);
}
