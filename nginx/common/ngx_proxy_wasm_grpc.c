/*
 * ngx_proxy_wasm_grpc.c -- gRPC callouts (proxy_grpc_call, proxy_grpc_stream,
 * proxy_grpc_send, proxy_grpc_close, proxy_grpc_cancel) for any subsystem:
 * an HTTP/2 client made of Debian's libnghttp2 driven by nginx connections.
 *
 * nghttp2 is used as a pure state machine: bytes read from the socket in the
 * connection's read handler go in with nghttp2_session_mem_recv(), and what
 * it has to send comes out of nghttp2_session_mem_send() and is written by
 * ngx_proxy_wasm_grpc_flush() (the rest waits for the write event). No
 * thread, no second event loop.
 *
 * One HTTP/2 connection (prior-knowledge h2c) per target peer per worker,
 * opened on demand and shared by every call to that peer: one HTTP/2 stream
 * per call. An idle connection is closed after a while, or when the worker
 * shuts down.
 *
 * A graceful shutdown (nginx -s quit, reload) lets the unary calls that have
 * a timeout finish (their deadline timer holds the worker, as
 * proxy_read_timeout does for proxied requests); calls without a timeout
 * and streams end with the worker.
 *
 * A call is
 *   HEADERS  :method POST, :scheme http, :path /service/method, :authority
 *            (the target name), te: trailers, content-type:
 *            application/grpc, grpc-timeout (unary with a timeout), the
 *            plugin's initial metadata;
 *   DATA     each message behind its 5-byte prefix (flag 0, length big
 *            endian); END_STREAM after the unary message, or when the
 *            plugin half-closes a stream.
 * The answer is unframed (a message may span DATA frames, a frame may hold
 * several messages; each is limited by proxy_wasm_grpc_max_message_size)
 * and turned into the library's events: the response headers are the
 * initial metadata, each message a PW_GRPC_MESSAGE, the trailers the
 * trailing metadata and grpc-status / grpc-message (percent-decoded) the
 * PW_GRPC_CLOSE. A Trailers-Only answer (one HEADERS frame with
 * END_STREAM) gives trailing metadata and the close only, as Envoy does.
 * Our own failures close with a gRPC status: 14 UNAVAILABLE (connect
 * error, reset, connection lost), 4 DEADLINE_EXCEEDED (the unary timeout,
 * also enforced here with a timer), 8 RESOURCE_EXHAUSTED (a message too
 * large), 13 INTERNAL (protocol errors).
 *
 * Events are never delivered from inside nghttp2 or from inside a host hook
 * (the library forbids calling into the VM from a hook): they are queued on
 * their call and delivered by one posted event, in order. A cancelled call
 * (proxy_grpc_cancel, proxy_grpc_close of a unary call, its context ended,
 * its VM trapped or freed) is reset with RST_STREAM(CANCEL) and never
 * answered again.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <nghttp2/nghttp2.h>

#include "ngx_proxy_wasm.h"


#define NGX_PROXY_WASM_GRPC_IDLE_TIMEOUT  60000
#define NGX_PROXY_WASM_GRPC_READ_SIZE     16384


typedef struct ngx_proxy_wasm_grpc_conn_s  ngx_proxy_wasm_grpc_conn_t;
typedef struct ngx_proxy_wasm_grpc_ev_s    ngx_proxy_wasm_grpc_ev_t;


/* One event waiting for delivery; a message's bytes follow the struct,
 * metadata lives in the call's pool. */
struct ngx_proxy_wasm_grpc_ev_s {
    ngx_proxy_wasm_grpc_ev_t        *next;
    pw_grpc_event                    ev;
};


/* A growable byte buffer (ngx_alloc'ed). */
typedef struct {
    u_char                          *data;
    size_t                           pos;
    size_t                           len;
    size_t                           cap;
} ngx_proxy_wasm_grpc_buf_t;


/* One gRPC call or stream. */
typedef struct {
    ngx_queue_t                      queue;      /* the worker's calls */
    ngx_queue_t                      link;       /* its connection's calls */
    ngx_queue_t                      ready;      /* calls with events */
    ngx_proxy_wasm_mod_t            *mod;        /* the VM's owner */
    uint32_t                         token;
    int32_t                          stream_id;  /* -1: no stream (any more) */
    ngx_proxy_wasm_grpc_conn_t      *conn;       /* NULL: detached */
    ngx_pool_t                      *pool;       /* metadata */
    ngx_log_t                       *log;

    ngx_proxy_wasm_peer_t           *peer;       /* the target's choice */
    ngx_peer_connection_t            pc;         /* the peer taken: given
                                                    back when the call ends */
    nghttp2_nv                      *nva;        /* the request's headers */
    size_t                           nnv;
    ngx_msec_t                       timeout;

    ngx_proxy_wasm_grpc_buf_t        out;        /* framed, not yet sent */
    ngx_proxy_wasm_grpc_buf_t        in;         /* a message not complete */
    size_t                           max_message;

    ngx_array_t                      headers;    /* pw_kv of a HEADERS */
    ngx_uint_t                       http_status;

    ngx_proxy_wasm_grpc_ev_t        *events;
    ngx_proxy_wasm_grpc_ev_t       **last;

    ngx_event_t                      deadline;

    unsigned                         stream:1;
    unsigned                         eos:1;       /* the plugin is done */
    unsigned                         got_headers:1;
    unsigned                         done:1;      /* CLOSE queued */
    unsigned                         cancelled:1;
    unsigned                         delivering:1;
    unsigned                         in_ready:1;
    unsigned                         got_peer:1;
    unsigned                         peer_failed:1;
} ngx_proxy_wasm_grpc_call_t;


/* One HTTP/2 connection to a peer. */
struct ngx_proxy_wasm_grpc_conn_s {
    ngx_queue_t                      queue;      /* the worker's conns */
    ngx_peer_connection_t            pc;
    nghttp2_session                 *session;
    struct sockaddr                 *sockaddr;
    socklen_t                        socklen;
    ngx_str_t                        name;       /* the peer, for logs */
    ngx_queue_t                      calls;
    const uint8_t                   *pend;       /* from mem_send, unsent */
    size_t                           npend;
    ngx_msec_t                       connect_timeout;
    unsigned                         connected:1;
    unsigned                         draining:1;  /* no new streams */
};


/* per worker */
static ngx_queue_t                   ngx_proxy_wasm_grpc_calls;
static ngx_queue_t                   ngx_proxy_wasm_grpc_conns;
static ngx_queue_t                   ngx_proxy_wasm_grpc_ready;
static ngx_event_t                   ngx_proxy_wasm_grpc_deliver_ev;
static nghttp2_session_callbacks    *ngx_proxy_wasm_grpc_callbacks;
static ngx_uint_t                    ngx_proxy_wasm_grpc_inited;


static ngx_int_t ngx_proxy_wasm_grpc_init(ngx_log_t *log);
static void ngx_proxy_wasm_grpc_resolved(void *data, ngx_int_t rc);
static void ngx_proxy_wasm_grpc_start(ngx_proxy_wasm_grpc_call_t *call);
static ngx_proxy_wasm_grpc_conn_t *ngx_proxy_wasm_grpc_conn_get(
    ngx_peer_connection_t *peer, ngx_proxy_wasm_conf_t *wc, ngx_log_t *log);
