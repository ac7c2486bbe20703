/*
 * ngx_proxy_wasm_shm.c -- the store of shared data, shared queues and
 * metrics (pw_store, include/pwasm.h) in a shared-memory zone, for any
 * subsystem: the proxy_wasm_shm directive; the zone's slab pool as the
 * store's memory and lock; the wake-up channels that run
 * proxy_on_queue_ready in the worker that registered a queue; the host
 * hooks of the shared area (store, queue_ready). The store's rules (CAS,
 * eviction, queues, metric slots, the Prometheus text) are the library's:
 * nginx gives it memory, a lock and a wake-up, nothing more.
 *
 * Processes: the master maps the zone and opens the store while it loads
 * the configuration (the zone's init callback), and makes one pipe per
 * metric slot (init_module); workers inherit both through fork. Slot 0 is
 * the master, or the one process of `master_process off`; worker N uses
 * slot N + 1, as its metric slot and as the owner id of the queues it
 * registers. Each worker watches the read end of its own slot's pipe;
 * queue_ready writes one byte to the owner's pipe, and the owner calls
 * pw_vm_deliver_queues() on its VMs on its next event loop turn.
 *
 * One store for http{} and stream{}: both modules declare the same zone
 * ("proxy_wasm", tagged with a symbol of the nginx binary, the same for
 * both .so files), so a vm_id's shared data and queues, and the metrics,
 * are the same for the plugins of both. The first module to declare it
 * owns the zone's init callback and the wake-up pipes; the zone's data
 * (ngx_proxy_wasm_shm_t) records both modules. Each module opens its own
 * pw_store handle with its own copy of the library (the owner in the init
 * callback, the other from there through the function it registered),
 * and each has its own range of metric slots: subsystem S of process slot
 * P uses store slot S * nproc + P, so a queue's owner id names the module
 * that registered it, and the owner's wake-up handler lets each module
 * deliver its own queues (ngx_proxy_wasm_shm_t.deliver).
 *
 * Reload: nginx keeps a zone of the same name, size and module with its
 * contents; the new configuration's store attaches to the store root
 * recorded in the slab pool (shpool->data), so shared data, queues and
 * metrics survive, and keeps the number of slots it was made with (old
 * workers still write to theirs). A new configuration makes new pipes;
 * old workers keep theirs until they exit.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_proxy_wasm.h"


/* The zone's size without proxy_wasm_shm. */
#define NGX_PROXY_WASM_SHM_SIZE  (1024 * 1024)

/* The zone's tag: an address of the nginx binary that both .so files see
 * alike; no nginx module tags a zone with it. */
#define NGX_PROXY_WASM_SHM_TAG   ((void *) &ngx_core_module)

/* The layout revision of ngx_proxy_wasm_shm_t: change it with the struct */
#define NGX_PROXY_WASM_SHM_REV   2


static ngx_int_t ngx_proxy_wasm_shm_init(ngx_shm_zone_t *zone, void *data);
static void ngx_proxy_wasm_shm_cleanup(void *data);
static void ngx_proxy_wasm_wake_cleanup(void *data);
static void ngx_proxy_wasm_wake_handler(ngx_event_t *rev);
static void ngx_proxy_wasm_deliver_queues(ngx_proxy_wasm_conf_t *wc,
    ngx_log_t *log);
static void ngx_proxy_wasm_wake_slot(ngx_proxy_wasm_conf_t *wc,
    ngx_uint_t slot);
static void ngx_proxy_wasm_shm_stamp(u_char *buf, size_t size);
static ngx_int_t ngx_proxy_wasm_shm_settle(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wc, ngx_proxy_wasm_shm_t *shm);
static ngx_int_t ngx_proxy_wasm_shm_open(ngx_proxy_wasm_conf_t *wc,
    ngx_shm_zone_t *zone, void *root);
static void *ngx_proxy_wasm_shm_rule(ngx_conf_t *cf, ngx_array_t **rules,
    size_t size);
static pw_store_quota *ngx_proxy_wasm_shm_quota_find(ngx_array_t *quotas,
    pw_store_quota *q);
static ngx_int_t ngx_proxy_wasm_shm_settle_quota(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wc, ngx_proxy_wasm_shm_t *shm);

static ngx_str_t  ngx_proxy_wasm_shm_name = ngx_string("proxy_wasm");


/* ------------------------------------------------------ the directive */


