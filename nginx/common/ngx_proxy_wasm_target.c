/*
 * ngx_proxy_wasm_target.c -- the targets of callouts (proxy_http_call's
 * `upstream`, proxy_grpc_call's `grpc_service`) and the choice of a peer
 * for one connection to them. Used by the HTTP client
 * (ngx_proxy_wasm_callout.c) and the gRPC client (ngx_proxy_wasm_grpc.c).
 *
 * A target is, first, the name of an nginx `upstream NAME { ... }` block of
 * the http{} configuration (as an Envoy cluster: a plugin written for
 * `auth_cluster` works with `upstream auth_cluster {}`), whose servers are
 * chosen by nginx's own round robin (weight, max_fails/fail_timeout, down,
 * backup are honoured; the block's balancer -- hash, least_conn -- is not:
 * those need a client request). Otherwise a literal `host:port`,
 * `[v6]:port` or `unix:/path`, only when a proxy_wasm_callout_allow
 * directive allows it to the calling module (compared byte for byte with
 * what the directive wrote). A hostname in an allowed literal is resolved
 * with http{}'s `resolver` at call time, without blocking; with no
 * resolver configured, once at configuration time. Anything else is
 * refused (the callers answer BadArgument / ParseFailure).
 *
 * From the stream module: the same upstream{} blocks of http{} (added once
 * the whole configuration is read: ngx_proxy_wasm_targets_upstreams from
 * its init_module), and the literals of stream{}'s own
 * proxy_wasm_callout_allow, resolved at configuration time.
 *
 * This file uses ngx_http's upstream{} blocks and round-robin peers: with
 * ngx_proxy_wasm_callout.c, the one exception to "common/ has no
 * ngx_http_*" (a stream-only build would need its own lookup).
 *
 * The contract, for one call:
 *
 *   ngx_proxy_wasm_target_find(mod, plugin_name, name, &t, log)
 *       NGX_OK and t (configuration lifetime), or NGX_DECLINED: unknown or
 *       not allowed to the module `plugin_name` (logged at warn why).
 *   p = ngx_proxy_wasm_peer_create(t, pool, log)
 *       the peer state of one call, from the call's pool; NULL: no memory.
 *   ngx_proxy_wasm_peer_resolve(p, handler, data)
 *       NGX_OK: addresses known now; NGX_AGAIN: handler(data, rc) is
 *       called later from a posted event (rc NGX_OK, or NGX_ERROR: the
 *       name did not resolve, logged); NGX_ERROR: failed now (logged).
 *   ngx_proxy_wasm_peer_init(p, pc)
 *       sets pc->get, pc->free, pc->data, pc->tries, pc->name for
 *       ngx_event_connect_peer(); after each attempt the caller gives the
 *       peer back with pc->free(pc, pc->data, state) (NGX_PEER_FAILED
 *       after a failed connection or exchange, 0 after a good one) and may
 *       try again while pc->tries is not 0.
 *   ngx_proxy_wasm_peer_done(p)
 *       cancels a resolution in progress (no handler call follows); call
 *       it whenever the call ends. The rest goes with the pool.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_proxy_wasm.h"


/* One target: an upstream{} block or an allowed literal. */
struct ngx_proxy_wasm_target_s {
    ngx_str_t                        name;
    ngx_http_upstream_srv_conf_t    *upstream;   /* NULL: a literal */
    ngx_url_t                        url;        /* a literal: parsed; its
                                                    addrs when known */
    ngx_http_core_loc_conf_t        *core;       /* http{}'s: its resolver */
    unsigned                         resolve:1;  /* a hostname resolved at
                                                    call time */
};


/* One proxy_wasm_callout_allow pair: module (or "*") may call target. */
typedef struct {
    ngx_str_t                        module;
    ngx_proxy_wasm_target_t         *target;
} ngx_proxy_wasm_allow_t;


struct ngx_proxy_wasm_peer_s {
    ngx_proxy_wasm_target_t         *target;
    ngx_log_t                       *log;
    ngx_pool_t                      *pool;

    /* an upstream{} block: nginx's round robin state */
    ngx_http_upstream_rr_peer_data_t rrp;

    /* a literal: its addresses, tried in turn from `next` */
    ngx_addr_t                      *addrs;
    ngx_uint_t                       naddrs;
    ngx_uint_t                       next;

    /* a resolution in progress */
    ngx_resolver_ctx_t              *rctx;
    void                           (*handler)(void *data, ngx_int_t rc);
    void                            *data;
    ngx_int_t                        rc;         /* the answer */
    ngx_event_t                      posted;     /* delivers it: handler */
    unsigned                         in_resolve:1;
    unsigned                         answered:1;
};


