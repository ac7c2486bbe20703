/*
 * connection.c -- the replay of one TCP connection (a fixture's
 * `connection:`) through a plugin's TCP stream context: docs/ABI.md §8.3,
 * docs/CLI.md "Connections".
 *
 * proxy_on_new_connection, then the fixture's events in order: bytes from
 * the client (proxy_on_downstream_data) or the server
 * (proxy_on_upstream_data), the end of a side (end_of_stream, then
 * proxy_on_downstream/upstream_connection_close with the peer type), the
 * clock moving on (ticks, callout answers). A Pause holds the direction:
 * its bytes stay in its buffer, more bytes are appended, and the callback
 * comes again with the total, until a callback returns Continue or the
 * plugin continues the direction from another context. What passes is
 * forwarded (x->req_sent to the upstream, x->resp_sent to the client). The
 * end: sides still open are closed by the proxy (peer local), then
 * proxy_on_done, proxy_on_log, proxy_on_delete.
 */
#include <string.h>

#include "cli.h"

/* One direction: 0 downstream (client -> server), 1 upstream. */
typedef struct way {
    buf *data; /* DownstreamData / UpstreamData */
    buf *sent; /* forwarded */
    int *on;   /* the buffer is the plugin's now */
    tcp_side *side;
    enum phase data_ph, close_ph;
    unsigned cont; /* its PW_PENDING_CONTINUE_* bit */
    const char *name, *to;
} way;

static way way_of(exchange *x, int d) {
    if (d == 0)
        return (way){&x->req_body,        &x->req_sent,
                     &x->req_body_on,     &x->ds,
                     PH_DOWNSTREAM_DATA,  PH_DOWNSTREAM_CLOSE,
                     PW_PENDING_CONTINUE_DOWNSTREAM, "downstream",
                     "the upstream"};
    return (way){&x->resp_body,       &x->resp_sent,   &x->resp_body_on,
                 &x->us,              PH_UPSTREAM_DATA, PH_UPSTREAM_CLOSE,
                 PW_PENDING_CONTINUE_UPSTREAM, "upstream", "the client"};
}

static int over(const exchange *x) {
    return x->outcome == OUT_CLOSED || x->outcome == OUT_FAILED;
}

static void closed_by_plugin(host *h, exchange *x, enum phase ph, const char *how) {
    x->outcome = OUT_CLOSED;
    x->stopped_in = ph;
    x->plugin_closed = 1;
    x->closed_ms = h->now_ms;
    host_note(x, "proxy_close_stream %s: the connection is closed at %llu ms", how,
              (unsigned long long)h->now_ms);
}

/* What is held in direction d goes on. */
static void forward(exchange *x, int d) {
    way w = way_of(x, d);
    buf_put(w.sent, w.data->p, w.data->len);
    buf_clear(w.data);
    w.side->paused = 0;
}

/* Takes what the plugin asked of the stream since (from another context,
 * or the other direction's continue during a callback): a close ends the
 * connection, a continue of a held direction forwards what it holds. */
static void take_pending(host *h, exchange *x, pw_stream *s) {
    unsigned bits = pw_stream_take(s, PW_PENDING_ALL);
    enum phase last = x->ncalls ? x->calls[x->ncalls - 1].phase : PH_CREATE;
    int saved = x->cur;
    x->cur = x->ncalls ? (int)x->ncalls - 1 : -1; /* notes under the last call */
    if (bits & PW_PENDING_CLOSE) {
        closed_by_plugin(h, x, last, "from another context");
    } else if (bits & PW_PENDING_FAILED) {
        x->outcome = OUT_FAILED;
        x->stopped_in = last;
        snprintf(x->error, sizeof x->error, "its VM was discarded after a trap elsewhere");
        host_note(x, "the connection failed: %s; it is closed", x->error);
    } else {
        for (int d = 0; d < 2; d++) {
            way w = way_of(x, d);
            if (!(bits & w.cont) || !w.side->paused)
                continue;
            host_note(x, "%s resumed from another context at %llu ms: %zu bytes go to %s",
                      w.name, (unsigned long long)h->now_ms, w.data->len, w.to);
            forward(x, d);
        }
    }
    x->cur = saved;
}