/* proxy_wasm_shm SIZE [eviction=lru|none] */
char *
ngx_proxy_wasm_shm_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_proxy_wasm_conf_t *wc = (ngx_proxy_wasm_conf_t *)
                                    ((char *) conf + cmd->offset);

    ssize_t     size;
    ngx_str_t  *value;

    if (wc->shm_size != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_shm: invalid size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    /* the floor of nginx's own zones (limit_req, ...): a slab pool needs
     * a few pages for itself */
    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_shm: size \"%V\" is too small, "
                           "the minimum is %uz",
                           &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    wc->shm_evict = 1;

    if (cf->args->nelts == 3) {
        if (ngx_strcmp(value[2].data, "eviction=lru") == 0) {
            wc->shm_evict = 1;

        } else if (ngx_strcmp(value[2].data, "eviction=none") == 0) {
            wc->shm_evict = 0;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    wc->shm_size = size;
    wc->shm_file = cf->conf_file->file.name;
    wc->shm_line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/* A new zeroed element of *rules (made on first use), or NULL. */
static void *
ngx_proxy_wasm_shm_rule(ngx_conf_t *cf, ngx_array_t **rules, size_t size)
{
    void  *e;

    if (*rules == NULL) {
        *rules = ngx_array_create(cf->pool, 4, size);
        if (*rules == NULL) {
            return NULL;
        }
    }

    e = ngx_array_push(*rules);
    if (e != NULL) {
        ngx_memzero(e, size);
    }

    return e;
}


/* proxy_wasm_shm_ttl TIME [vm_id=ID] [prefix=KEY_PREFIX]: shared data
 * keys of that vm_id (any without) starting with that prefix (any key
 * without) are forgotten TIME after their last write; the first matching
 * directive applies. */
char *
ngx_proxy_wasm_shm_ttl_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t *wc = (ngx_proxy_wasm_conf_t *)
                                    ((char *) conf + cmd->offset);

    ngx_int_t      ms;
    ngx_str_t     *value, *name;
    ngx_uint_t     i;
    pw_store_ttl  *t;

    value = cf->args->elts;

    if (wc->shm_ttl && wc->shm_ttl->nelts == PW_STORE_TTL_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_shm_ttl: more than %d rules",
                           PW_STORE_TTL_MAX);
        return NGX_CONF_ERROR;
    }

    ms = ngx_parse_time(&value[1], 0);

    if (ms == NGX_ERROR || ms == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_shm_ttl: invalid time \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    t = ngx_proxy_wasm_shm_rule(cf, &wc->shm_ttl, sizeof(pw_store_ttl));
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    t->ttl_ms = (uint64_t) ms;

    for (i = 2; i < cf->args->nelts; i++) {
        name = &value[i];

        if (ngx_strncmp(name->data, "vm_id=", 6) == 0) {
            t->vm_id.data = (const char *) name->data + 6;
            t->vm_id.len = name->len - 6;

        } else if (ngx_strncmp(name->data, "prefix=", 7) == 0) {
            t->prefix.data = (const char *) name->data + 7;
            t->prefix.len = name->len - 7;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", name);
            return NGX_CONF_ERROR;
        }
    }

    if (t->vm_id.len > PW_STORE_TTL_NAME_MAX
        || t->prefix.len > PW_STORE_TTL_NAME_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_shm_ttl: vm_id and prefix may have "
                           "at most %d bytes", PW_STORE_TTL_NAME_MAX);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* proxy_wasm_shm_quota SIZE [vm_id=ID]: the shared data of that vm_id
 * (without: of every vm_id that has no quota of its own) may take at most
 * SIZE bytes, each key counted as 64 + vm_id + key + value bytes. One per
 * vm_id, and one without, in http{} and stream{} together. */
char *
ngx_proxy_wasm_shm_quota_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t *wc = (ngx_proxy_wasm_conf_t *)
                                    ((char *) conf + cmd->offset);

    ssize_t          size;
    ngx_str_t       *value;
    pw_store_quota  *q;

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || size == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_shm_quota: invalid size \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    q = ngx_proxy_wasm_shm_rule(cf, &wc->shm_quota, sizeof(pw_store_quota));
    if (q == NULL) {
        return NGX_CONF_ERROR;
    }

    q->bytes = (uint64_t) size;

    if (cf->args->nelts == 3) {
        if (value[2].len <= 6
            || ngx_strncmp(value[2].data, "vm_id=", 6) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        q->vm_id.data = (const char *) value[2].data + 6;
        q->vm_id.len = value[2].len - 6;
    }

    if (q->vm_id.len > PW_STORE_TTL_NAME_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_shm_quota: a vm_id may have at most "
                           "%d bytes", PW_STORE_TTL_NAME_MAX);
        return NGX_CONF_ERROR;
    }

    if (ngx_proxy_wasm_shm_quota_find(wc->shm_quota, q) != q) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_shm_quota: a second quota for %s%*s",
                           q->vm_id.len ? "vm_id " : "every vm_id",
                           q->vm_id.len, q->vm_id.data);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* The first quota of quotas for q's vm_id. */
static pw_store_quota *
ngx_proxy_wasm_shm_quota_find(ngx_array_t *quotas, pw_store_quota *q)
{
    ngx_uint_t       i;
    pw_store_quota  *e;

    e = quotas->elts;

    for (i = 0; i < quotas->nelts; i++) {
        if (e[i].vm_id.len == q->vm_id.len
            && ngx_strncmp(e[i].vm_id.data, q->vm_id.data, q->vm_id.len) == 0)
        {
            return &e[i];
        }
    }

    return NULL;
}


/*
 * Declares the store's zone for the subsystem `subsys`
 * (NGX_PROXY_WASM_SHM_*), at the end of its block: the one zone of http{}
 * and stream{}. The first declaration makes the zone's data and takes its
 * init callback; the second joins it. proxy_wasm_shm may be given in
 * either block or in both, alike (else an error naming both places);
 * none: NGX_PROXY_WASM_SHM_SIZE with eviction=lru. The proxy_wasm_shm_ttl
 * rules of both blocks apply, those of the first block first.
 */
ngx_int_t
ngx_proxy_wasm_shm_add(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc,
    ngx_uint_t subsys)
{
    u_char                 stamp[sizeof(((ngx_proxy_wasm_shm_t *) 0)->stamp)];
    ngx_shm_zone_t        *zone;
    ngx_proxy_wasm_shm_t  *shm;

    /* size 0: nginx leaves it to us (below), whichever block comes first */
    zone = ngx_shared_memory_add(cf, &ngx_proxy_wasm_shm_name, 0,
                                 NGX_PROXY_WASM_SHM_TAG);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    ngx_proxy_wasm_shm_stamp(stamp, sizeof(stamp));

    shm = zone->data;

    if (shm == NULL) {
        shm = ngx_pcalloc(cf->pool, sizeof(ngx_proxy_wasm_shm_t));
        if (shm == NULL) {
            return NGX_ERROR;
        }

        if (ngx_array_init(&shm->ttl, cf->pool, 4, sizeof(pw_store_ttl))
            != NGX_OK
            || ngx_array_init(&shm->quota, cf->pool, 4,
                              sizeof(pw_store_quota))
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_memcpy(shm->stamp, stamp, sizeof(stamp));
        shm->owner = subsys;
        shm->evict = 1;

        zone->init = ngx_proxy_wasm_shm_init;
        zone->data = shm;

    } else if (ngx_strncmp(shm->stamp, stamp, sizeof(stamp)) != 0) {
        /* the stamp is the struct's first member in every build */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm: the http and stream modules share "
                           "one store but are of different builds "
                           "(\"%*s\" and \"%s\"): load the two .so files "
                           "of one build",
                           ngx_strnlen((u_char *) shm->stamp, sizeof(stamp)),
                           shm->stamp, stamp);
        return NGX_ERROR;
    }

    if (ngx_proxy_wasm_shm_settle(cf, wc, shm) != NGX_OK) {
        return NGX_ERROR;
    }

    zone->shm.size = shm->size ? shm->size : NGX_PROXY_WASM_SHM_SIZE;

    shm->declared |= (ngx_uint_t) 1 << subsys;
    shm->conf[subsys] = wc;
    shm->deliver[subsys] = ngx_proxy_wasm_deliver_queues;
    shm->attach[subsys] = ngx_proxy_wasm_shm_open;

    if (wc->mods.nelts) {
        shm->queues = 1;
    }

    ngx_conf_init_size_value(wc->shm_size, zone->shm.size);
    ngx_conf_init_uint_value(wc->shm_evict, shm->evict);

    wc->shm = shm;
    wc->shm_zone = zone;
    wc->shm_subsys = subsys;

    return NGX_OK;
}


/* "pwasm-shm <version> r<layout revision> <sizes>": two builds whose
 * zone data could differ do not match. */
static void
ngx_proxy_wasm_shm_stamp(u_char *buf, size_t size)
{
    u_char  *p;

    ngx_memzero(buf, size);

    p = ngx_snprintf(buf, size - 1, "pwasm-shm %s r%d %uz %uz %uz",
                     PWASM_VERSION_STRING, NGX_PROXY_WASM_SHM_REV,
                     sizeof(ngx_proxy_wasm_shm_t),
                     sizeof(ngx_proxy_wasm_conf_t), sizeof(pw_store_ttl));
    *p = '\0';
}


/* wc's proxy_wasm_shm and proxy_wasm_shm_ttl into the zone's data, against
 * what the other block gave. */
static ngx_int_t
ngx_proxy_wasm_shm_settle(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc,
    ngx_proxy_wasm_shm_t *shm)
{
    pw_store_ttl  *t;

    if (wc->shm_size != NGX_CONF_UNSET_SIZE) {

        if (shm->size_file.data == NULL) {
            shm->size = wc->shm_size;
            shm->evict = wc->shm_evict;
            shm->size_file = wc->shm_file;
            shm->size_line = wc->shm_line;

        } else if (shm->size != wc->shm_size || shm->evict != wc->shm_evict) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "proxy_wasm_shm: %uz bytes, eviction=%s in "
                               "%V:%ui, and %uz bytes, eviction=%s in "
                               "%V:%ui: http{} and stream{} share one "
                               "store, give them the same size and "
                               "eviction",
                               shm->size, shm->evict ? "lru" : "none",
                               &shm->size_file, shm->size_line,
                               wc->shm_size, wc->shm_evict ? "lru" : "none",
                               &wc->shm_file, wc->shm_line);
            return NGX_ERROR;
        }
    }

    if (ngx_proxy_wasm_shm_settle_quota(cf, wc, shm) != NGX_OK) {
        return NGX_ERROR;
    }

    if (wc->shm_ttl == NULL || wc->shm_ttl->nelts == 0) {
        return NGX_OK;
    }

    if (shm->ttl.nelts + wc->shm_ttl->nelts > PW_STORE_TTL_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "proxy_wasm_shm_ttl: more than %d rules in "
                           "http{} and stream{} together (they share one "
                           "store)", PW_STORE_TTL_MAX);
        return NGX_ERROR;
    }

    t = ngx_array_push_n(&shm->ttl, wc->shm_ttl->nelts);
    if (t == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(t, wc->shm_ttl->elts,
               wc->shm_ttl->nelts * sizeof(pw_store_ttl));

    return NGX_OK;
}