static ngx_proxy_wasm_target_t *ngx_proxy_wasm_target_add(ngx_conf_t *cf,
    ngx_proxy_wasm_callout_conf_t *cc, ngx_str_t *name);
static ngx_int_t ngx_proxy_wasm_literal_get(ngx_peer_connection_t *pc,
    void *data);
static void ngx_proxy_wasm_literal_free(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static ngx_int_t ngx_proxy_wasm_rr_get(ngx_peer_connection_t *pc,
    void *data);
static void ngx_proxy_wasm_rr_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
static void ngx_proxy_wasm_resolve_handler(ngx_resolver_ctx_t *ctx);
static void ngx_proxy_wasm_resolve_posted(ngx_event_t *ev);


static ngx_int_t
ngx_proxy_wasm_str_is(ngx_str_t *s, const char *data, size_t len)
{
    return s->len == len && ngx_memcmp(s->data, data, len) == 0;
}


/* ---------------------------------------------------- configuration */


/*
 * proxy_wasm_callout_allow MODULE|* TARGET ...;  (http{}, stream{})
 * TARGET: host:port, [v6]:port or unix:/path. Errors: a target without a
 * port, a malformed one.
 */
char *
ngx_proxy_wasm_callout_allow_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t  *wc = (ngx_proxy_wasm_conf_t *)
                                     ((char *) conf + cmd->offset);

    ngx_str_t                       *value;
    ngx_uint_t                       i;
    ngx_proxy_wasm_allow_t          *a;
    ngx_proxy_wasm_target_t         *t;
    ngx_proxy_wasm_callout_conf_t   *cc;

    cc = &wc->callout;
    value = cf->args->elts;

    if (cc->allow == NULL) {
        cc->allow = ngx_array_create(cf->pool, 4,
                                     sizeof(ngx_proxy_wasm_allow_t));
        if (cc->allow == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0) {
        return "has an empty module name";
    }

    for (i = 2; i < cf->args->nelts; i++) {
        t = ngx_proxy_wasm_target_add(cf, cc, &value[i]);
        if (t == NULL) {
            return NGX_CONF_ERROR;
        }

        a = ngx_array_push(cc->allow);
        if (a == NULL) {
            return NGX_CONF_ERROR;
        }

        a->module = value[1];
        a->target = t;
    }

    return NGX_CONF_OK;
}


/* The literal target `name`, parsed (not resolved yet), shared by every
 * allow pair that names it. NULL: an error, logged. */
static ngx_proxy_wasm_target_t *
ngx_proxy_wasm_target_add(ngx_conf_t *cf, ngx_proxy_wasm_callout_conf_t *cc,
    ngx_str_t *name)
{
    ngx_uint_t                 i;
    ngx_proxy_wasm_target_t  **tp, *t;

    if (cc->targets == NULL) {
        cc->targets = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_proxy_wasm_target_t *));
        if (cc->targets == NULL) {
            return NULL;
        }
    }

    tp = cc->targets->elts;

    for (i = 0; i < cc->targets->nelts; i++) {
        if (tp[i]->name.len == name->len
            && ngx_memcmp(tp[i]->name.data, name->data, name->len) == 0)
        {
            return tp[i];
        }
    }

    t = ngx_pcalloc(cf->pool, sizeof(ngx_proxy_wasm_target_t));
    if (t == NULL) {
        return NULL;
    }

    t->name = *name;
    t->url.url = *name;
    t->url.no_resolve = 1;      /* at the end of http{}: see targets_init */

    if (ngx_parse_url(cf->pool, &t->url) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid callout target \"%V\": %s (expected "
                           "host:port, [v6]:port or unix:/path)",
                           name, t->url.err ? t->url.err : "bad syntax");
        return NULL;
    }

    if (t->url.family != AF_UNIX && t->url.no_port) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "callout target \"%V\" has no port", name);
        return NULL;
    }

    if (t->url.uri.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "callout target \"%V\" has a path: only "
                           "host:port, [v6]:port or unix:/path", name);
        return NULL;
    }

    tp = ngx_array_push(cc->targets);
    if (tp == NULL) {
        return NULL;
    }

    *tp = t;

    return t;
}