static void ngx_proxy_wasm_grpc_conn_fail(ngx_proxy_wasm_grpc_conn_t *conn,
    uint32_t status, const char *reason);
static void ngx_proxy_wasm_grpc_conn_close(ngx_proxy_wasm_grpc_conn_t *conn);
static ngx_int_t ngx_proxy_wasm_grpc_flush(ngx_proxy_wasm_grpc_conn_t *conn);
static void ngx_proxy_wasm_grpc_read_handler(ngx_event_t *rev);
static void ngx_proxy_wasm_grpc_write_handler(ngx_event_t *wev);
static void ngx_proxy_wasm_grpc_idle(ngx_proxy_wasm_grpc_conn_t *conn);
static void ngx_proxy_wasm_grpc_deliver(ngx_event_t *ev);
static void ngx_proxy_wasm_grpc_deadline(ngx_event_t *ev);
static void ngx_proxy_wasm_grpc_finish(ngx_proxy_wasm_grpc_call_t *call,
    uint32_t status, const char *msg, size_t len, ngx_uint_t reset);
static void ngx_proxy_wasm_grpc_free(ngx_proxy_wasm_grpc_call_t *call);


static ngx_inline ngx_proxy_wasm_grpc_call_t *
ngx_proxy_wasm_grpc_find(ngx_proxy_wasm_mod_t *mod, uint32_t token)
{
    ngx_queue_t                 *q;
    ngx_proxy_wasm_grpc_call_t  *call;

    if (!ngx_proxy_wasm_grpc_inited || mod == NULL) {
        return NULL;
    }

    for (q = ngx_queue_head(&ngx_proxy_wasm_grpc_calls);
         q != ngx_queue_sentinel(&ngx_proxy_wasm_grpc_calls);
         q = ngx_queue_next(q))
    {
        call = ngx_queue_data(q, ngx_proxy_wasm_grpc_call_t, queue);

        if (call->token == token && call->mod == mod->owner) {
            return call;
        }
    }

    return NULL;
}


/* ---------------------------------------------------------- buffers */


