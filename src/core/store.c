/*
 * store.c -- the shared store (pw_store in pwasm.h): shared data with
 * compare-and-swap, shared queues and metrics, inside memory the embedder
 * provides (docs/ABI.md §6.4, §6.5, §3.3 "Metrics"; docs/ARCHITECTURE.md
 * "The shared store").
 *
 * Everything the store keeps is in the region: processes that map it at
 * the same address (nginx workers, before and after a reload) share it,
 * so it holds plain pointers into the region and no pointer to anything
 * else (the pw_store handle, with the embedder's functions, is per
 * process). Shared data and queues change under the region's lock; metric
 * values are updated with atomic operations and no lock (each process adds
 * to its own slot).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

#define ST_MAGIC 0x70775354u /* "pwST" */
#define ST_VERSION 3u

/* Envoy's histogram bucket bounds, and as Prometheus prints them. */
static const double hist_bounds[] = {0.5,   1,      5,      10,      25,     50,    100,
                                     250,   500,    1000,   2500,    5000,   10000, 30000,
                                     60000, 300000, 600000, 1800000, 3600000};
static const char *const hist_bounds_text[] = {
    "0.5",  "1",    "5",     "10",    "25",    "50",     "100",    "250",     "500",    "1000",
    "2500", "5000", "10000", "30000", "60000", "300000", "600000", "1800000", "3600000"};
/* One histogram slot: a count per bound (not cumulative), the count above
 * the last bound, the sum, the count: int64 values. */
#define HIST_BOUNDS (sizeof hist_bounds / sizeof *hist_bounds)
#define HIST_SUM (HIST_BOUNDS + 1)
#define HIST_COUNT (HIST_BOUNDS + 2)
#define HIST_VALUES (HIST_BOUNDS + 3)
/* int64 values between two processes' slots: a counter's slot, and a
 * histogram's, each on cache lines of its own (no false sharing between
 * workers counting at once). */
#define COUNTER_STRIDE 8
#define HIST_STRIDE ((HIST_VALUES + 7) / 8 * 8)

/* A shared data key: its vm_id-qualified key ("<vm_id len u32><vm_id>
 * <key>") then its value, in one allocation. */
/* What the keys of one vm_id take (quotas), in PW_STORE_ENTRY_OVERHEAD +
 * vm_id + key + value bytes per key; one per vm_id that ever wrote, kept
 * for the store's life. */
typedef struct st_use {
    struct st_use *next;
    uint64_t bytes;
    uint32_t vlen;
    char vm_id[];
} st_use;

typedef struct st_entry {
    struct st_entry *next;                /* hash chain */
    st_use *use;                          /* its vm_id's */
    struct st_entry *lru_prev, *lru_next; /* most recently used first */
    uint32_t hash, cas;
    uint32_t klen, vlen;
    int64_t expires_ms; /* CLOCK_MONOTONIC ms; 0: never */
    char data[];        /* key, then value */
} st_entry;

typedef struct st_ttl {
    uint32_t vlen, plen;
    char vm_id[PW_STORE_TTL_NAME_MAX], prefix[PW_STORE_TTL_NAME_MAX];
    int64_t ttl_ms;
} st_ttl;

typedef struct st_quota {
    uint32_t vlen;
    char vm_id[PW_STORE_TTL_NAME_MAX];
    uint64_t bytes;
} st_quota;

typedef struct st_item {
    struct st_item *next;
    uint32_t len;
    char data[];
} st_item;

typedef struct st_queue {
    uint32_t id;
    uint32_t owner_slot; /* process of the root context that registered it */
    uint32_t owner_pid;  /* the process, */
    uint64_t owner_vm;   /* and its VM there (pw_vm.queue_owner) */
    uint32_t pending;    /* items enqueued since the last delivery */
    uint32_t klen;       /* its vm_id-qualified name */
    uint32_t root_len;   /* the registering plugin's root_id */
    char *key, *root_id;
    st_item *head, *tail;
    uint64_t items;
} st_queue;

typedef struct st_metric {
    uint32_t type; /* proxy_metric_type_t */
    uint32_t nlen;
    char *name;
    int64_t gauge;
    int64_t *slots; /* per process slot: a counter (COUNTER_STRIDE apart), or a
                       histogram's HIST_VALUES (HIST_STRIDE apart) */
} st_metric;

typedef struct st_root {
    uint32_t magic, version;
    uint32_t cas_next; /* never 0 */
    uint32_t nbuckets, slots, max_metrics, max_queues;
    int evict_lru;
    st_entry **buckets;
    st_entry *lru_head, *lru_tail;
    st_queue **queues;
    uint32_t nqueues;
    st_metric **metrics;
    uint32_t nmetrics; /* read without the lock: atomic */
    pw_store_stats stats;
    uint32_t nttl;
    st_ttl ttl[PW_STORE_TTL_MAX];
    uint32_t nquota;
    st_quota quota[PW_STORE_TTL_MAX];
    st_use *uses;
} st_root;

struct pw_store {
    pw_store_mem mem;
    st_root *root;
    uint32_t slot;
};

#define LOCK(st) (st)->mem.lock((st)->mem.region)
#define UNLOCK(st) (st)->mem.unlock((st)->mem.region)

static void *st_alloc(pw_store *st, size_t n) {
    return st->mem.alloc(st->mem.region, n);
}

static void st_free(pw_store *st, void *p) {
    if (p)
        st->mem.free(st->mem.region, p);
}