/*
 * At the end of http{} (init_main_conf, after ngx_http_core_module made
 * http{}'s resolver): every explicit upstream{} block becomes a target
 * (they come first: a block wins over an allowed literal of the same
 * name); hostnames of allowed literals are resolved now when http{} has
 * no `resolver`, else at call time.
 *
 * At the end of stream{} (http 0: cf is stream's, http{} may come later
 * in the file): the literals of stream{}'s proxy_wasm_callout_allow only,
 * their hostnames resolved now; the stream module adds http{}'s upstream{}
 * blocks once the whole configuration is read (init_module:
 * ngx_proxy_wasm_targets_upstreams).
 */
ngx_int_t
ngx_proxy_wasm_targets_init(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc,
    ngx_uint_t http)
{
    ngx_uint_t                       i;
    ngx_url_t                        u;
    ngx_resolver_t                  *resolver;
    ngx_http_core_loc_conf_t        *clcf;
    ngx_proxy_wasm_target_t        **tp, *t;
    ngx_proxy_wasm_callout_conf_t   *cc;

    cc = &wc->callout;

    clcf = http ? ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module)
                : NULL;
    cc->http_core = clcf;
    resolver = clcf ? clcf->resolver : NULL;

    /* the literals first resolved (or marked), then listed after the
     * upstream{} blocks */

    if (cc->targets) {
        tp = cc->targets->elts;

        for (i = 0; i < cc->targets->nelts; i++) {
            t = tp[i];

            if (t->url.family == AF_UNIX || t->url.naddrs) {
                continue;       /* an address already */
            }

            if (resolver && resolver->connections.nelts) {
                t->resolve = 1;
                t->core = clcf;
                continue;
            }

            /* no resolver: now, once (blocking is fine at config time) */
            ngx_memzero(&u, sizeof(ngx_url_t));
            u.url = t->name;

            if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "callout target \"%V\": %s (%s, "
                                   "hostnames are resolved at "
                                   "configuration time)",
                                   &t->name,
                                   u.err ? u.err : "host not found",
                                   http ? "with no \"resolver\" in http{}"
                                        : "in stream{}");
                return NGX_ERROR;
            }

            t->url = u;
        }
    }

    if (!http) {
        return NGX_OK;
    }

    return ngx_proxy_wasm_targets_upstreams(cf->pool, wc,
               ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_upstream_module));
}


/* The explicit upstream{} blocks of umcf (http{}'s; NULL: none) become the
 * first targets, before the literals already listed. */