static ngx_int_t
ngx_proxy_wasm_grpc_buf_reserve(ngx_proxy_wasm_grpc_buf_t *b, size_t n,
    ngx_log_t *log)
{
    size_t   cap;
    u_char  *p;

    if (b->pos && b->pos == b->len) {
        b->pos = 0;
        b->len = 0;
    }

    if (b->len + n <= b->cap) {
        return NGX_OK;
    }

    if (b->pos) {
        ngx_memmove(b->data, b->data + b->pos, b->len - b->pos);
        b->len -= b->pos;
        b->pos = 0;

        if (b->len + n <= b->cap) {
            return NGX_OK;
        }
    }

    cap = ngx_max(b->cap * 2, b->len + n);
    cap = ngx_max(cap, 256);

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


static void
ngx_proxy_wasm_grpc_buf_free(ngx_proxy_wasm_grpc_buf_t *b)
{
    if (b->data) {
        ngx_free(b->data);
    }

    ngx_memzero(b, sizeof(ngx_proxy_wasm_grpc_buf_t));
}


/* Appends `msg` behind its 5-byte gRPC prefix. */
static ngx_int_t
ngx_proxy_wasm_grpc_frame(ngx_proxy_wasm_grpc_call_t *call, pw_str msg)
{
    u_char  *p;

    if (msg.len > 0xffffffff
        || ngx_proxy_wasm_grpc_buf_reserve(&call->out, 5 + msg.len,
                                           call->log)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = call->out.data + call->out.len;
    *p++ = 0;
    *p++ = (u_char) (msg.len >> 24);
    *p++ = (u_char) (msg.len >> 16);
    *p++ = (u_char) (msg.len >> 8);
    *p++ = (u_char) msg.len;

    if (msg.len) {
        ngx_memcpy(p, msg.data, msg.len);
    }

    call->out.len += 5 + msg.len;

    return NGX_OK;
}


/* ----------------------------------------------------------- events */


static void
ngx_proxy_wasm_grpc_queue(ngx_proxy_wasm_grpc_call_t *call,
    ngx_proxy_wasm_grpc_ev_t *e)
{
    e->next = NULL;
    *call->last = e;
    call->last = &e->next;

    if (!call->in_ready) {
        ngx_queue_insert_tail(&ngx_proxy_wasm_grpc_ready, &call->ready);
        call->in_ready = 1;
    }

    if (!ngx_proxy_wasm_grpc_deliver_ev.posted) {
        ngx_post_event(&ngx_proxy_wasm_grpc_deliver_ev, &ngx_posted_events);
    }
}


static ngx_proxy_wasm_grpc_ev_t *
ngx_proxy_wasm_grpc_event(ngx_proxy_wasm_grpc_call_t *call,
    pw_grpc_event_kind kind, const u_char *data, size_t len)
{
    ngx_proxy_wasm_grpc_ev_t  *e;

    e = ngx_alloc(sizeof(ngx_proxy_wasm_grpc_ev_t) + len, call->log);
    if (e == NULL) {
        return NULL;
    }

    ngx_memzero(e, sizeof(ngx_proxy_wasm_grpc_ev_t));
    e->ev.kind = kind;

    if (len) {
        ngx_memcpy((u_char *) (e + 1), data, len);
    }

    e->ev.message.data = (const char *) (e + 1);
    e->ev.message.len = len;

    return e;
}


/* The headers received so far, without pseudo-headers, as metadata. */
static ngx_int_t
ngx_proxy_wasm_grpc_metadata(ngx_proxy_wasm_grpc_call_t *call,
    pw_grpc_event_kind kind)
{
    ngx_proxy_wasm_grpc_ev_t  *e;

    e = ngx_proxy_wasm_grpc_event(call, kind, NULL, 0);
    if (e == NULL) {
        return NGX_ERROR;
    }

    e->ev.metadata = call->headers.elts;
    e->ev.nmetadata = call->headers.nelts;

    ngx_proxy_wasm_grpc_queue(call, e);

    /* the events own those pairs (pool memory): start a new array */
    if (ngx_array_init(&call->headers, call->pool, 8, sizeof(pw_kv))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Detaches the call from its HTTP/2 stream; reset: RST_STREAM(CANCEL) if
 * the stream is still open. */
static void
ngx_proxy_wasm_grpc_detach(ngx_proxy_wasm_grpc_call_t *call, ngx_uint_t reset)
{
    ngx_proxy_wasm_grpc_conn_t  *conn;

    conn = call->conn;

    if (conn == NULL) {
        return;
    }

    if (call->stream_id > 0) {
        (void) nghttp2_session_set_stream_user_data(conn->session,
                                                    call->stream_id, NULL);

        /* an answer complete before the plugin half-closed: the stream
         * is reset too (NO_ERROR), else it would stay open */
        if (reset
            || nghttp2_session_get_stream_local_close(conn->session,
                                                      call->stream_id)
               == 0)
        {
            (void) nghttp2_submit_rst_stream(conn->session,
                                             NGHTTP2_FLAG_NONE,
                                             call->stream_id,
                                             reset ? NGHTTP2_CANCEL
                                                   : NGHTTP2_NO_ERROR);
        }

        call->stream_id = -1;
    }

    ngx_queue_remove(&call->link);
    call->conn = NULL;

    if (ngx_queue_empty(&conn->calls)) {
        ngx_proxy_wasm_grpc_idle(conn);
    }
}


/* Queues the last event (PW_GRPC_CLOSE) and stops the call's I/O. */
static void
ngx_proxy_wasm_grpc_finish(ngx_proxy_wasm_grpc_call_t *call, uint32_t status,
    const char *msg, size_t len, ngx_uint_t reset)
{
    ngx_proxy_wasm_grpc_ev_t  *e;

    if (call->done) {
        return;
    }

    call->done = 1;

    if (call->deadline.timer_set) {
        ngx_del_timer(&call->deadline);
    }

    ngx_proxy_wasm_grpc_detach(call, reset);

    if (status) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "proxy_wasm: gRPC call %uD closed with status %uD: %*s",
                      call->token, status, len, msg);
    }

    e = ngx_proxy_wasm_grpc_event(call, PW_GRPC_CLOSE, (const u_char *) msg,
                                  len);
    if (e == NULL) {
        e = ngx_proxy_wasm_grpc_event(call, PW_GRPC_CLOSE, NULL, 0);
        if (e == NULL) {
            /* no memory even for that: drop the call, unanswered */
            call->cancelled = 1;
            if (!call->delivering && !call->in_ready) {
                ngx_proxy_wasm_grpc_free(call);
            }
            return;
        }
    }

    e->ev.status = status;

    ngx_proxy_wasm_grpc_queue(call, e);
}


static void
ngx_proxy_wasm_grpc_fail(ngx_proxy_wasm_grpc_call_t *call, uint32_t status,
    const char *reason)
{
    ngx_proxy_wasm_grpc_finish(call, status, reason, ngx_strlen(reason), 1);
}


/* Delivers the queued events, oldest call first, in order per call. */
static void
ngx_proxy_wasm_grpc_deliver(ngx_event_t *ev)
{
    int                          rc;
    pw_vm                       *vm;
    ngx_queue_t                 *q;
    ngx_proxy_wasm_grpc_ev_t    *e;
    ngx_proxy_wasm_grpc_call_t  *call;

    while (!ngx_queue_empty(&ngx_proxy_wasm_grpc_ready)) {
        q = ngx_queue_head(&ngx_proxy_wasm_grpc_ready);
        call = ngx_queue_data(q, ngx_proxy_wasm_grpc_call_t, ready);

        e = call->events;

        if (e == NULL || call->cancelled) {
            ngx_queue_remove(&call->ready);
            call->in_ready = 0;

            if (call->cancelled) {
                ngx_proxy_wasm_grpc_free(call);
            }

            continue;
        }

        call->events = e->next;
        if (call->events == NULL) {
            call->last = &call->events;
            ngx_queue_remove(&call->ready);
            call->in_ready = 0;
        }

        vm = call->mod->vm;

        if (vm) {
            call->delivering = 1;
            rc = pw_vm_grpc_event(vm, call->token, &e->ev);
            call->delivering = 0;

            if (rc != PW_OK && rc != PW_EDEAD) {
                ngx_log_error(NGX_LOG_ERR, call->log, 0,
                              "proxy_wasm_module \"%V\": gRPC callback of "
                              "call %uD failed: %s", &call->mod->name,
                              call->token, pw_strerror(rc));
            }

        } else {
            call->cancelled = 1;
        }

        if (e->ev.kind == PW_GRPC_CLOSE) {
            call->cancelled = 1;    /* spent */
        }

        ngx_free(e);

        if (call->cancelled && !call->in_ready) {
            ngx_proxy_wasm_grpc_free(call);
        }
    }
}


static void
ngx_proxy_wasm_grpc_free(ngx_proxy_wasm_grpc_call_t *call)
{
    ngx_proxy_wasm_grpc_ev_t  *e, *next;

    ngx_proxy_wasm_grpc_detach(call, 1);

    if (call->deadline.timer_set) {
        ngx_del_timer(&call->deadline);
    }

    if (call->in_ready) {
        ngx_queue_remove(&call->ready);
        call->in_ready = 0;
    }

    for (e = call->events; e; e = next) {
        next = e->next;
        ngx_free(e);
    }

    ngx_queue_remove(&call->queue);

    if (call->peer) {
        ngx_proxy_wasm_peer_done(call->peer);   /* a resolution */
    }

    if (call->got_peer) {
        call->pc.free(&call->pc, call->pc.data,
                      call->peer_failed ? NGX_PEER_FAILED : 0);
    }

    ngx_proxy_wasm_grpc_buf_free(&call->out);
    ngx_proxy_wasm_grpc_buf_free(&call->in);

    ngx_destroy_pool(call->pool);
}


static void
ngx_proxy_wasm_grpc_deadline(ngx_event_t *ev)
{
    ngx_proxy_wasm_grpc_call_t  *call = ev->data;
    ngx_proxy_wasm_grpc_conn_t  *conn;

    conn = call->conn;

    ngx_proxy_wasm_grpc_fail(call, 4, "deadline exceeded");

    if (conn) {
        (void) ngx_proxy_wasm_grpc_flush(conn);     /* the RST_STREAM */
    }
}


/* ---------------------------------------------------- nghttp2 glue */


static ngx_proxy_wasm_grpc_call_t *
ngx_proxy_wasm_grpc_stream_call(nghttp2_session *session, int32_t stream_id)
{
    ngx_proxy_wasm_grpc_call_t  *call;

    call = nghttp2_session_get_stream_user_data(session, stream_id);

    if (call == NULL || call->done) {
        return NULL;
    }

    return call;
}


static ssize_t
ngx_proxy_wasm_grpc_data_read(nghttp2_session *session, int32_t stream_id,
    uint8_t *buf, size_t length, uint32_t *data_flags,
    nghttp2_data_source *source, void *user_data)
{
    size_t                       n;
    ngx_proxy_wasm_grpc_call_t  *call;

    call = ngx_proxy_wasm_grpc_stream_call(session, stream_id);
    if (call == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

    n = ngx_min(length, call->out.len - call->out.pos);

    if (n) {
        ngx_memcpy(buf, call->out.data + call->out.pos, n);
        call->out.pos += n;
    }

    if (call->out.pos == call->out.len) {
        call->out.pos = 0;
        call->out.len = 0;

        if (call->eos) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;

        } else if (n == 0) {
            return NGHTTP2_ERR_DEFERRED;
        }
    }

    return n;
}


static int
ngx_proxy_wasm_grpc_on_begin_headers(nghttp2_session *session,
    const nghttp2_frame *frame, void *user_data)
{
    ngx_proxy_wasm_grpc_call_t  *call;

    call = ngx_proxy_wasm_grpc_stream_call(session, frame->hd.stream_id);
    if (call) {
        call->headers.nelts = 0;
    }

    return 0;
}


static int
ngx_proxy_wasm_grpc_on_header(nghttp2_session *session,
    const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
    const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
    u_char                      *p;
    pw_kv                       *kv;
    ngx_int_t                    n;
    ngx_proxy_wasm_grpc_call_t  *call;

    call = ngx_proxy_wasm_grpc_stream_call(session, frame->hd.stream_id);
    if (call == NULL) {
        return 0;
    }

    if (namelen && name[0] == ':') {
        if (namelen == 7 && ngx_strncmp(name, ":status", 7) == 0) {
            n = ngx_atoi((u_char *) value, valuelen);
            call->http_status = (n == NGX_ERROR) ? 0 : (ngx_uint_t) n;
        }

        return 0;
    }

    kv = ngx_array_push(&call->headers);
    p = ngx_pnalloc(call->pool, namelen + valuelen + 2);
    if (kv == NULL || p == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }

    kv->key.data = (const char *) p;
    kv->key.len = namelen;
    p = ngx_cpymem(p, name, namelen);
    *p++ = '\0';
    kv->value.data = (const char *) p;
    kv->value.len = valuelen;
    p = ngx_cpymem(p, value, valuelen);
    *p = '\0';

    return 0;
}


/* The gRPC status for an HTTP status other than 200 (gRPC's
 * http-grpc-status-mapping). */
static uint32_t
ngx_proxy_wasm_grpc_http_status(ngx_uint_t status)
{
    switch (status) {
    case 400:
        return 13;
    case 401:
        return 16;
    case 403:
        return 7;
    case 404:
        return 12;
    case 429:
    case 502:
    case 503:
    case 504:
        return 14;
    default:
        return 2;
    }
}


/* The end of a call: grpc-status and grpc-message of `call->headers` (the
 * trailers, or a Trailers-Only answer), after the trailing metadata. */
static void
ngx_proxy_wasm_grpc_trailers(ngx_proxy_wasm_grpc_call_t *call)
{
    u_char      *msg, *d, *s, *end;
    size_t       len, i;
    pw_kv       *kv;
    ngx_int_t    status, hex;

    status = -1;
    msg = NULL;
    len = 0;
    kv = call->headers.elts;

    for (i = 0; i < call->headers.nelts; i++) {
        if (ngx_proxy_wasm_key_is(kv[i].key, (u_char *) "grpc-status", 11)) {
            status = ngx_atoi((u_char *) kv[i].value.data, kv[i].value.len);

        } else if (ngx_proxy_wasm_key_is(kv[i].key,
                                         (u_char *) "grpc-message", 12))
        {
            /* percent-decoded (gRPC's PROTOCOL-HTTP2: "Percent-Encoded") */
            msg = ngx_pnalloc(call->pool, kv[i].value.len + 1);
            if (msg == NULL) {
                continue;
            }

            s = (u_char *) kv[i].value.data;
            end = s + kv[i].value.len;
            d = msg;

            while (s < end) {
                if (*s == '%' && end - s >= 3) {
                    hex = ngx_hextoi(s + 1, 2);
                    if (hex != NGX_ERROR) {
                        *d++ = (u_char) hex;
                        s += 3;
                        continue;
                    }
                }

                *d++ = *s++;
            }

            len = d - msg;
        }
    }

    if (ngx_proxy_wasm_grpc_metadata(call, PW_GRPC_TRAILING_METADATA)
        != NGX_OK)
    {
        ngx_proxy_wasm_grpc_fail(call, 13, "no memory");
        return;
    }

    if (status < 0 || status > 16) {
        ngx_proxy_wasm_grpc_fail(call, 13, "missing or invalid grpc-status");
        return;
    }

    if (call->in.len - call->in.pos && status == 0) {
        ngx_proxy_wasm_grpc_fail(call, 13, "truncated message");
        return;
    }

    ngx_proxy_wasm_grpc_finish(call, (uint32_t) status, (char *) msg, len, 0);
}


static int
ngx_proxy_wasm_grpc_on_frame_recv(nghttp2_session *session,
    const nghttp2_frame *frame, void *user_data)
{
    ngx_proxy_wasm_grpc_conn_t  *conn = user_data;
    ngx_proxy_wasm_grpc_call_t  *call;

    if (frame->hd.type == NGHTTP2_GOAWAY) {
        conn->draining = 1;
        return 0;
    }

    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }

    call = ngx_proxy_wasm_grpc_stream_call(session, frame->hd.stream_id);
    if (call == NULL) {
        return 0;
    }

    if (call->got_headers) {
        ngx_proxy_wasm_grpc_trailers(call);
        return 0;
    }

    if (call->http_status / 100 == 1) {
        return 0;       /* an informational answer: more follows */
    }

    call->got_headers = 1;

    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        /* Trailers-Only (or an HTTP error without a body) */
        if (call->http_status != 200) {
            goto http_error;
        }

        ngx_proxy_wasm_grpc_trailers(call);
        return 0;
    }

    if (call->http_status != 200) {
        goto http_error;
    }

    if (ngx_proxy_wasm_grpc_metadata(call, PW_GRPC_INITIAL_METADATA)
        != NGX_OK)
    {
        ngx_proxy_wasm_grpc_fail(call, 13, "no memory");
    }

    return 0;

http_error:

    ngx_proxy_wasm_grpc_fail(call,
                             ngx_proxy_wasm_grpc_http_status(call->http_status),
                             "HTTP status other than 200");
    return 0;
}