/* One callback of the connection through the chain (one plugin, failure
 * policy closed); a close or a trap ends the connection. Returns the
 * action the core made of it. */
static pw_action conn_call(host *h, exchange *x, pw_chain *ch, enum phase ph, size_t n, int eos) {
    call *c = host_begin_call(x, ph, n, eos);
    int data = ph == PH_DOWNSTREAM_DATA || ph == PH_UPSTREAM_DATA;
    if (data && x->record) {
        const buf *b = ph == PH_DOWNSTREAM_DATA ? &x->req_body : &x->resp_body;
        c->data_before = arena_dup(&x->mem, b->p ? b->p : "", b->len);
    }
    char why[PW_ERRLEN];
    pw_action a = pw_chain_call(ch, 0, (pw_event)(ph - PH_REQ_HEADERS), n, eos, why, sizeof why);
    pw_stream *s = ch->links[0].stream;
    c = &x->calls[x->cur]; /* the array may have moved */
    unsigned applied = 0;
    c->action = s ? pw_stream_returned(s, &applied) : PW_ACTION_ERROR;
    c->resumed = (applied & (PW_PENDING_CONTINUE_DOWNSTREAM | PW_PENDING_CONTINUE_UPSTREAM)) != 0;
    c->closed = a == PW_ACTION_CLOSE;
    host_snapshot(x, c);
    x->last_call = x->cur;
    if (a == PW_ACTION_CLOSE) {
        char how[64];
        snprintf(how, sizeof how, "in %s", phase_name(ph));
        closed_by_plugin(h, x, ph, how);
    } else if (a == PW_ACTION_ERROR) {
        x->outcome = OUT_FAILED;
        x->stopped_in = ph;
        snprintf(x->error, sizeof x->error, "%s", why);
        host_note(x, "the plugin failed in %s: %s; the connection is closed", phase_name(ph),
                  x->error);
    } else if (a == PW_ACTION_CONTINUE && c->resumed) {
        host_note(x, "paused, then resumed by proxy_continue_stream during the callback");
    }
    x->cur = -1;
    host_deliver(h);
    return a;
}

/* Bytes of direction d arrive (eos: with the end of that side): appended
 * to what the direction holds, and the plugin called with the total. */
static void arrive(host *h, exchange *x, pw_chain *ch, int d, pw_str bytes, int eos) {
    way w = way_of(x, d);
    buf_put(w.data, bytes.data, bytes.len);
    *w.on = 1;
    pw_action a = conn_call(h, x, ch, w.data_ph, w.data->len, eos);
    *w.on = 0;
    if (eos)
        w.side->eos = 1;
    if (over(x))
        return;
    if (a == PW_ACTION_CONTINUE) {
        forward(x, d);
    } else {
        w.side->paused = 1;
        w.side->paused_in = w.data_ph;
    }
    take_pending(h, x, ch->links[0].stream);
}

/* Side d ends: end_of_stream unless its last bytes carried it, then its
 * close callback with the peer type. */
static void side_close(host *h, exchange *x, pw_chain *ch, int d, int peer) {
    way w = way_of(x, d);
    if (!w.side->eos && peer == PROXY_PEER_REMOTE && !over(x))
        arrive(h, x, ch, d, (pw_str){"", 0}, 1);
    if (x->outcome == OUT_FAILED || w.side->closed)
        return;
    w.side->closed = 1;
    conn_call(h, x, ch, w.close_ph, (size_t)peer, 0);
    if (!over(x))
        take_pending(h, x, ch->links[0].stream);
}

/* A direction is still held after the last event: while callout answers
 * are to come, the clock moves on to them (a proxy waits), and they may
 * continue or close it. Returns 1 when something is still held. */