/* wc's proxy_wasm_shm_quota into the zone's data: a vm_id's quota given in
 * both blocks must be the same. */
static ngx_int_t
ngx_proxy_wasm_shm_settle_quota(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wc,
    ngx_proxy_wasm_shm_t *shm)
{
    ngx_uint_t       i;
    pw_store_quota  *q, *have, *add;

    if (wc->shm_quota == NULL) {
        return NGX_OK;
    }

    q = wc->shm_quota->elts;

    for (i = 0; i < wc->shm_quota->nelts; i++) {
        have = ngx_proxy_wasm_shm_quota_find(&shm->quota, &q[i]);

        if (have && have->bytes != q[i].bytes) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "proxy_wasm_shm_quota: %uL and %uL bytes for "
                               "%s%*s: http{} and stream{} share one store, "
                               "give them the same quota",
                               have->bytes, q[i].bytes,
                               q[i].vm_id.len ? "vm_id " : "every vm_id",
                               q[i].vm_id.len, q[i].vm_id.data);
            return NGX_ERROR;
        }

        if (have) {
            continue;
        }

        if (shm->quota.nelts == PW_STORE_TTL_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "proxy_wasm_shm_quota: more than %d quotas in "
                               "http{} and stream{} together",
                               PW_STORE_TTL_MAX);
            return NGX_ERROR;
        }

        add = ngx_array_push(&shm->quota);
        if (add == NULL) {
            return NGX_ERROR;
        }

        *add = q[i];
    }

    return NGX_OK;
}