static int
ngx_proxy_wasm_grpc_on_data(nghttp2_session *session, uint8_t flags,
    int32_t stream_id, const uint8_t *data, size_t len, void *user_data)
{
    size_t                       size;
    u_char                      *p;
    ngx_proxy_wasm_grpc_ev_t    *e;
    ngx_proxy_wasm_grpc_call_t  *call;

    call = ngx_proxy_wasm_grpc_stream_call(session, stream_id);
    if (call == NULL) {
        return 0;
    }

    if (!call->got_headers) {
        ngx_proxy_wasm_grpc_fail(call, 13, "DATA before HEADERS");
        return 0;
    }

    if (ngx_proxy_wasm_grpc_buf_reserve(&call->in, len, call->log)
        != NGX_OK)
    {
        ngx_proxy_wasm_grpc_fail(call, 8, "no memory for the message");
        return 0;
    }

    ngx_memcpy(call->in.data + call->in.len, data, len);
    call->in.len += len;

    /* every complete message; the rest waits for more DATA */
    while (call->in.len - call->in.pos >= 5) {
        p = call->in.data + call->in.pos;
        size = (size_t) p[1] << 24 | (size_t) p[2] << 16
               | (size_t) p[3] << 8 | p[4];

        if (p[0] != 0) {
            ngx_proxy_wasm_grpc_fail(call, 13, "compressed message");
            return 0;
        }

        if (size > call->max_message) {
            ngx_proxy_wasm_grpc_fail(call, 8, "message larger than "
                                     "proxy_wasm_grpc_max_message_size");
            return 0;
        }

        if (call->in.len - call->in.pos - 5 < size) {
            /* keep room for the whole message: fewer copies */
            if (ngx_proxy_wasm_grpc_buf_reserve(&call->in, size + 5
                                                - (call->in.len
                                                   - call->in.pos),
                                                call->log)
                != NGX_OK)
            {
                ngx_proxy_wasm_grpc_fail(call, 8, "no memory for the "
                                         "message");
            }

            return 0;
        }

        e = ngx_proxy_wasm_grpc_event(call, PW_GRPC_MESSAGE, p + 5, size);
        if (e == NULL) {
            ngx_proxy_wasm_grpc_fail(call, 8, "no memory for the message");
            return 0;
        }

        ngx_proxy_wasm_grpc_queue(call, e);
        call->in.pos += 5 + size;
    }

    return 0;
}