ngx_int_t
ngx_proxy_wasm_targets_upstreams(ngx_pool_t *pool, ngx_proxy_wasm_conf_t *wc,
    void *main_conf)
{
    ngx_http_upstream_main_conf_t *umcf = main_conf;

    ngx_uint_t                       i;
    ngx_array_t                     *all;
    ngx_proxy_wasm_target_t        **tp, *t;
    ngx_http_upstream_srv_conf_t   **uscfp;
    ngx_proxy_wasm_callout_conf_t   *cc;

    cc = &wc->callout;

    all = ngx_array_create(pool, 4, sizeof(ngx_proxy_wasm_target_t *));
    if (all == NULL) {
        return NGX_ERROR;
    }

    if (umcf) {
        uscfp = umcf->upstreams.elts;

        for (i = 0; i < umcf->upstreams.nelts; i++) {
            if (!(uscfp[i]->flags & NGX_HTTP_UPSTREAM_CREATE)) {
                continue;   /* implicit (proxy_pass host:port): not a block */
            }

            t = ngx_pcalloc(pool, sizeof(ngx_proxy_wasm_target_t));
            tp = ngx_array_push(all);
            if (t == NULL || tp == NULL) {
                return NGX_ERROR;
            }

            t->name = uscfp[i]->host;
            t->upstream = uscfp[i];
            *tp = t;
        }
    }

    if (cc->targets) {
        tp = ngx_array_push_n(all, cc->targets->nelts);
        if (tp == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(tp, cc->targets->elts,
                   cc->targets->nelts * sizeof(ngx_proxy_wasm_target_t *));
    }

    cc->targets = all;

    return NGX_OK;
}


/* ------------------------------------------------------------ lookup */


ngx_int_t
ngx_proxy_wasm_target_find(ngx_proxy_wasm_mod_t *mod, const char *plugin,
    pw_str name, ngx_proxy_wasm_target_t **target, ngx_log_t *log)
{
    size_t                          plen;
    ngx_uint_t                      i;
    ngx_proxy_wasm_allow_t         *a;
    ngx_proxy_wasm_target_t       **tp, *t;
    ngx_proxy_wasm_callout_conf_t  *cc;

    cc = &mod->conf->callout;
    t = NULL;

    if (cc->targets) {
        tp = cc->targets->elts;

        for (i = 0; i < cc->targets->nelts; i++) {
            if (ngx_proxy_wasm_str_is(&tp[i]->name, name.data, name.len)) {
                t = tp[i];
                break;
            }
        }
    }

    if (t && t->upstream) {
        *target = t;
        return NGX_OK;
    }

    if (t && cc->allow) {
        plen = ngx_strlen(plugin);
        a = cc->allow->elts;

        for (i = 0; i < cc->allow->nelts; i++) {
            if (a[i].target == t
                && (ngx_proxy_wasm_str_is(&a[i].module, "*", 1)
                    || ngx_proxy_wasm_str_is(&a[i].module, plugin, plen)))
            {
                *target = t;
                return NGX_OK;
            }
        }
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "proxy_wasm \"%s\": callout to \"%*s\" refused: %s",
                  plugin, name.len, name.data,
                  t ? "not allowed to this module by "
                      "proxy_wasm_callout_allow"
                    : "no upstream{} block of that name, and not a target "
                      "of proxy_wasm_callout_allow");

    return NGX_DECLINED;
}


ngx_str_t *
ngx_proxy_wasm_target_name(ngx_proxy_wasm_target_t *t)
{
    return &t->name;
}


/* ------------------------------------------------------------- peers */


ngx_proxy_wasm_peer_t *
ngx_proxy_wasm_peer_create(ngx_proxy_wasm_target_t *t, ngx_pool_t *pool,
    ngx_log_t *log)
{
    ngx_uint_t                      n;
    ngx_proxy_wasm_peer_t          *p;
    ngx_http_upstream_rr_peers_t   *peers;

    p = ngx_pcalloc(pool, sizeof(ngx_proxy_wasm_peer_t));
    if (p == NULL) {
        return NULL;
    }

    p->target = t;
    p->pool = pool;
    p->log = log;
    p->posted.handler = ngx_proxy_wasm_resolve_posted;
    p->posted.data = p;
    p->posted.log = log;

    if (t->upstream) {
        /* as ngx_http_upstream_init_round_robin_peer, without a request */
        peers = t->upstream->peer.data;
        p->rrp.peers = peers;

        n = peers->number;

        if (peers->next && peers->next->number > n) {
            n = peers->next->number;
        }

        if (n <= 8 * sizeof(uintptr_t)) {
            p->rrp.tried = &p->rrp.data;

        } else {
            n = (n + (8 * sizeof(uintptr_t) - 1)) / (8 * sizeof(uintptr_t));

            p->rrp.tried = ngx_pcalloc(pool, n * sizeof(uintptr_t));
            if (p->rrp.tried == NULL) {
                return NULL;
            }
        }

        return p;
    }

    p->addrs = t->url.addrs;
    p->naddrs = t->url.naddrs;

    if (p->naddrs > 1) {
        p->next = ngx_random() % p->naddrs;
    }

    return p;
}


ngx_int_t
ngx_proxy_wasm_peer_resolve(ngx_proxy_wasm_peer_t *p,
    void (*handler)(void *data, ngx_int_t rc), void *data)
{
    ngx_resolver_ctx_t        *ctx, temp;
    ngx_proxy_wasm_target_t   *t;
    ngx_http_core_loc_conf_t  *clcf;

    t = p->target;

    if (t->upstream || !t->resolve) {
        return NGX_OK;
    }

    /* the resolver of http{} (targets_init saw it configured) */
    clcf = t->core;

    temp.name = t->url.host;

    ctx = ngx_resolve_start(clcf->resolver, &temp);
    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "callout target \"%V\": cannot start resolving "
                      "\"%V\"", &t->name, &t->url.host);
        return NGX_ERROR;
    }

    ctx->name = t->url.host;
    ctx->handler = ngx_proxy_wasm_resolve_handler;
    ctx->data = p;
    ctx->timeout = clcf->resolver_timeout;

    p->rctx = ctx;
    p->handler = handler;
    p->data = data;
    p->in_resolve = 1;
    p->answered = 0;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        /* the resolver freed ctx */
        p->rctx = NULL;
        p->in_resolve = 0;
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "callout target \"%V\": cannot resolve \"%V\"",
                      &t->name, &t->url.host);
        return NGX_ERROR;
    }

    p->in_resolve = 0;

    if (p->answered) {          /* from the resolver's cache, at once */
        return p->rc;
    }

    return NGX_AGAIN;
}