/* ------------------------------------------------ the store's memory */


/* pw_store_mem over a slab pool; alloc and free run with the lock held */

static void *
ngx_proxy_wasm_shm_alloc(void *region, size_t size)
{
    return ngx_slab_alloc_locked(region, size);
}


static void
ngx_proxy_wasm_shm_free(void *region, void *p)
{
    ngx_slab_free_locked(region, p);
}


/* shpool->mutex: the one lock nginx releases when a worker dies holding
 * it (ngx_unlock_mutexes) */

static void
ngx_proxy_wasm_shm_lock(void *region)
{
    ngx_shmtx_lock(&((ngx_slab_pool_t *) region)->mutex);
}


static void
ngx_proxy_wasm_shm_unlock(void *region)
{
    ngx_shmtx_unlock(&((ngx_slab_pool_t *) region)->mutex);
}


/*
 * The zone's init callback (the owner's: the first module to declare the
 * zone), in the master while it loads a configuration (and in nginx -t):
 * opens the store, a new one in a new zone, or the one of the zone kept
 * from the previous configuration (`data` is then that configuration's
 * zone data; the store root is in the slab pool); then the other module
 * opens its own handle on it. A failure fails the configuration (a reload
 * keeps the running one).
 */
static ngx_int_t
ngx_proxy_wasm_shm_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_proxy_wasm_shm_t *shm = zone->data;

    void                   *root;
    ngx_uint_t              i, kept;
    ngx_slab_pool_t        *shpool;
    ngx_proxy_wasm_conf_t  *wc;

    wc = shm->conf[shm->owner];
    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    root = (data || zone->shm.exists) ? shpool->data : NULL;

    if (root == NULL) {
        /* a full zone is the store's business (it evicts, or refuses the
         * write and says so): no "ngx_slab_alloc() failed" lines */
        shpool->log_nomem = 0;
    }

    kept = (root != NULL);

    if (ngx_proxy_wasm_shm_open(wc, zone, root) != NGX_OK) {
        return NGX_ERROR;
    }

    root = pw_store_root(wc->store);
    shpool->data = root;

    shm->nproc = wc->slots;

    ngx_log_debug3(NGX_LOG_DEBUG_CORE, wc->cycle->log, 0,
                   "proxy_wasm_shm: store %s, %ui process slots, "
                   "eviction %s", kept ? "kept" : "new", shm->nproc,
                   shm->evict ? "lru" : "none");

    for (i = 0; i < NGX_PROXY_WASM_SHM_NSUBSYS; i++) {
        if (i == shm->owner || shm->conf[i] == NULL) {
            continue;
        }

        /* its own .so's function, its own handle and pw_store_mem */
        if (shm->attach[i](shm->conf[i], zone, root) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * wc->store: a handle of this .so's library on the store at root in the
 * zone (NULL root: a new store), with this .so's pw_store_mem functions;
 * closed with the configuration's pool. wc->slots: the process slots.
 * The other module's is called through ngx_proxy_wasm_shm_t.attach.
 */
static ngx_int_t
ngx_proxy_wasm_shm_open(ngx_proxy_wasm_conf_t *wc, ngx_shm_zone_t *zone,
    void *root)
{
    int                    rc;
    char                   err[PW_ERRLEN];
    ngx_uint_t             nproc;
    ngx_core_conf_t       *ccf;
    pw_store_config        cfg;
    ngx_pool_cleanup_t    *cln;
    ngx_proxy_wasm_shm_t  *shm;

    shm = wc->shm;

    ccf = (ngx_core_conf_t *) ngx_get_conf(wc->cycle->conf_ctx,
                                           ngx_core_module);

    /* per subsystem, one slot per worker, and slot 0 for a single
     * process; a kept store keeps the number it was made with
     * (pw_store_open): the old workers, still finishing their requests,
     * add to their metric slots without a lock. Workers beyond it share
     * slot 0 (ngx_proxy_wasm_slot) */
    nproc = (ccf->worker_processes > 0 ? ccf->worker_processes : 1) + 1;

    ngx_memzero(&cfg, sizeof(pw_store_config));
    cfg.evict_lru = shm->evict ? 1 : 0;
    cfg.slots = (uint32_t) (nproc * NGX_PROXY_WASM_SHM_NSUBSYS);
    cfg.ttl = shm->ttl.elts;
    cfg.nttl = shm->ttl.nelts;
    cfg.quota = shm->quota.elts;
    cfg.nquota = shm->quota.nelts;

    wc->shm_mem.region = zone->shm.addr;
    wc->shm_mem.alloc = ngx_proxy_wasm_shm_alloc;
    wc->shm_mem.free = ngx_proxy_wasm_shm_free;
    wc->shm_mem.lock = ngx_proxy_wasm_shm_lock;
    wc->shm_mem.unlock = ngx_proxy_wasm_shm_unlock;

    cln = ngx_pool_cleanup_add(wc->cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    rc = pw_store_open(&wc->shm_mem, &cfg, root, &wc->store, err,
                       sizeof(err));
    if (rc != PW_OK) {
        wc->store = NULL;

        if (shm->size_file.data) {
            ngx_log_error(NGX_LOG_EMERG, wc->cycle->log, 0,
                          "proxy_wasm_shm: cannot open the store in the "
                          "zone \"%V\" of %uz bytes: %s in %V:%ui",
                          &zone->shm.name, zone->shm.size, err,
                          &shm->size_file, shm->size_line);
        } else {
            ngx_log_error(NGX_LOG_EMERG, wc->cycle->log, 0,
                          "proxy_wasm_shm: cannot open the store in the "
                          "zone \"%V\" of %uz bytes (the default size): %s",
                          &zone->shm.name, zone->shm.size, err);
        }

        return NGX_ERROR;
    }

    cln->handler = ngx_proxy_wasm_shm_cleanup;
    cln->data = wc;

    nproc = pw_store_slots(wc->store) / NGX_PROXY_WASM_SHM_NSUBSYS;
    wc->slots = nproc ? nproc : 1;

    return NGX_OK;
}


/* With the configuration's pool: the handle of this process (the data
 * stays in the zone). */
static void
ngx_proxy_wasm_shm_cleanup(void *data)
{
    ngx_proxy_wasm_conf_t *wc = data;

    if (wc->store) {
        pw_store_close(wc->store);
        wc->store = NULL;
    }
}


/* ------------------------------------------------ the canary's store */


/* pw_store_mem over a pool: freed all at once with it */

static void *
ngx_proxy_wasm_scratch_alloc(void *region, size_t size)
{
    return ngx_pmemalign(region, size, 16);
}


static void
ngx_proxy_wasm_scratch_free(void *region, void *p)
{
    (void) ngx_pfree(region, p);
}


static void
ngx_proxy_wasm_scratch_nolock(void *region)
{
    (void) region;
}


/*
 * A store in `pool` for the configuration-time canary: the zone does not
 * exist yet, and what a canary writes must not reach the store of the
 * running workers. wc->store until ngx_proxy_wasm_scratch_store_close();
 * on failure (logged) the canary runs without one (its shared data, queue
 * and metric hostcalls answer Unimplemented).
 */
ngx_int_t
ngx_proxy_wasm_scratch_store_open(ngx_proxy_wasm_conf_t *wc,
    ngx_pool_t *pool, ngx_log_t *log)
{
    int              rc;
    char             err[PW_ERRLEN];
    pw_store_config  cfg;

    ngx_memzero(&cfg, sizeof(pw_store_config));
    cfg.evict_lru = (wc->shm_evict == 0) ? 0 : 1;
    cfg.slots = 1;

    wc->shm_mem.region = pool;
    wc->shm_mem.alloc = ngx_proxy_wasm_scratch_alloc;
    wc->shm_mem.free = ngx_proxy_wasm_scratch_free;
    wc->shm_mem.lock = ngx_proxy_wasm_scratch_nolock;
    wc->shm_mem.unlock = ngx_proxy_wasm_scratch_nolock;

    rc = pw_store_open(&wc->shm_mem, &cfg, NULL, &wc->store, err,
                       sizeof(err));
    if (rc != PW_OK) {
        wc->store = NULL;
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "proxy_wasm: plugins start without shared data, "
                      "queues and metrics at configuration time: %s", err);
    }

    return NGX_OK;
}


void
ngx_proxy_wasm_scratch_store_close(ngx_proxy_wasm_conf_t *wc)
{
    if (wc->store) {
        pw_store_close(wc->store);
        wc->store = NULL;
    }

    ngx_memzero(&wc->shm_mem, sizeof(pw_store_mem));
}


/* ----------------------------------------------- wake-up channels */


/*
 * In the master, after the zone was set up (init_module of the
 * subsystem's module): one non-blocking, close-on-exec pipe per process
 * slot, inherited by the workers of this configuration; made by whichever
 * module's init_module comes first, used by both (the zone's data holds
 * them).
 */
ngx_int_t
ngx_proxy_wasm_shm_init_module(ngx_cycle_t *cycle, ngx_proxy_wasm_conf_t *wc)
{
    int                    fd[2];
    ngx_uint_t             i;
    ngx_pool_cleanup_t    *cln;
    ngx_proxy_wasm_shm_t  *shm;

    shm = wc->shm;

    /* no module in either block: no queue (the zone serves
     * proxy_wasm_metrics only) */
    if (shm == NULL || wc->store == NULL || !shm->queues || ngx_test_config)
    {
        return NGX_OK;
    }

    if (shm->wake) {
        wc->wake = shm->wake;           /* the other module made them */
        wc->nwake = shm->nproc;
        return NGX_OK;
    }

    shm->wake = ngx_palloc(cycle->pool,
                           shm->nproc * sizeof(ngx_proxy_wasm_wake_t));
    if (shm->wake == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < shm->nproc; i++) {
        shm->wake[i].fd[0] = -1;
        shm->wake[i].fd[1] = -1;
    }

    wc->wake = shm->wake;
    wc->nwake = shm->nproc;

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_proxy_wasm_wake_cleanup;
    cln->data = wc;

    for (i = 0; i < wc->nwake; i++) {
        if (pipe2(fd, O_NONBLOCK | O_CLOEXEC) == -1) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                          "proxy_wasm: pipe2() for the shared queue "
                          "wake-ups failed");
            return NGX_ERROR;
        }

        wc->wake[i].fd[0] = fd[0];
        wc->wake[i].fd[1] = fd[1];
    }

    return NGX_OK;
}