static int
ngx_proxy_wasm_grpc_on_stream_close(nghttp2_session *session,
    int32_t stream_id, uint32_t error_code, void *user_data)
{
    ngx_proxy_wasm_grpc_call_t  *call;

    call = ngx_proxy_wasm_grpc_stream_call(session, stream_id);
    if (call == NULL) {
        return 0;
    }

    call->stream_id = -1;       /* gone: nothing to reset */

    switch (error_code) {
    case NGHTTP2_NO_ERROR:
        ngx_proxy_wasm_grpc_fail(call, 13, "stream closed without "
                                 "grpc-status");
        break;
    case NGHTTP2_REFUSED_STREAM:
        ngx_proxy_wasm_grpc_fail(call, 14, "stream refused");
        break;
    case NGHTTP2_CANCEL:
        ngx_proxy_wasm_grpc_fail(call, 1, "stream cancelled by the peer");
        break;
    case NGHTTP2_ENHANCE_YOUR_CALM:
    case NGHTTP2_FLOW_CONTROL_ERROR:
        ngx_proxy_wasm_grpc_fail(call, 8, "stream reset by the peer");
        break;
    default:
        ngx_proxy_wasm_grpc_fail(call, 14, "stream reset");
        break;
    }

    return 0;
}


static ngx_int_t
ngx_proxy_wasm_grpc_init(ngx_log_t *log)
{
    nghttp2_session_callbacks  *cbs;

    if (ngx_proxy_wasm_grpc_inited) {
        return NGX_OK;
    }

    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "proxy_wasm: nghttp2_session_callbacks_new() failed");
        return NGX_ERROR;
    }

    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
        ngx_proxy_wasm_grpc_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs,
        ngx_proxy_wasm_grpc_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
        ngx_proxy_wasm_grpc_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
        ngx_proxy_wasm_grpc_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
        ngx_proxy_wasm_grpc_on_stream_close);

    ngx_proxy_wasm_grpc_callbacks = cbs;

    ngx_queue_init(&ngx_proxy_wasm_grpc_calls);
    ngx_queue_init(&ngx_proxy_wasm_grpc_conns);
    ngx_queue_init(&ngx_proxy_wasm_grpc_ready);

    ngx_memzero(&ngx_proxy_wasm_grpc_deliver_ev, sizeof(ngx_event_t));
    ngx_proxy_wasm_grpc_deliver_ev.handler = ngx_proxy_wasm_grpc_deliver;
    ngx_proxy_wasm_grpc_deliver_ev.log = ngx_cycle->log;

    ngx_proxy_wasm_grpc_inited = 1;

    return NGX_OK;
}


/* ------------------------------------------------------ connections */


static ngx_int_t
ngx_proxy_wasm_grpc_get_peer(ngx_peer_connection_t *pc, void *data)
{
    return NGX_OK;          /* pc->sockaddr is set already */
}


static void
ngx_proxy_wasm_grpc_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
}


/* The connection to `peer` that takes new streams, opened if needed. */
static ngx_proxy_wasm_grpc_conn_t *
ngx_proxy_wasm_grpc_conn_get(ngx_peer_connection_t *peer,
    ngx_proxy_wasm_conf_t *wc, ngx_log_t *log)
{
    ngx_int_t                    rc;
    ngx_queue_t                 *q;
    nghttp2_settings_entry       iv[2];
    ngx_proxy_wasm_grpc_conn_t  *conn;

    for (q = ngx_queue_head(&ngx_proxy_wasm_grpc_conns);
         q != ngx_queue_sentinel(&ngx_proxy_wasm_grpc_conns);
         q = ngx_queue_next(q))
    {
        conn = ngx_queue_data(q, ngx_proxy_wasm_grpc_conn_t, queue);

        if (!conn->draining
            && ngx_cmp_sockaddr(conn->sockaddr, conn->socklen,
                                peer->sockaddr, peer->socklen, 1)
               == NGX_OK)
        {
            return conn;
        }
    }

    conn = ngx_calloc(sizeof(ngx_proxy_wasm_grpc_conn_t) + peer->socklen
                      + peer->name->len, log);
    if (conn == NULL) {
        return NULL;
    }

    conn->sockaddr = (struct sockaddr *) (conn + 1);
    ngx_memcpy(conn->sockaddr, peer->sockaddr, peer->socklen);
    conn->socklen = peer->socklen;
    conn->name.data = (u_char *) conn->sockaddr + peer->socklen;
    conn->name.len = peer->name->len;
    ngx_memcpy(conn->name.data, peer->name->data, peer->name->len);
    conn->connect_timeout = wc->callout.connect_timeout;
    ngx_queue_init(&conn->calls);

    if (nghttp2_session_client_new(&conn->session,
                                   ngx_proxy_wasm_grpc_callbacks, conn)
        != 0)
    {
        ngx_free(conn);
        return NULL;
    }

    /* no server push; a window as large as a message may be */
    iv[0].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH;
    iv[0].value = 0;
    iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[1].value = 1024 * 1024;

    if (nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, iv, 2)
        != 0)
    {
        nghttp2_session_del(conn->session);
        ngx_free(conn);
        return NULL;
    }

    conn->pc.sockaddr = conn->sockaddr;
    conn->pc.socklen = conn->socklen;
    conn->pc.name = &conn->name;
    conn->pc.get = ngx_proxy_wasm_grpc_get_peer;
    conn->pc.free = ngx_proxy_wasm_grpc_free_peer;
    conn->pc.log = ngx_cycle->log;
    conn->pc.log_error = NGX_ERROR_ERR;

    ngx_queue_insert_tail(&ngx_proxy_wasm_grpc_conns, &conn->queue);

    rc = ngx_event_connect_peer(&conn->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        /* the calls added next get their failure from conn_fail, posted:
         * leave the connection for the caller to fail */
        conn->draining = 1;
        return conn;
    }

    conn->pc.connection->data = conn;
    conn->pc.connection->read->handler = ngx_proxy_wasm_grpc_read_handler;
    conn->pc.connection->write->handler = ngx_proxy_wasm_grpc_write_handler;
    /* its timers (connect, idle) never hold up a graceful shutdown */
    conn->pc.connection->read->cancelable = 1;
    conn->pc.connection->write->cancelable = 1;

    if (rc == NGX_AGAIN) {
        ngx_add_timer(conn->pc.connection->write, conn->connect_timeout);
        return conn;
    }

    conn->connected = 1;

    return conn;
}