static int wait_held(host *h, exchange *x, pw_chain *ch) {
    for (uint32_t n = 0; !over(x) && (x->ds.paused || x->us.paused); n++) {
        uint64_t when = host_next_answer(h);
        if (when == UINT64_MAX || n == 100000)
            return 1;
        if (n == 0) {
            x->cur = x->ncalls ? (int)x->ncalls - 1 : -1;
            host_note(x, "held at the end: waiting for callout answers (the clock moves on)");
            x->cur = -1;
        }
        host_advance(h, when > h->now_ms ? when - h->now_ms : 0);
        take_pending(h, x, ch->links[0].stream);
    }
    return 0;
}

void host_connection(host *h, exchange *x) {
    const fixture *fx = x->fx;
    const connection *cn = &fx->conn;
    x->tcp = 1;
    x->conn_id = ++h->nconns;
    buf_clear(&x->req_body);
    buf_clear(&x->resp_body);
    pw_link link;
    pw_chain ch = {.links = &link, .n = 1, .policy = PW_FAIL_CLOSED};
    if (host_open_stream(h, x, &link, 1))
        return;
    if (conn_call(h, x, &ch, PH_NEW_CONNECTION, 0, 0) == PW_ACTION_PAUSE) {
        /* the client's bytes wait for proxy_continue_stream(downstream) */
        x->ds.paused = 1;
        x->ds.paused_in = PH_NEW_CONNECTION;
    }
    if (!over(x))
        take_pending(h, x, link.stream);
    size_t i = 0;
    for (; i < cn->n && !over(x); i++) {
        const conn_event *e = &cn->ev[i];
        int d = e->kind == CONN_UPSTREAM || e->kind == CONN_UPSTREAM_CLOSE;
        switch (e->kind) {
        case CONN_DOWNSTREAM:
        case CONN_UPSTREAM: {
            /* the side's end right after its bytes comes with them */
            enum conn_kind end = d ? CONN_UPSTREAM_CLOSE : CONN_DOWNSTREAM_CLOSE;
            int eos = i + 1 < cn->n && cn->ev[i + 1].kind == end &&
                      cn->ev[i + 1].peer == PROXY_PEER_REMOTE;
            arrive(h, x, &ch, d, e->data, eos);
            break;
        }
        case CONN_DOWNSTREAM_CLOSE:
        case CONN_UPSTREAM_CLOSE:
            side_close(h, x, &ch, d, e->peer);
            break;
        case CONN_ADVANCE:
            host_advance(h, e->advance_ms);
            take_pending(h, x, link.stream);
            break;
        }
    }
    if (i < cn->n) {
        x->cur = x->ncalls ? (int)x->ncalls - 1 : -1;
        host_note(x, "the connection is over: %zu more event%s of the fixture (from line %zu) "
                     "not delivered",
                  cn->n - i, cn->n - i == 1 ? "" : "s", cn->ev[i].line);
        x->cur = -1;
    }
    if (wait_held(h, x, &ch)) {
        x->outcome = OUT_PAUSED;
        x->stopped_in = x->ds.paused ? x->ds.paused_in : x->us.paused_in;
        x->cur = x->ncalls ? (int)x->ncalls - 1 : -1;
        for (int d = 0; d < 2; d++) {
            way w = way_of(x, d);
            if (w.side->paused)
                host_note(x, "%s held at the end (paused in %s, nothing continued it): %zu "
                             "bytes never forwarded",
                          w.name, phase_name(w.side->paused_in), w.data->len);
        }
        x->cur = -1;
    }
    /* The proxy closes what is still open (after a close by the plugin
     * too); a failed plugin gets no more callbacks. */
    for (int d = 0; d < 2 && x->outcome != OUT_FAILED; d++)
        if (!way_of(x, d).side->closed)
            side_close(h, x, &ch, d, PROXY_PEER_LOCAL);
    host_begin_call(x, PH_END, 0, 0);
    pw_chain_end(&ch, 0); /* on_done, on_log, on_delete */
    x->cur = -1;
    host_deliver(h);
}