static void
ngx_proxy_wasm_wake_cleanup(void *data)
{
    ngx_proxy_wasm_conf_t *wc = data;

    ngx_uint_t  i, j;

    for (i = 0; i < wc->nwake; i++) {
        for (j = 0; j < 2; j++) {
            if (wc->wake[i].fd[j] != -1) {
                (void) close(wc->wake[i].fd[j]);
                wc->wake[i].fd[j] = -1;
            }
        }
    }
}


/* This process's slot: worker N is N + 1, 0 for a single process; 0 too
 * for a worker beyond the slots of a store kept from a configuration with
 * fewer workers (those workers share slot 0 and its pipe). Its store slot
 * is wc->shm_subsys * wc->slots + this. */
static ngx_uint_t
ngx_proxy_wasm_slot(ngx_proxy_wasm_conf_t *wc)
{
    ngx_uint_t  slot;

    slot = (ngx_process == NGX_PROCESS_WORKER) ? ngx_worker + 1 : 0;

    return (slot < wc->slots) ? slot : 0;
}


/*
 * At worker (or single process) start, before any plugin runs: takes the
 * subsystem's metric slot of this process; the zone's owner watches the
 * read end of the process's pipe (for both modules).
 */
ngx_int_t
ngx_proxy_wasm_shm_init_process(ngx_cycle_t *cycle, ngx_proxy_wasm_conf_t *wc)
{
    ngx_uint_t         i, slot;
    ngx_event_t       *rev;
    ngx_connection_t  *c;

    slot = ngx_proxy_wasm_slot(wc);

    if (wc->store) {
        pw_store_set_slot(wc->store,
                          (uint32_t) (wc->shm_subsys * wc->slots + slot));
    }

    if (wc->wake == NULL || slot >= wc->nwake
        || wc->shm->owner != wc->shm_subsys)
    {
        return NGX_OK;
    }

    /* the other slots' read ends are their workers' */
    for (i = 0; i < wc->nwake; i++) {
        if (i != slot && wc->wake[i].fd[0] != -1) {
            (void) close(wc->wake[i].fd[0]);
            wc->wake[i].fd[0] = -1;
        }
    }

    c = ngx_get_connection(wc->wake[slot].fd[0], cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    wc->wake[slot].fd[0] = -1;          /* closed with the connection */
    wc->wake_conn = c;

    c->data = wc;

    rev = c->read;
    rev->handler = ngx_proxy_wasm_wake_handler;
    rev->log = cycle->log;
    rev->channel = 1;                   /* not a client: no "open socket
                                           left" alert at exit */
    c->write->log = cycle->log;

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_close_connection(c);
        wc->wake_conn = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_proxy_wasm_shm_exit_process(ngx_cycle_t *cycle, ngx_proxy_wasm_conf_t *wc)
{
    (void) cycle;

    if (wc->wake_conn) {
        ngx_close_connection(wc->wake_conn);
        wc->wake_conn = NULL;
    }
}


/* The read end of this worker's pipe is readable: something was enqueued
 * in a queue one of its root contexts registered, in either module: each
 * module delivers its own (its function, its configuration). */
static void
ngx_proxy_wasm_wake_handler(ngx_event_t *rev)
{
    u_char                  buf[64];
    ssize_t                 n;
    ngx_err_t               err;
    ngx_uint_t              i;
    ngx_connection_t       *c;
    ngx_proxy_wasm_shm_t   *shm;
    ngx_proxy_wasm_conf_t  *wc;

    c = rev->data;
    wc = c->data;
    shm = wc->shm;

    /* one byte or many: one delivery takes every item waiting */
    for ( ;; ) {
        n = read(c->fd, buf, sizeof(buf));

        if (n > 0) {
            continue;
        }

        if (n == -1) {
            err = ngx_errno;

            if (err == NGX_EINTR) {
                continue;
            }

            if (err != NGX_EAGAIN) {
                ngx_log_error(NGX_LOG_ALERT, rev->log, err,
                              "proxy_wasm: read() of the shared queue "
                              "wake-up pipe failed");
            }
        }

        break;
    }

    rev->ready = 0;

    for (i = 0; i < NGX_PROXY_WASM_SHM_NSUBSYS; i++) {
        if (shm->conf[i] && shm->deliver[i]) {
            shm->deliver[i](shm->conf[i], rev->log);
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, rev->log, 0,
                      "proxy_wasm: cannot watch the shared queue wake-up "
                      "pipe any more");
    }
}


/* pw_vm_deliver_queues() on every VM of this worker. */
static void
ngx_proxy_wasm_deliver_queues(ngx_proxy_wasm_conf_t *wc, ngx_log_t *log)
{
    int                     rc;
    ngx_uint_t              i, again;
    ngx_proxy_wasm_mod_t  **mods, *mod;

    again = 0;
    mods = wc->mods.elts;

    for (i = 0; i < wc->mods.nelts; i++) {
        mod = mods[i];

        if (mod->owner != mod || mod->vm == NULL) {
            continue;
        }

        rc = pw_vm_deliver_queues(mod->vm);

        if (rc >= 0) {
            ngx_log_debug2(NGX_LOG_DEBUG_CORE, log, 0,
                           "proxy_wasm_module \"%V\": %d queue callbacks",
                           &mod->name, rc);
            continue;
        }

        /* the library logged the trap (or why the VM cannot be rebuilt);
         * a trap stops this delivery, the other queues follow on the next
         * turn of the event loop */
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "proxy_wasm_module \"%V\": delivering shared queue "
                      "items failed: %s", &mod->name, pw_strerror(rc));

        if (rc == PW_ETRAP) {
            again = 1;
        }
    }

    if (again) {
        ngx_proxy_wasm_wake_slot(wc, ngx_proxy_wasm_slot(wc));
    }
}


/* ------------------------------------------------------ host hooks */


/* pw_host_shared_ops.store: the store of this process, or NULL. */
pw_store *
ngx_proxy_wasm_host_store(void *host)
{
    ngx_proxy_wasm_mod_t  *mod = host;

    if (mod == NULL || mod->conf == NULL) {
        return NULL;
    }

    return mod->conf->store;
}


/*
 * pw_host_shared_ops.queue_ready: wakes the worker of the store slot
 * owner_slot (this one too), whichever module's the slot is. Called from
 * inside the enqueueing plugin's call: a write, nothing more.
 */
void
ngx_proxy_wasm_host_queue_ready(void *host, uint32_t owner_slot)
{
    ngx_proxy_wasm_mod_t  *mod = host;

    if (mod == NULL || mod->conf == NULL || mod->conf->slots == 0) {
        return;
    }

    ngx_proxy_wasm_wake_slot(mod->conf, owner_slot % mod->conf->slots);
}


/* One byte on the pipe of `slot` of wc's channels (this configuration's:
 * an old worker wakes old workers). A full pipe means a wake-up is pending
 * already. */
static void
ngx_proxy_wasm_wake_slot(ngx_proxy_wasm_conf_t *wc, ngx_uint_t slot)
{
    ngx_err_t  err;

    if (wc->wake == NULL || slot >= wc->nwake || wc->wake[slot].fd[1] == -1)
    {
        return;
    }

    if (write(wc->wake[slot].fd[1], "q", 1) == -1) {
        err = ngx_errno;

        if (err != NGX_EAGAIN) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, err,
                          "proxy_wasm: write() to the shared queue wake-up "
                          "pipe of slot %ui failed", slot);
        }
    }
}