/* Fails every call of the connection and closes it. */
static void
ngx_proxy_wasm_grpc_conn_fail(ngx_proxy_wasm_grpc_conn_t *conn,
    uint32_t status, const char *reason)
{
    ngx_uint_t                   level;
    ngx_queue_t                 *q;
    ngx_proxy_wasm_grpc_call_t  *call;

    /* an idle connection that the peer closes is no error */
    level = ngx_queue_empty(&conn->calls) ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_error(level, ngx_cycle->log, 0,
                  "proxy_wasm: gRPC connection to %V: %s", &conn->name,
                  reason);

    while (!ngx_queue_empty(&conn->calls)) {
        q = ngx_queue_head(&conn->calls);
        call = ngx_queue_data(q, ngx_proxy_wasm_grpc_call_t, link);

        call->stream_id = -1;   /* the session goes with the connection */
        call->peer_failed = conn->connected ? 0 : 1;
        ngx_proxy_wasm_grpc_fail(call, status, reason);
    }

    ngx_proxy_wasm_grpc_conn_close(conn);
}


/* Closes a connection that has no call left. */
static void
ngx_proxy_wasm_grpc_conn_close(ngx_proxy_wasm_grpc_conn_t *conn)
{
    ngx_queue_t                 *q;
    ngx_proxy_wasm_grpc_call_t  *call;

    /* calls still attached (worker exit): detach them */
    while (!ngx_queue_empty(&conn->calls)) {
        q = ngx_queue_head(&conn->calls);
        call = ngx_queue_data(q, ngx_proxy_wasm_grpc_call_t, link);

        call->stream_id = -1;
        ngx_queue_remove(&call->link);
        call->conn = NULL;
    }

    ngx_queue_remove(&conn->queue);

    if (conn->pc.connection) {
        ngx_close_connection(conn->pc.connection);
        conn->pc.connection = NULL;
    }

    nghttp2_session_del(conn->session);
    ngx_free(conn);
}


/* No call left on the connection: kept for the next calls a while. */
static void
ngx_proxy_wasm_grpc_idle(ngx_proxy_wasm_grpc_conn_t *conn)
{
    ngx_connection_t  *c;

    c = conn->pc.connection;

    if (c == NULL || !conn->connected) {
        return;
    }

    c->idle = 1;        /* closed by a graceful shutdown */

    if (!c->read->timer_set) {
        ngx_add_timer(c->read, NGX_PROXY_WASM_GRPC_IDLE_TIMEOUT);
    }
}


static void
ngx_proxy_wasm_grpc_busy(ngx_proxy_wasm_grpc_conn_t *conn)
{
    ngx_connection_t  *c;

    c = conn->pc.connection;

    if (c == NULL) {
        return;
    }

    c->idle = 0;

    if (conn->connected && c->read->timer_set) {
        ngx_del_timer(c->read);
    }
}


/* Writes what nghttp2 has to send, until the socket would block.
 * NGX_ERROR: the connection failed and is gone. */
static ngx_int_t
ngx_proxy_wasm_grpc_flush(ngx_proxy_wasm_grpc_conn_t *conn)
{
    ssize_t            n;
    const uint8_t     *data;
    ngx_connection_t  *c;

    c = conn->pc.connection;

    if (c == NULL || !conn->connected) {
        return NGX_OK;          /* after the connect */
    }

    for ( ;; ) {
        if (conn->npend == 0) {
            n = nghttp2_session_mem_send(conn->session, &data);

            if (n < 0) {
                ngx_proxy_wasm_grpc_conn_fail(conn, 13,
                                              nghttp2_strerror((int) n));
                return NGX_ERROR;
            }

            if (n == 0) {
                break;
            }

            conn->pend = data;
            conn->npend = n;
        }

        n = c->send(c, (u_char *) conn->pend, conn->npend);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_proxy_wasm_grpc_conn_fail(conn, 14, "write event");
                return NGX_ERROR;
            }

            return NGX_OK;
        }

        if (n == NGX_ERROR) {
            ngx_proxy_wasm_grpc_conn_fail(conn, 14, "send() failed");
            return NGX_ERROR;
        }

        conn->pend += n;
        conn->npend -= n;
    }

    if (!nghttp2_session_want_read(conn->session)
        && !nghttp2_session_want_write(conn->session))
    {
        ngx_proxy_wasm_grpc_conn_fail(conn, 14, "connection closed by "
                                      "the session (GOAWAY)");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_proxy_wasm_grpc_write_handler(ngx_event_t *wev)
{
    int                          err;
    socklen_t                    len;
    ngx_connection_t            *c;
    ngx_proxy_wasm_grpc_conn_t  *conn;

    c = wev->data;
    conn = c->data;

    if (!conn->connected) {
        if (wev->timedout) {
            ngx_proxy_wasm_grpc_conn_fail(conn, 14, "connect timed out");
            return;
        }

        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_log_error(NGX_LOG_ERR, c->log, err, "connect() to %V failed",
                          &conn->name);
            ngx_proxy_wasm_grpc_conn_fail(conn, 14, "connect() failed");
            return;
        }

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        conn->connected = 1;

        if (ngx_queue_empty(&conn->calls)) {
            ngx_proxy_wasm_grpc_idle(conn);
        }
    }

    (void) ngx_proxy_wasm_grpc_flush(conn);
}


static void
ngx_proxy_wasm_grpc_read_handler(ngx_event_t *rev)
{
    ssize_t                      n, rv;
    ngx_connection_t            *c;
    ngx_proxy_wasm_grpc_conn_t  *conn;
    static u_char                buf[NGX_PROXY_WASM_GRPC_READ_SIZE];

    c = rev->data;
    conn = c->data;

    if (c->close || (rev->timedout && ngx_queue_empty(&conn->calls))) {
        /* idle: a graceful shutdown, or the idle timeout */
        ngx_proxy_wasm_grpc_conn_close(conn);
        return;
    }

    rev->timedout = 0;

    if (!conn->connected) {
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_proxy_wasm_grpc_conn_fail(conn, 14, n ? "recv() failed"
                                          : "connection closed by the peer");
            return;
        }

        rv = nghttp2_session_mem_recv(conn->session, buf, n);

        if (rv < 0) {
            ngx_proxy_wasm_grpc_conn_fail(conn, 13, nghttp2_strerror(rv));
            return;
        }
    }

    if (ngx_proxy_wasm_grpc_flush(conn) != NGX_OK) {
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_proxy_wasm_grpc_conn_fail(conn, 14, "read event");
    }
}


/* ------------------------------------------------------------- hooks */


/* The request's headers: pseudo-headers first, then the plugin's
 * metadata (lower-cased; pseudo and connection headers dropped); copied
 * into the call's pool (the plugin's memory is only valid during the
 * hook, the request may start after a resolution). */