void
ngx_proxy_wasm_peer_init(ngx_proxy_wasm_peer_t *p, ngx_peer_connection_t *pc)
{
    ngx_http_upstream_rr_peers_t  *peers;

    pc->data = p;
    pc->log = p->log;
    pc->name = &p->target->name;

    if (p->target->upstream) {
        peers = p->rrp.peers;
        pc->get = ngx_proxy_wasm_rr_get;
        pc->free = ngx_proxy_wasm_rr_free;
        pc->tries = peers->number + (peers->next ? peers->next->number : 0);
        return;
    }

    pc->get = ngx_proxy_wasm_literal_get;
    pc->free = ngx_proxy_wasm_literal_free;
    pc->tries = p->naddrs;
}


void
ngx_proxy_wasm_peer_done(ngx_proxy_wasm_peer_t *p)
{
    if (p->rctx) {
        ngx_resolve_name_done(p->rctx);
        p->rctx = NULL;
    }

    if (p->posted.posted) {
        ngx_delete_posted_event(&p->posted);
    }

    p->handler = NULL;
}


static ngx_int_t
ngx_proxy_wasm_rr_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_proxy_wasm_peer_t  *p = data;

    return ngx_http_upstream_get_round_robin_peer(pc, &p->rrp);
}


static void
ngx_proxy_wasm_rr_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_proxy_wasm_peer_t  *p = data;

    ngx_http_upstream_free_round_robin_peer(pc, &p->rrp, state);
}


static ngx_int_t
ngx_proxy_wasm_literal_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_proxy_wasm_peer_t  *p = data;

    ngx_addr_t  *a;

    if (p->naddrs == 0) {
        return NGX_BUSY;
    }

    a = &p->addrs[p->next];
    p->next = (p->next + 1) % p->naddrs;

    pc->sockaddr = a->sockaddr;
    pc->socklen = a->socklen;
    pc->name = &a->name;

    return NGX_OK;
}


static void
ngx_proxy_wasm_literal_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    if (pc->tries) {
        pc->tries--;
    }
}


/*
 * The resolver's answer: the addresses (with the target's port) into the
 * call's pool; then the caller's handler from a posted event -- unless it
 * came inside ngx_resolve_name (peer_resolve answers it). Never at once:
 * nginx's resolver calls the handlers of every context waiting for the
 * same name in one loop, and the caller's handler may run a plugin whose
 * trap cancels another call waiting there (ngx_resolve_name_done on a
 * context the loop still holds: used after it is freed).
 */
static void
ngx_proxy_wasm_resolve_handler(ngx_resolver_ctx_t *ctx)
{
    ngx_proxy_wasm_peer_t  *p = ctx->data;

    ngx_uint_t    i;
    ngx_addr_t   *a;
    socklen_t     len;
    struct sockaddr *sa;

    p->rc = NGX_ERROR;

    if (ctx->state) {
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "callout target \"%V\": \"%V\" could not be "
                      "resolved (%i: %s)", &p->target->name, &ctx->name,
                      ctx->state, ngx_resolver_strerror(ctx->state));
        goto done;
    }

    a = ngx_pcalloc(p->pool, ctx->naddrs * sizeof(ngx_addr_t));
    if (a == NULL) {
        goto done;
    }

    for (i = 0; i < ctx->naddrs; i++) {
        len = ctx->addrs[i].socklen;

        sa = ngx_palloc(p->pool, len);
        if (sa == NULL) {
            goto done;
        }

        ngx_memcpy(sa, ctx->addrs[i].sockaddr, len);
        ngx_inet_set_port(sa, p->target->url.port);

        a[i].sockaddr = sa;
        a[i].socklen = len;
        a[i].name.data = ngx_pnalloc(p->pool, NGX_SOCKADDR_STRLEN);
        if (a[i].name.data == NULL) {
            goto done;
        }

        a[i].name.len = ngx_sock_ntop(sa, len, a[i].name.data,
                                      NGX_SOCKADDR_STRLEN, 1);
    }

    p->addrs = a;
    p->naddrs = ctx->naddrs;
    p->next = ctx->naddrs > 1 ? ngx_random() % ctx->naddrs : 0;
    p->rc = NGX_OK;

done:

    ngx_resolve_name_done(ctx);
    p->rctx = NULL;
    p->answered = 1;

    if (!p->in_resolve && p->handler) {
        ngx_post_event(&p->posted, &ngx_posted_events);
    }
}


static void
ngx_proxy_wasm_resolve_posted(ngx_event_t *ev)
{
    ngx_proxy_wasm_peer_t  *p = ev->data;

    if (p->handler) {
        p->handler(p->data, p->rc);
    }
}