static void st_errf(char *err, size_t errlen, const char *msg) {
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* ------------------------------------------------------------ opening */

static int st_create(pw_store *st, const pw_store_config *cfg) {
    uint32_t nb = 1;
    uint32_t want = cfg && cfg->buckets ? cfg->buckets : 1024;
    while (nb < want && nb < (1u << 24))
        nb <<= 1;
    st_root *r = st_alloc(st, sizeof *r);
    if (!r)
        return -1;
    memset(r, 0, sizeof *r);
    r->magic = ST_MAGIC;
    r->version = ST_VERSION;
    r->cas_next = 1;
    r->nbuckets = nb;
    r->slots = cfg && cfg->slots ? cfg->slots : 1;
    r->max_metrics = cfg && cfg->max_metrics ? cfg->max_metrics : 1024;
    r->max_queues = cfg && cfg->max_queues ? cfg->max_queues : 1024;
    r->evict_lru = cfg ? cfg->evict_lru : 1;
    r->buckets = st_alloc(st, (size_t)nb * sizeof *r->buckets);
    r->queues = st_alloc(st, (size_t)r->max_queues * sizeof *r->queues);
    r->metrics = st_alloc(st, (size_t)r->max_metrics * sizeof *r->metrics);
    if (!r->buckets || !r->queues || !r->metrics) {
        st_free(st, r->buckets);
        st_free(st, r->queues);
        st_free(st, r->metrics);
        st_free(st, r);
        return -1;
    }
    memset(r->buckets, 0, (size_t)nb * sizeof *r->buckets);
    st->root = r;
    return 0;
}

static size_t metric_values(const st_root *r, uint32_t type) {
    return type == PROXY_METRIC_HISTOGRAM ? (size_t)r->slots * HIST_STRIDE
           : type == PROXY_METRIC_COUNTER ? (size_t)r->slots * COUNTER_STRIDE
                                          : 0;
}

/* The configuration's TTL rules into the root (lock held). */
static void st_set_ttl(st_root *r, const pw_store_config *cfg) {
    r->nttl = 0;
    for (size_t i = 0; cfg && i < cfg->nttl; i++) {
        st_ttl *t = &r->ttl[r->nttl++];
        t->vlen = (uint32_t)cfg->ttl[i].vm_id.len;
        t->plen = (uint32_t)cfg->ttl[i].prefix.len;
        if (t->vlen)
            memcpy(t->vm_id, cfg->ttl[i].vm_id.data, t->vlen);
        if (t->plen)
            memcpy(t->prefix, cfg->ttl[i].prefix.data, t->plen);
        t->ttl_ms = (int64_t)cfg->ttl[i].ttl_ms;
    }
}

/* The configuration's quotas into the root (lock held). */
static void st_set_quota(st_root *r, const pw_store_config *cfg) {
    r->nquota = 0;
    for (size_t i = 0; cfg && i < cfg->nquota; i++) {
        st_quota *q = &r->quota[r->nquota++];
        q->vlen = (uint32_t)cfg->quota[i].vm_id.len;
        if (q->vlen)
            memcpy(q->vm_id, cfg->quota[i].vm_id.data, q->vlen);
        q->bytes = cfg->quota[i].bytes;
    }
}

/* The quota of vm_id in bytes; 0: none. Lock held. */
static uint64_t quota_of(const st_root *r, pw_str vm_id) {
    uint64_t any = 0;
    for (uint32_t i = 0; i < r->nquota; i++) {
        const st_quota *q = &r->quota[i];
        if (!q->vlen)
            any = q->bytes;
        else if (q->vlen == vm_id.len && !memcmp(q->vm_id, vm_id.data, q->vlen))
            return q->bytes;
    }
    return any;
}

/* A configuration's quotas: PW_OK, or PW_EINVAL (reason in err). */
static int quota_check(const pw_store_config *cfg, char *err, size_t errlen) {
    const char *bad = NULL;
    if (cfg && cfg->nquota > PW_STORE_TTL_MAX)
        bad = "pw_store_open: more than 16 quotas";
    for (size_t i = 0; !bad && cfg && i < cfg->nquota; i++) {
        pw_str v = cfg->quota[i].vm_id;
        if (v.len > PW_STORE_TTL_NAME_MAX)
            bad = "pw_store_open: a quota's vm_id is over 64 bytes";
        else if (!cfg->quota[i].bytes)
            bad = "pw_store_open: a quota of 0 bytes";
        for (size_t j = 0; !bad && j < i; j++)
            if (cfg->quota[j].vm_id.len == v.len &&
                (!v.len || !memcmp(cfg->quota[j].vm_id.data, v.data, v.len)))
                bad = "pw_store_open: two quotas for one vm_id";
    }
    if (bad)
        st_errf(err, errlen, bad);
    return bad ? PW_EINVAL : PW_OK;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* one clock for every process */
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* When a key written now expires: its first matching rule's TTL, else
 * never (0). Lock held. */
static int64_t expires_of(const st_root *r, pw_str vm_id, pw_str key) {
    for (uint32_t i = 0; i < r->nttl; i++) {
        const st_ttl *t = &r->ttl[i];
        if ((t->vlen && (t->vlen != vm_id.len || memcmp(t->vm_id, vm_id.data, t->vlen))) ||
            t->plen > key.len || (t->plen && memcmp(t->prefix, key.data, t->plen)))
            continue;
        return now_ms() + (t->ttl_ms ? t->ttl_ms : 1);
    }
    return 0;
}

int pw_store_open(const pw_store_mem *mem, const pw_store_config *cfg, void *root, pw_store **out,
                  char *err, size_t errlen) {
    *out = NULL;
    if (!mem || !mem->alloc || !mem->free || !mem->lock || !mem->unlock) {
        st_errf(err, errlen, "pw_store_open: incomplete pw_store_mem");
        return PW_EINVAL;
    }
    if (cfg && cfg->nttl > PW_STORE_TTL_MAX) {
        st_errf(err, errlen, "pw_store_open: more than 16 TTL rules");
        return PW_EINVAL;
    }
    for (size_t i = 0; cfg && i < cfg->nttl; i++)
        if (cfg->ttl[i].vm_id.len > PW_STORE_TTL_NAME_MAX ||
            cfg->ttl[i].prefix.len > PW_STORE_TTL_NAME_MAX) {
            st_errf(err, errlen, "pw_store_open: a TTL rule's vm_id or prefix is over 64 bytes");
            return PW_EINVAL;
        }
    if (quota_check(cfg, err, errlen) != PW_OK)
        return PW_EINVAL;
    pw_store *st = calloc(1, sizeof *st);
    if (!st) {
        st_errf(err, errlen, "out of memory");
        return PW_ENOMEM;
    }
    st->mem = *mem;
    int rc = PW_OK;
    LOCK(st);
    if (root) {
        st->root = root;
        if (st->root->magic != ST_MAGIC || st->root->version != ST_VERSION) {
            st_errf(err, errlen, "pw_store_open: the region holds no store of this version");
            rc = PW_EINVAL;
        } else if (cfg) {
            /* the slot count stays: processes of the old configuration
             * still add to the metric slots, without the lock */
            st->root->evict_lru = cfg->evict_lru;
            st_set_ttl(st->root, cfg);
            st_set_quota(st->root, cfg);
        }
    } else if (st_create(st, cfg) != 0) {
        st_errf(err, errlen, "the shared memory is too small for the store's tables");
        rc = PW_ENOMEM;
    } else {
        st_set_ttl(st->root, cfg);
        st_set_quota(st->root, cfg);
    }
    UNLOCK(st);
    if (rc != PW_OK) {
        free(st);
        return rc;
    }
    *out = st;
    return PW_OK;
}

void *pw_store_root(const pw_store *st) {
    return st->root;
}

uint32_t pw_store_slots(const pw_store *st) {
    return st->root->slots;
}

void pw_store_set_slot(pw_store *st, uint32_t slot) {
    st->slot = slot < st->root->slots ? slot : 0;
}

void pw_store_close(pw_store *st) {
    free(st);
}

void pw_store_stats_get(pw_store *st, pw_store_stats *out) {
    LOCK(st);
    *out = st->root->stats;
    out->metrics = __atomic_load_n(&st->root->nmetrics, __ATOMIC_ACQUIRE);
    UNLOCK(st);
}

/* --------------------------------------------------------- shared data */

/* "<len><vm_id><name>": a shared data key or a queue name, per vm_id; in
 * buf when it fits, else malloc'ed (key_free). */
typedef struct st_key {
    char *p;
    uint32_t len;
    char buf[256];
} st_key;

/* 0 when the name is too long or there is no memory. */
static int key_make(st_key *k, pw_str vm_id, pw_str name) {
    size_t n = 4 + vm_id.len + name.len;
    if (n > UINT32_MAX)
        return 0;
    k->p = n <= sizeof k->buf ? k->buf : malloc(n);
    if (!k->p)
        return 0;
    uint32_t vl = (uint32_t)vm_id.len;
    memcpy(k->p, &vl, 4);
    if (vm_id.len)
        memcpy(k->p + 4, vm_id.data, vm_id.len);
    if (name.len)
        memcpy(k->p + 4 + vm_id.len, name.data, name.len);
    k->len = (uint32_t)n;
    return 1;
}

static void key_free(st_key *k) {
    if (k->p != k->buf)
        free(k->p);
}

static uint32_t hash_bytes(const char *p, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static uint32_t next_cas(st_root *r) {
    uint32_t c = r->cas_next++;
    if (r->cas_next == 0)
        r->cas_next = 1;
    return c;
}

static st_entry **find(st_root *r, const char *k, uint32_t klen, uint32_t h) {
    st_entry **pp = &r->buckets[h & (r->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == klen && !memcmp((*pp)->data, k, klen))
            return pp;
    return pp;
}

static void lru_unlink(st_root *r, st_entry *e) {
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        r->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        r->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push(st_root *r, st_entry *e) {
    e->lru_prev = NULL;
    e->lru_next = r->lru_head;
    if (r->lru_head)
        r->lru_head->lru_prev = e;
    r->lru_head = e;
    if (!r->lru_tail)
        r->lru_tail = e;
}

/* Unlinks and frees e (its chain link is *pp). */
static void entry_drop(pw_store *st, st_entry **pp, st_entry *e) {
    st_root *r = st->root;
    *pp = e->next;
    lru_unlink(r, e);
    r->stats.keys--;
    r->stats.data_bytes -= (uint64_t)e->klen - 4 + e->vlen;
    if (e->use)
        e->use->bytes -= PW_STORE_ENTRY_OVERHEAD + (uint64_t)e->klen - 4 + e->vlen;
    st_free(st, e);
}

/* Evicts the least recently used key other than `keep`: 1 if one was. */
static int evict_one(pw_store *st, const st_entry *keep) {
    st_root *r = st->root;
    st_entry *e = r->lru_tail;
    if (e == keep && e)
        e = e->lru_prev;
    if (!e)
        return 0;
    entry_drop(st, find(r, e->data, e->klen, e->hash), e);
    r->stats.evictions++;
    return 1;
}

/* n bytes of the region, evicting shared data (LRU mode) until they fit. */
static void *alloc_evicting(pw_store *st, size_t n, const st_entry *keep) {
    void *p;
    while (!(p = st_alloc(st, n)))
        if (!st->root->evict_lru || !evict_one(st, keep))
            return NULL;
    return p;
}

/* The use record of vm_id, made if missing (NULL: no room). Lock held. */
static st_use *use_of(pw_store *st, pw_str vm_id, const st_entry *keep) {
    st_root *r = st->root;
    for (st_use *u = r->uses; u; u = u->next)
        if (u->vlen == vm_id.len && (!u->vlen || !memcmp(u->vm_id, vm_id.data, u->vlen)))
            return u;
    st_use *u = alloc_evicting(st, sizeof *u + vm_id.len, keep);
    if (!u)
        return NULL;
    u->bytes = 0;
    u->vlen = (uint32_t)vm_id.len;
    if (vm_id.len)
        memcpy(u->vm_id, vm_id.data, vm_id.len);
    u->next = r->uses;
    r->uses = u;
    return u;
}

/* Room within u's quota q for `need` more bytes, `old` (its key's current
 * entry, or NULL) going away: 1, evicting u's least recently used keys
 * other than old in LRU mode; 0 if there is none. Lock held. */
static int quota_room(pw_store *st, st_use *u, uint64_t q, uint64_t need, const st_entry *old) {
    st_root *r = st->root;
    uint64_t freed = old ? PW_STORE_ENTRY_OVERHEAD + (uint64_t)old->klen - 4 + old->vlen : 0;
    if (need > q)
        return 0; /* evicting would not help */
    st_entry *e = r->lru_tail;
    while (u->bytes - freed + need > q) {
        while (e && (e->use != u || e == old))
            e = e->lru_prev;
        if (!r->evict_lru || !e)
            return 0;
        st_entry *prev = e->lru_prev;
        entry_drop(st, find(r, e->data, e->klen, e->hash), e);
        r->stats.evictions++;
        e = prev;
    }
    return 1;
}

proxy_status_t pw_store_get(pw_store *st, pw_str vm_id, pw_str key, char **value, size_t *len,
                            uint32_t *cas) {
    return pw_store_get_into(st, vm_id, key, NULL, 0, value, len, cas);
}

/* A key whose TTL ran out (lock held). */
static int expired(const st_entry *e) {
    return e->expires_ms && now_ms() >= e->expires_ms;
}

proxy_status_t pw_store_get_into(pw_store *st, pw_str vm_id, pw_str key, char *dst, size_t cap,
                                 char **value, size_t *len, uint32_t *cas) {
    st_key k;
    *value = NULL;
    *len = 0;
    if (!key_make(&k, vm_id, key))
        return PROXY_RESULT_INTERNAL_FAILURE;
    uint32_t h = hash_bytes(k.p, k.len);
    proxy_status_t rc = PROXY_RESULT_NOT_FOUND;
    LOCK(st);
    st_entry **pp = find(st->root, k.p, k.len, h), *e = *pp;
    if (e && expired(e)) {
        entry_drop(st, pp, e); /* its time is up: gone */
        e = NULL;
    }
    if (e) {
        rc = PROXY_RESULT_OK;
        *cas = e->cas;
        if (e->vlen) {
            /* no allocation for a small value */
            *value = e->vlen <= cap ? dst : malloc(e->vlen);
            if (*value)
                memcpy(*value, e->data + e->klen, e->vlen);
            else
                rc = PROXY_RESULT_INTERNAL_FAILURE;
        }
        *len = e->vlen;
        lru_unlink(st->root, e);
        lru_push(st->root, e);
    }
    UNLOCK(st);
    key_free(&k);
    return rc;
}

proxy_status_t pw_store_set(pw_store *st, pw_str vm_id, pw_str key, pw_str value, uint32_t cas,
                            int *refused) {
    st_key k;
    if (refused)
        *refused = 0;
    if (value.len > UINT32_MAX || !key_make(&k, vm_id, key))
        return PROXY_RESULT_CAS_MISMATCH;
    uint32_t h = hash_bytes(k.p, k.len);
    proxy_status_t rc = PROXY_RESULT_OK;
    LOCK(st);
    st_root *r = st->root;
    /* one expired key at the cold end goes at each write */
    if (r->lru_tail && expired(r->lru_tail))
        entry_drop(st, find(r, r->lru_tail->data, r->lru_tail->klen, r->lru_tail->hash),
                   r->lru_tail);
    st_entry **pp = find(r, k.p, k.len, h), *old = *pp;
    if (old && expired(old)) {
        entry_drop(st, pp, old); /* a CAS write to it finds it missing */
        old = NULL;
    }
    if (old && cas && cas != old->cas) {
        rc = PROXY_RESULT_CAS_MISMATCH;
    } else if (!value.data) {
        if (old)
            entry_drop(st, pp, old); /* a NULL value deletes */
    } else if (old && old->vlen == value.len) {
        /* the same size (a counter): in place, no allocation */
        if (value.len)
            memcpy(old->data + k.len, value.data, value.len);
        old->cas = next_cas(r);
        old->expires_ms = expires_of(r, vm_id, key);
        lru_unlink(r, old);
        lru_push(r, old);
    } else {
        uint64_t q = quota_of(r, vm_id),
                 need = PW_STORE_ENTRY_OVERHEAD + (uint64_t)k.len - 4 + value.len;
        st_use *u = use_of(st, vm_id, old);
        st_entry *e = NULL;
        if (u && q && !quota_room(st, u, q, need, old)) {
            rc = PROXY_RESULT_CAS_MISMATCH;
            r->stats.refused_quota++;
            if (refused)
                *refused = 2;
        } else if (!u || !(e = alloc_evicting(st, sizeof *e + k.len + value.len, old))) {
            rc = PROXY_RESULT_CAS_MISMATCH;
            r->stats.refused++;
            if (refused)
                *refused = 1;
        } else {
            e->use = u;
            e->hash = h;
            e->klen = k.len;
            e->vlen = (uint32_t)value.len;
            memcpy(e->data, k.p, k.len);
            if (value.len)
                memcpy(e->data + k.len, value.data, value.len);
            e->cas = next_cas(r);
            e->expires_ms = expires_of(r, vm_id, key);
            /* evictions may have moved the chain: look again */
            pp = find(r, k.p, k.len, h);
            if ((old = *pp) != NULL)
                entry_drop(st, pp, old);
            e->next = r->buckets[h & (r->nbuckets - 1)];
            r->buckets[h & (r->nbuckets - 1)] = e;
            lru_push(r, e);
            r->stats.keys++;
            r->stats.data_bytes += (uint64_t)k.len - 4 + value.len;
            u->bytes += need;
        }
    }
    UNLOCK(st);
    key_free(&k);
    return rc;
}

/* -------------------------------------------------------------- queues */

/* The queue of id (1-based), or NULL. Lock held. */
static st_queue *queue_of(st_root *r, uint32_t id) {
    return id >= 1 && id <= r->nqueues ? r->queues[id - 1] : NULL;
}

static st_queue *queue_named(st_root *r, const char *k, uint32_t klen) {
    for (uint32_t i = 0; i < r->nqueues; i++)
        if (r->queues[i]->klen == klen && !memcmp(r->queues[i]->key, k, klen))
            return r->queues[i];
    return NULL;
}

/* proxy_register_shared_queue: creates or opens the queue `name` of vm_id
 * for the plugin root_id of this process; the last to register gets its
 * deliveries. Ok, or InternalFailure (no room). */
proxy_status_t pw_store_queue_register(pw_store *st, pw_str vm_id, pw_str name, pw_str root_id,
                                       uint64_t owner_vm, uint32_t *id) {
    st_key k;
    if (root_id.len > UINT32_MAX || !key_make(&k, vm_id, name))
        return PROXY_RESULT_INTERNAL_FAILURE;
    proxy_status_t rc = PROXY_RESULT_OK;
    LOCK(st);
    st_root *r = st->root;
    st_queue *q = queue_named(r, k.p, k.len);
    char *owner = alloc_evicting(st, root_id.len ? root_id.len : 1, NULL);
    if (!owner) {
        rc = PROXY_RESULT_INTERNAL_FAILURE;
    } else if (!q) {
        if (r->nqueues >= r->max_queues || !(q = alloc_evicting(st, sizeof *q, NULL))) {
            rc = PROXY_RESULT_INTERNAL_FAILURE;
        } else if (!(q->key = alloc_evicting(st, k.len, NULL))) {
            st_free(st, q);
            q = NULL;
            rc = PROXY_RESULT_INTERNAL_FAILURE;
        } else {
            q->id = r->nqueues + 1;
            q->pending = 0;
            q->klen = k.len;
            q->head = q->tail = NULL;
            q->items = 0;
            q->root_id = NULL;
            memcpy(q->key, k.p, k.len);
            r->queues[r->nqueues] = q;
            __atomic_store_n(&r->nqueues, r->nqueues + 1, __ATOMIC_RELEASE);
            r->stats.queues++;
        }
    }
    if (rc == PROXY_RESULT_OK) {
        st_free(st, q->root_id);
        if (root_id.len)
            memcpy(owner, root_id.data, root_id.len);
        q->root_id = owner;
        q->root_len = (uint32_t)root_id.len;
        q->owner_slot = st->slot;
        q->owner_pid = (uint32_t)getpid();
        q->owner_vm = owner_vm;
        *id = q->id;
    } else {
        st_free(st, owner);
    }
    UNLOCK(st);
    key_free(&k);
    return rc;
}

/* proxy_resolve_shared_queue: Ok or NotFound. */
proxy_status_t pw_store_queue_resolve(pw_store *st, pw_str vm_id, pw_str name, uint32_t *id) {
    st_key k;
    if (!key_make(&k, vm_id, name))
        return PROXY_RESULT_NOT_FOUND;
    LOCK(st);
    st_queue *q = queue_named(st->root, k.p, k.len);
    if (q)
        *id = q->id;
    UNLOCK(st);
    key_free(&k);
    return q ? PROXY_RESULT_OK : PROXY_RESULT_NOT_FOUND;
}

static void item_pop(pw_store *st, st_queue *q) {
    st_item *it = q->head;
    q->head = it->next;
    if (!q->head)
        q->tail = NULL;
    q->items--;
    st->root->stats.queued--;
    st_free(st, it);
}

/* proxy_enqueue_shared_queue: Ok (also when the item had to be dropped:
 * *dropped counts what was) or NotFound. *owner_slot: whom to wake. */
proxy_status_t pw_store_queue_enqueue(pw_store *st, uint32_t id, pw_str value,
                                      uint32_t *owner_slot, uint64_t *dropped) {
    *dropped = 0;
    if (value.len > UINT32_MAX)
        return PROXY_RESULT_NOT_FOUND;
    proxy_status_t rc = PROXY_RESULT_OK;
    LOCK(st);
    st_root *r = st->root;
    st_queue *q = queue_of(r, id);
    if (!q) {
        rc = PROXY_RESULT_NOT_FOUND;
    } else {
        st_item *it;
        /* no room: the queue's oldest items go, then this one; never
         * shared data (a queue nobody reads must not wipe it) */
        while (!(it = st_alloc(st, sizeof *it + value.len)) && q->head) {
            item_pop(st, q);
            (*dropped)++;
        }
        if (!it) {
            (*dropped)++;
        } else {
            it->next = NULL;
            it->len = (uint32_t)value.len;
            if (value.len)
                memcpy(it->data, value.data, value.len);
            if (q->tail)
                q->tail->next = it;
            else
                q->head = it;
            q->tail = it;
            q->items++;
            q->pending++;
            r->stats.queued++;
        }
        r->stats.dropped += *dropped;
        *owner_slot = q->owner_slot;
    }
    UNLOCK(st);
    return rc;
}

/* proxy_dequeue_shared_queue: Ok with the oldest item (malloc'ed *value,
 * NULL when empty), Empty, NotFound, or InternalFailure (no memory). */
proxy_status_t pw_store_queue_dequeue(pw_store *st, uint32_t id, char **value, size_t *len) {
    *value = NULL;
    *len = 0;
    proxy_status_t rc = PROXY_RESULT_OK;
    LOCK(st);
    st_queue *q = queue_of(st->root, id);
    if (!q) {
        rc = PROXY_RESULT_NOT_FOUND;
    } else if (!q->head) {
        rc = PROXY_RESULT_EMPTY;
    } else if (q->head->len && !(*value = malloc(q->head->len))) {
        rc = PROXY_RESULT_INTERNAL_FAILURE;
    } else {
        *len = q->head->len;
        if (*len)
            memcpy(*value, q->head->data, *len);
        item_pop(st, q);
    }
    UNLOCK(st);
    return rc;
}

/* Takes the deliveries due to the VM `owner_vm` of this process for
 * vm_id: up to max of (queue id, count, root_id copy). Returns how many.
 * A queue registered in another process that shares this process's slot
 * (nginx: workers beyond the slots of a store kept across a reload share
 * slot 0 and its wake-up pipe, and either may be woken) is taken by any VM
 * of the vm_id here: its registrant may never be woken. */
size_t pw_store_queue_due(pw_store *st, pw_str vm_id, uint64_t owner_vm, pw_store_due *due,
                          size_t max) {
    size_t n = 0;
    uint32_t pid = (uint32_t)getpid();
    LOCK(st);
    st_root *r = st->root;
    for (uint32_t i = 0; i < r->nqueues && n < max; i++) {
        st_queue *q = r->queues[i];
        uint32_t vl;
        memcpy(&vl, q->key, 4);
        if (!q->pending || q->owner_slot != st->slot ||
            (q->owner_pid == pid && q->owner_vm != owner_vm) || vl != vm_id.len ||
            (vl && memcmp(q->key + 4, vm_id.data, vl)))
            continue;
        size_t rl = q->root_len < sizeof due[n].root_id ? q->root_len : sizeof due[n].root_id;
        due[n].id = q->id;
        due[n].count = q->pending;
        due[n].root_len = rl;
        if (rl)
            memcpy(due[n].root_id, q->root_id, rl);
        q->pending = 0;
        n++;
    }
    UNLOCK(st);
    return n;
}

void pw_store_queue_redue(pw_store *st, uint32_t id, uint32_t count) {
    LOCK(st);
    st_queue *q = queue_of(st->root, id);
    if (q)
        q->pending += count;
    UNLOCK(st);
}

/* ------------------------------------------------------------- metrics */

/* The host's own metric's id: `family{label="value"}` (value escaped). */
static int host_metric_id(pw_store *st, uint32_t type, const char *family, const char *label,
                          const char *value, uint32_t *id) {
    if (*id)
        return 1;
    char name[512];
    size_t n = (size_t)snprintf(name, sizeof name, "%s{%s=\"", family, label);
    for (const char *c = value; *c && n < sizeof name - 4; c++) {
        if (*c == '"' || *c == '\\')
            name[n++] = '\\';
        name[n++] = *c == '\n' ? ' ' : *c;
    }
    name[n++] = '"';
    name[n++] = '}';
    return pw_store_metric_define(st, type, (pw_str){name, n}, id) == PROXY_RESULT_OK;
}

void pw_host_metric(pw_vm *vm, const char *family, const char *label, const char *value,
                    uint32_t *id, int64_t delta) {
    pw_store *st = pw_vm_store(vm);
    if (st && host_metric_id(st, PROXY_METRIC_COUNTER, family, label, value, id))
        pw_store_metric_increment(st, *id, delta);
}

void pw_host_limit_hit(pw_vm *vm, const char *limit) {
    pw_store *st = pw_vm_store(vm);
    if (!st)
        return;
    /* a second label: the plugin's name goes in as the escaped value of
     * `plugin`, after limit="..." */
    char label[64];
    snprintf(label, sizeof label, "limit=\"%s\",plugin", limit);
    uint32_t id = 0; /* rare: looked up each time */
    if (host_metric_id(st, PROXY_METRIC_COUNTER, "pwasm_limit_hits_total", label,
                       pw_ctx_name(vm, pw_vm_ctx(vm)).data, &id))
        pw_store_metric_increment(st, id, 1);
}

void pw_host_gauge_add(pw_vm *vm, const char *family, const char *label, const char *value,
                       uint32_t *id, int64_t delta) {
    pw_store *st = pw_vm_store(vm);
    if (st && host_metric_id(st, PROXY_METRIC_GAUGE, family, label, value, id))
        pw_store_metric_increment(st, *id, delta);
}

void pw_host_metric_record(pw_vm *vm, uint32_t type, const char *family, const char *label,
                           const char *value, uint32_t *id, int64_t v) {
    pw_store *st = pw_vm_store(vm);
    if (st && host_metric_id(st, type, family, label, value, id))
        pw_store_metric_record(st, *id, (uint64_t)v);
}

/* proxy_define_metric: the id of (type, name), created if new (ids from
 * 1). Ok, BadArgument (type), InternalFailure (no room). */
proxy_status_t pw_store_metric_define(pw_store *st, uint32_t type, pw_str name, uint32_t *id) {
    if (type > PROXY_METRIC_HISTOGRAM)
        return PROXY_RESULT_BAD_ARGUMENT;
    if (name.len > UINT32_MAX)
        return PROXY_RESULT_INTERNAL_FAILURE;
    proxy_status_t rc = PROXY_RESULT_OK;
    LOCK(st);
    st_root *r = st->root;
    uint32_t i;
    for (i = 0; i < r->nmetrics; i++)
        if (r->metrics[i]->type == type && r->metrics[i]->nlen == name.len &&
            !memcmp(r->metrics[i]->name, name.data, name.len))
            break;
    if (i == r->nmetrics) {
        st_metric *m = NULL;
        size_t nv = metric_values(r, type);
        if (i >= r->max_metrics || !(m = alloc_evicting(st, sizeof *m, NULL)) ||
            !(m->name = alloc_evicting(st, name.len ? name.len : 1, NULL)) ||
            (nv && !(m->slots = alloc_evicting(st, nv * sizeof(int64_t), NULL)))) {
            if (m) {
                st_free(st, m->name);
                st_free(st, m);
            }
            rc = PROXY_RESULT_INTERNAL_FAILURE;
        } else {
            m->type = type;
            m->nlen = (uint32_t)name.len;
            if (name.len)
                memcpy(m->name, name.data, name.len);
            m->gauge = 0;
            if (!nv)
                m->slots = NULL;
            else
                memset(m->slots, 0, nv * sizeof(int64_t));
            r->metrics[i] = m;
            __atomic_store_n(&r->nmetrics, i + 1, __ATOMIC_RELEASE);
        }
    }
    if (rc == PROXY_RESULT_OK)
        *id = i + 1;
    UNLOCK(st);
    return rc;
}

/* The metric of id, without the lock: metrics are only ever added, and
 * published with a release store of nmetrics. */
static st_metric *metric_of(pw_store *st, uint32_t id) {
    st_root *r = st->root;
    if (id < 1 || id > __atomic_load_n(&r->nmetrics, __ATOMIC_ACQUIRE))
        return NULL;
    return r->metrics[id - 1];
}

static void hist_record(pw_store *st, st_metric *m, uint64_t v) {
    int64_t *s = m->slots + (size_t)st->slot * HIST_STRIDE;
    size_t b = 0;
    while (b < HIST_BOUNDS && (double)v > hist_bounds[b])
        b++; /* HIST_BOUNDS: above the last bound, +Inf only */
    __atomic_fetch_add(&s[b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s[HIST_SUM], (int64_t)v, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s[HIST_COUNT], 1, __ATOMIC_RELAXED);
}

/* proxy_increment_metric: Ok, NotFound, BadArgument (a counter's delta
 * <= 0, a histogram). */
proxy_status_t pw_store_metric_increment(pw_store *st, uint32_t id, int64_t delta) {
    st_metric *m = metric_of(st, id);
    if (!m)
        return PROXY_RESULT_NOT_FOUND;
    switch (m->type) {
    case PROXY_METRIC_COUNTER:
        if (delta <= 0)
            return PROXY_RESULT_BAD_ARGUMENT;
        __atomic_fetch_add(&m->slots[st->slot * COUNTER_STRIDE], delta, __ATOMIC_RELAXED);
        return PROXY_RESULT_OK;
    case PROXY_METRIC_GAUGE:
        __atomic_fetch_add(&m->gauge, delta, __ATOMIC_RELAXED);
        return PROXY_RESULT_OK;
    default:
        return PROXY_RESULT_BAD_ARGUMENT;
    }
}

/* proxy_record_metric (Envoy's rules): a counter adds, a gauge is set, a
 * histogram records a sample. Ok or NotFound. */
proxy_status_t pw_store_metric_record(pw_store *st, uint32_t id, uint64_t value) {
    st_metric *m = metric_of(st, id);
    if (!m)
        return PROXY_RESULT_NOT_FOUND;
    if (m->type == PROXY_METRIC_COUNTER)
        __atomic_fetch_add(&m->slots[st->slot * COUNTER_STRIDE], (int64_t)value, __ATOMIC_RELAXED);
    else if (m->type == PROXY_METRIC_GAUGE)
        __atomic_store_n(&m->gauge, (int64_t)value, __ATOMIC_RELAXED);
    else
        hist_record(st, m, value);
    return PROXY_RESULT_OK;
}

static int64_t metric_sum(const st_root *r, const st_metric *m, size_t at, size_t stride) {
    int64_t sum = 0;
    for (uint32_t s = 0; s < r->slots; s++)
        sum += __atomic_load_n(&m->slots[s * stride + at], __ATOMIC_RELAXED);
    return sum;
}

/* proxy_get_metric: Ok, NotFound, BadArgument (a histogram). */
proxy_status_t pw_store_metric_get(pw_store *st, uint32_t id, int64_t *value) {
    st_metric *m = metric_of(st, id);
    if (!m)
        return PROXY_RESULT_NOT_FOUND;
    if (m->type == PROXY_METRIC_HISTOGRAM)
        return PROXY_RESULT_BAD_ARGUMENT;
    *value = m->type == PROXY_METRIC_GAUGE ? __atomic_load_n(&m->gauge, __ATOMIC_RELAXED)
                                           : metric_sum(st->root, m, 0, COUNTER_STRIDE);
    return PROXY_RESULT_OK;
}

proxy_status_t pw_store_metric(pw_store *st, pw_str name, uint32_t type, int64_t *value) {
    st_root *r = st->root;
    uint32_t n = __atomic_load_n(&r->nmetrics, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < n; i++) {
        st_metric *m = r->metrics[i];
        if (m->type != type || m->nlen != name.len || memcmp(m->name, name.data, name.len))
            continue;
        *value = type == PROXY_METRIC_GAUGE       ? __atomic_load_n(&m->gauge, __ATOMIC_RELAXED)
                 : type == PROXY_METRIC_HISTOGRAM ? metric_sum(r, m, HIST_COUNT, HIST_STRIDE)
                                                  : metric_sum(r, m, 0, COUNTER_STRIDE);
        return PROXY_RESULT_OK;
    }
    return PROXY_RESULT_NOT_FOUND;
}

/* ---------------------------------------------------------- Prometheus */

typedef struct out {
    void (*write)(void *data, const char *p, size_t n);
    void *data;
} out;

static void outf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(out *o, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->write(o->data, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* A metric's name is its family, then optionally Prometheus labels:
 * `requests_total{plugin="auth",code="200"}` (the host's own metrics use
 * them; so may plugins). The length of the family part. */
static uint32_t family_len(const st_metric *m) {
    const char *b = memchr(m->name, '{', m->nlen);
    if (!b || m->name[m->nlen - 1] != '}')
        return m->nlen;
    return (uint32_t)(b - m->name);
}

static int name_char(char ch, int first) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == ':' ||
           (!first && ch >= '0' && ch <= '9');
}

/* A valid Prometheus name from bytes: other bytes become '_', a leading
 * digit (or nothing) gets a '_' before it. */
static void out_valid(out *o, const char *p, size_t n, int label) {
    char b[256];
    size_t k = 0;
    if (!n || !name_char(p[0], 1) || (label && p[0] == ':'))
        b[k++] = '_';
    for (size_t i = 0; i < n; i++) {
        if (k == sizeof b) {
            o->write(o->data, b, k);
            k = 0;
        }
        int ok = name_char(p[i], 0) && !(label && p[i] == ':');
        b[k++] = ok ? p[i] : '_';
    }
    o->write(o->data, b, k);
}

/* The labels of a name ("" when none) as Prometheus wants them: keys made
 * valid, values escaped (\\ \" \n). Labels that do not parse (k="v",
 * comma-separated) are written as one label `name="<the text>"`. */
static void out_labels(out *o, const st_metric *m, const char *extra) {
    uint32_t f = family_len(m);
    const char *p = m->name + f + 1, *end = m->name + m->nlen - 1;
    int any = 0;
    if (f == m->nlen) {
        if (extra)
            outf(o, "{%s}", extra);
        return;
    }
    o->write(o->data, "{", 1);
    while (p < end) {
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq || eq + 1 >= end || eq[1] != '"')
            break;
        const char *v = eq + 2, *q = v;
        while (q < end && *q != '"')
            q += *q == '\\' && q + 1 < end ? 2 : 1;
        if (q >= end)
            break;
        if (any)
            o->write(o->data, ",", 1);
        out_valid(o, p, (size_t)(eq - p), 1);
        o->write(o->data, "=\"", 2);
        for (const char *c = v; c < q; c++) {
            if (*c == '\\' && c + 1 < q) {
                o->write(o->data, c, 2); /* an escape as given */
                c++;
            } else if (*c == '\n') {
                o->write(o->data, "\\n", 2);
            } else {
                o->write(o->data, c, 1);
            }
        }
        o->write(o->data, "\"", 1);
        any = 1;
        p = q + 1;
        if (p < end && *p == ',')
            p++;
    }
    if (extra)
        outf(o, "%s%s", any ? "," : "", extra);
    o->write(o->data, "}", 1);
}

static int family_eq(const st_metric *a, const st_metric *b) {
    uint32_t fa = family_len(a), fb = family_len(b);
    return fa == fb && a->type == b->type && !memcmp(a->name, b->name, fa);
}

static int64_t metric_value(const st_root *r, const st_metric *m) {
    return m->type == PROXY_METRIC_GAUGE ? __atomic_load_n(&m->gauge, __ATOMIC_RELAXED)
                                         : metric_sum(r, m, 0, COUNTER_STRIDE);
}

static void out_metric(out *o, const st_root *r, const st_metric *m) {
    uint32_t f = family_len(m);
    if (m->type != PROXY_METRIC_HISTOGRAM) {
        out_valid(o, m->name, f, 0);
        out_labels(o, m, NULL);
        outf(o, " %lld\n", (long long)metric_value(r, m));
        return;
    }
    int64_t cumulative = 0;
    for (size_t b = 0; b <= HIST_BOUNDS; b++) {
        char le[32];
        cumulative += metric_sum(r, m, b, HIST_STRIDE);
        snprintf(le, sizeof le, "le=\"%s\"", b < HIST_BOUNDS ? hist_bounds_text[b] : "+Inf");
        out_valid(o, m->name, f, 0);
        o->write(o->data, "_bucket", 7);
        out_labels(o, m, le);
        outf(o, " %lld\n", (long long)cumulative);
    }
    out_valid(o, m->name, f, 0);
    o->write(o->data, "_sum", 4);
    out_labels(o, m, NULL);
    outf(o, " %lld\n", (long long)metric_sum(r, m, HIST_SUM, HIST_STRIDE));
    out_valid(o, m->name, f, 0);
    o->write(o->data, "_count", 6);
    out_labels(o, m, NULL);
    outf(o, " %lld\n", (long long)metric_sum(r, m, HIST_COUNT, HIST_STRIDE));
}

int pw_store_prometheus(pw_store *st, void (*write)(void *data, const char *p, size_t n),
                        void *data) {
    static const char *const types[] = {"counter", "gauge", "histogram"};
    out o = {write, data};
    st_root *r = st->root;
    uint32_t n = __atomic_load_n(&r->nmetrics, __ATOMIC_ACQUIRE);
    /* one `# TYPE` line per family, its metrics after it: a family is
     * written where it first appears */
    uint8_t *done = calloc(n ? n : 1, 1);
    if (!done)
        return PW_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        const st_metric *m = r->metrics[i];
        o.write(o.data, "# TYPE ", 7);
        out_valid(&o, m->name, family_len(m), 0);
        outf(&o, " %s\n", types[m->type]);
        for (uint32_t j = i; j < n; j++)
            if (!done[j] && family_eq(m, r->metrics[j])) {
                done[j] = 1;
                out_metric(&o, r, r->metrics[j]);
            }
    }
    free(done);
    /* the store's own figures */
    pw_store_stats s;
    pw_store_stats_get(st, &s);
    outf(&o,
         "# TYPE pwasm_shared_data_keys gauge\npwasm_shared_data_keys %llu\n"
         "# TYPE pwasm_shared_data_bytes gauge\npwasm_shared_data_bytes %llu\n"
         "# TYPE pwasm_shared_data_evictions_total counter\n"
         "pwasm_shared_data_evictions_total %llu\n",
         (unsigned long long)s.keys, (unsigned long long)s.data_bytes,
         (unsigned long long)s.evictions);
    outf(&o,
         "# TYPE pwasm_shared_data_refused_total counter\n"
         "pwasm_shared_data_refused_total{reason=\"full\"} %llu\n"
         "pwasm_shared_data_refused_total{reason=\"quota\"} %llu\n"
         "# TYPE pwasm_queue_items gauge\npwasm_queue_items %llu\n"
         "# TYPE pwasm_queue_dropped_total counter\npwasm_queue_dropped_total %llu\n",
         (unsigned long long)s.refused, (unsigned long long)s.refused_quota,
         (unsigned long long)s.queued, (unsigned long long)s.dropped);
    return PW_OK;
}