static ngx_int_t
ngx_proxy_wasm_grpc_headers(ngx_proxy_wasm_grpc_call_t *call,
    const pw_grpc_callout *gc, ngx_str_t *authority)
{
    u_char       *p;
    size_t        i, n;
    ngx_uint_t    skipped;
    nghttp2_nv   *nva, *nv;
    ngx_str_t     path;
    u_char        timeout[NGX_INT64_LEN + 2];

    static ngx_str_t  skip[] = {
        ngx_string("te"),
        ngx_string("content-type"),
        ngx_string("grpc-timeout"),
        ngx_string("connection"),
        ngx_string("keep-alive"),
        ngx_string("proxy-connection"),
        ngx_string("transfer-encoding"),
        ngx_string("upgrade"),
        ngx_string("host"),
        ngx_null_string
    };

    nva = ngx_palloc(call->pool, (8 + gc->nmetadata) * sizeof(nghttp2_nv));
    path.len = 2 + gc->service.len + gc->method.len;
    path.data = ngx_pnalloc(call->pool, path.len);
    if (nva == NULL || path.data == NULL) {
        return NGX_ERROR;
    }

    p = path.data;
    *p++ = '/';
    p = ngx_cpymem(p, gc->service.data, gc->service.len);
    *p++ = '/';
    ngx_memcpy(p, gc->method.data, gc->method.len);

#define ngx_proxy_wasm_grpc_nv(nv, n, nl, v, vl)                             \
    (nv)->name = (uint8_t *) (n); (nv)->namelen = (nl);                      \
    (nv)->value = (uint8_t *) (v); (nv)->valuelen = (vl);                    \
    (nv)->flags = NGHTTP2_NV_FLAG_NONE; (nv)++

    nv = nva;
    ngx_proxy_wasm_grpc_nv(nv, ":method", 7, "POST", 4);
    ngx_proxy_wasm_grpc_nv(nv, ":scheme", 7, "http", 4);
    ngx_proxy_wasm_grpc_nv(nv, ":path", 5, path.data, path.len);
    ngx_proxy_wasm_grpc_nv(nv, ":authority", 10, authority->data,
                           authority->len);
    ngx_proxy_wasm_grpc_nv(nv, "te", 2, "trailers", 8);
    ngx_proxy_wasm_grpc_nv(nv, "content-type", 12, "application/grpc", 16);
    ngx_proxy_wasm_grpc_nv(nv, "user-agent", 10, "pwasm", 5);

    if (gc->timeout_ms) {
        /* at most 8 digits: milliseconds, or whole seconds beyond */
        if (gc->timeout_ms <= 99999999) {
            p = ngx_sprintf(timeout, "%uDm", gc->timeout_ms);
        } else {
            p = ngx_sprintf(timeout, "%uDS", (gc->timeout_ms + 999) / 1000);
        }

        n = p - timeout;
        p = ngx_pnalloc(call->pool, n);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, timeout, n);
        ngx_proxy_wasm_grpc_nv(nv, "grpc-timeout", 12, p, n);
    }

    for (i = 0; i < gc->nmetadata; i++) {
        n = gc->metadata[i].key.len;

        if (n == 0 || gc->metadata[i].key.data[0] == ':') {
            continue;
        }

        p = ngx_pnalloc(call->pool, n + gc->metadata[i].value.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(p, (u_char *) gc->metadata[i].key.data, n);
        ngx_memcpy(p + n, gc->metadata[i].value.data,
                   gc->metadata[i].value.len);

        skipped = 0;

        for (n = 0; skip[n].len; n++) {
            if (skip[n].len == gc->metadata[i].key.len
                && ngx_strncmp(skip[n].data, p, skip[n].len) == 0)
            {
                skipped = 1;
                break;
            }
        }

        if (skipped) {
            continue;
        }

        ngx_proxy_wasm_grpc_nv(nv, p, gc->metadata[i].key.len,
                               p + gc->metadata[i].key.len,
                               gc->metadata[i].value.len);
    }

#undef ngx_proxy_wasm_grpc_nv

    call->nva = nva;
    call->nnv = nv - nva;

    return NGX_OK;
}


/*
 * pw_host_callout_ops.grpc_call: starts a unary call (call->stream 0: the
 * message, END_STREAM, the timeout) or opens a stream. The target is an
 * upstream{} block or a literal that proxy_wasm_callout_allow allows to
 * this module (ngx_proxy_wasm_target.c): PARSE_FAILURE otherwise;
 * INTERNAL_FAILURE without memory. Anything that fails later (a name that
 * does not resolve, a connection refused) fails the call through the
 * posted delivery.
 */
proxy_status_t
ngx_proxy_wasm_host_grpc_call(void *host, pw_plugin *plugin, uint32_t token,
    const pw_grpc_callout *gc)
{
    ngx_int_t                    rc;
    ngx_log_t                   *log;
    ngx_pool_t                  *pool;
    ngx_proxy_wasm_mod_t        *mod = host;
    ngx_proxy_wasm_target_t     *t;
    ngx_proxy_wasm_grpc_call_t  *call;

    if (mod == NULL || mod->conf == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    log = mod->log ? mod->log : ngx_cycle->log;

    if (ngx_proxy_wasm_target_find(mod, pw_plugin_name(plugin), gc->upstream,
                                   &t, log)
        != NGX_OK)
    {
        return PROXY_RESULT_PARSE_FAILURE;
    }

    if (!mod->conf->running) {
        /* the configuration-time canary: accepted, never answered (its
         * VM is thrown away), as tick periods are */
        return PROXY_RESULT_OK;
    }

    if (ngx_proxy_wasm_grpc_init(log) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    call = ngx_pcalloc(pool, sizeof(ngx_proxy_wasm_grpc_call_t));
    if (call == NULL
        || ngx_array_init(&call->headers, pool, 8, sizeof(pw_kv)) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    call->pool = pool;
    call->log = log;
    call->mod = mod->owner;
    call->token = token;
    call->stream = gc->stream ? 1 : 0;
    call->stream_id = -1;
    call->last = &call->events;
    call->max_message = mod->conf->grpc_max_message;
    call->timeout = gc->timeout_ms;
    call->deadline.handler = ngx_proxy_wasm_grpc_deadline;
    call->deadline.data = call;
    call->deadline.log = log;
    /* not cancelable: a graceful shutdown waits for a unary call with a
     * timeout (bounded); a call without one, e.g. a stream that may never
     * end, does not hold the worker */

    call->peer = ngx_proxy_wasm_peer_create(t, pool, log);

    if (call->peer == NULL
        || ngx_proxy_wasm_grpc_headers(call, gc,
                                       ngx_proxy_wasm_target_name(t))
           != NGX_OK
        || (!gc->stream
            && ngx_proxy_wasm_grpc_frame(call, gc->message) != NGX_OK))
    {
        ngx_proxy_wasm_grpc_buf_free(&call->out);
        ngx_destroy_pool(pool);
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    call->eos = gc->stream ? 0 : 1;

    ngx_queue_insert_tail(&ngx_proxy_wasm_grpc_calls, &call->queue);

    /* the deadline counts from now, a resolution included */
    if (gc->timeout_ms) {
        ngx_add_timer(&call->deadline, gc->timeout_ms);
    }

    rc = ngx_proxy_wasm_peer_resolve(call->peer, ngx_proxy_wasm_grpc_resolved,
                                     call);

    if (rc == NGX_OK) {
        ngx_proxy_wasm_grpc_start(call);

    } else if (rc != NGX_AGAIN) {
        ngx_proxy_wasm_grpc_fail(call, 14, "the target did not resolve");
    }

    return PROXY_RESULT_OK;
}


static void
ngx_proxy_wasm_grpc_resolved(void *data, ngx_int_t rc)
{
    ngx_proxy_wasm_grpc_call_t  *call = data;

    if (call->done || call->cancelled) {
        return;
    }

    if (rc != NGX_OK) {
        ngx_proxy_wasm_grpc_fail(call, 14, "the target did not resolve");
        return;
    }

    ngx_proxy_wasm_grpc_start(call);
}


/* The target's addresses are known: a peer (nginx's round robin for an
 * upstream{} block), its connection, the request on a new stream. */
static void
ngx_proxy_wasm_grpc_start(ngx_proxy_wasm_grpc_call_t *call)
{
    int32_t                      sid;
    ngx_int_t                    rc;
    nghttp2_data_provider        prd;
    ngx_proxy_wasm_grpc_conn_t  *conn;

    ngx_proxy_wasm_peer_init(call->peer, &call->pc);

    rc = call->pc.get(&call->pc, call->pc.data);

    if (rc != NGX_OK) {
        ngx_proxy_wasm_grpc_fail(call, 14, "no live server in the target");
        return;
    }

    call->got_peer = 1;

    conn = ngx_proxy_wasm_grpc_conn_get(&call->pc, call->mod->conf,
                                        call->log);
    if (conn == NULL) {
        ngx_proxy_wasm_grpc_fail(call, 14, "cannot open a connection");
        return;
    }

    call->conn = conn;
    ngx_queue_insert_tail(&conn->calls, &call->link);
    ngx_proxy_wasm_grpc_busy(conn);

    if (conn->pc.connection == NULL) {
        ngx_proxy_wasm_grpc_conn_fail(conn, 14, "cannot connect");
        return;
    }

    prd.source.ptr = call;
    prd.read_callback = ngx_proxy_wasm_grpc_data_read;

    sid = nghttp2_submit_request(conn->session, NULL, call->nva, call->nnv,
                                 &prd, call);

    if (sid < 0) {
        if (sid == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
            conn->draining = 1;     /* the next call opens another one */
        }

        ngx_proxy_wasm_grpc_fail(call, 14, nghttp2_strerror(sid));
        return;
    }

    call->stream_id = sid;

    ngx_log_debug4(NGX_LOG_DEBUG_CORE, call->log, 0,
                   "proxy_wasm: gRPC %s %uD on %V stream %D",
                   call->stream ? "stream" : "call", call->token,
                   &conn->name, sid);

    (void) ngx_proxy_wasm_grpc_flush(conn);
}


/* pw_host_callout_ops.grpc_send: one message on a stream; end_of_stream
 * half-closes after it. */
proxy_status_t
ngx_proxy_wasm_host_grpc_send(void *host, uint32_t token, pw_str message,
    int end_of_stream)
{
    ngx_proxy_wasm_grpc_call_t  *call;

    call = ngx_proxy_wasm_grpc_find(host, token);
    if (call == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (call->eos) {
        return PROXY_RESULT_BAD_ARGUMENT;
    }

    if (call->done || call->cancelled) {
        call->eos = end_of_stream ? 1 : 0;
        return PROXY_RESULT_OK;     /* closed meanwhile: its close is due */
    }

    if (ngx_proxy_wasm_grpc_frame(call, message) != NGX_OK) {
        return PROXY_RESULT_INTERNAL_FAILURE;
    }

    if (end_of_stream) {
        call->eos = 1;
    }

    if (call->conn && call->stream_id > 0) {
        (void) nghttp2_session_resume_data(call->conn->session,
                                           call->stream_id);
        (void) ngx_proxy_wasm_grpc_flush(call->conn);
    }

    return PROXY_RESULT_OK;
}


/* pw_host_callout_ops.grpc_close: half-closes a stream (END_STREAM after
 * what was sent). */
proxy_status_t
ngx_proxy_wasm_host_grpc_close(void *host, uint32_t token)
{
    ngx_proxy_wasm_grpc_call_t  *call;

    call = ngx_proxy_wasm_grpc_find(host, token);
    if (call == NULL) {
        return PROXY_RESULT_NOT_FOUND;
    }

    if (call->eos) {
        return PROXY_RESULT_OK;
    }

    call->eos = 1;

    if (!call->done && call->conn && call->stream_id > 0) {
        (void) nghttp2_session_resume_data(call->conn->session,
                                           call->stream_id);
        (void) ngx_proxy_wasm_grpc_flush(call->conn);
    }

    return PROXY_RESULT_OK;
}


/* The cancel hook's part for gRPC: abandons call `token` of host's VM if
 * it is one of ours (RST_STREAM(CANCEL), no more events). NGX_DECLINED:
 * not a gRPC call. */
ngx_int_t
ngx_proxy_wasm_grpc_cancel(void *host, uint32_t token)
{
    ngx_proxy_wasm_grpc_conn_t  *conn;
    ngx_proxy_wasm_grpc_call_t  *call;

    call = ngx_proxy_wasm_grpc_find(host, token);
    if (call == NULL || call->cancelled) {
        return call ? NGX_OK : NGX_DECLINED;
    }

    conn = call->conn;

    call->cancelled = 1;
    ngx_proxy_wasm_grpc_detach(call, 1);

    if (!call->delivering) {
        ngx_proxy_wasm_grpc_free(call);
    }

    if (conn) {
        (void) ngx_proxy_wasm_grpc_flush(conn);     /* the RST_STREAM */
    }

    return NGX_OK;
}


/* At worker exit, after the VMs were freed (which cancelled their calls):
 * frees what is left and closes the connections. */
void
ngx_proxy_wasm_grpc_exit_process(ngx_proxy_wasm_conf_t *wc)
{
    ngx_queue_t                 *q;
    ngx_proxy_wasm_grpc_conn_t  *conn;
    ngx_proxy_wasm_grpc_call_t  *call;

    if (!ngx_proxy_wasm_grpc_inited) {
        return;
    }

    while (!ngx_queue_empty(&ngx_proxy_wasm_grpc_calls)) {
        q = ngx_queue_head(&ngx_proxy_wasm_grpc_calls);
        call = ngx_queue_data(q, ngx_proxy_wasm_grpc_call_t, queue);
        ngx_proxy_wasm_grpc_free(call);
    }

    while (!ngx_queue_empty(&ngx_proxy_wasm_grpc_conns)) {
        q = ngx_queue_head(&ngx_proxy_wasm_grpc_conns);
        conn = ngx_queue_data(q, ngx_proxy_wasm_grpc_conn_t, queue);
        ngx_proxy_wasm_grpc_conn_close(conn);
    }

    if (ngx_proxy_wasm_grpc_deliver_ev.posted) {
        ngx_delete_posted_event(&ngx_proxy_wasm_grpc_deliver_ev);
    }

    nghttp2_session_callbacks_del(ngx_proxy_wasm_grpc_callbacks);
    ngx_proxy_wasm_grpc_callbacks = NULL;
    ngx_proxy_wasm_grpc_inited = 0;
}
