/*
 * test_store.c -- the shared store's rules through its public API, on heap
 * memory with a cap (so that "the region is full" happens): CAS, deletes,
 * vm_id namespaces, LRU eviction and refusal, reattaching to a region
 * (nginx's reload), metrics and their Prometheus text.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "pwasm.h"

#define S(lit) ((pw_str){lit, sizeof(lit) - 1})

/* Heap memory with a byte cap and a lock that must never be taken twice. */
typedef struct region {
    size_t used, cap;
    int locked, double_lock;
} region;

/* Every block of every region, so that the regions' memory can be
 * dropped at the end as a process's shared memory is unmapped (the store
 * leaves its data in the region by design). */
typedef struct hdr {
    size_t size;
    struct hdr *prev, *next;
    max_align_t pad[];
} hdr;
static hdr *blocks;

static void regions_drop(void) {
    while (blocks) {
        hdr *h = blocks;
        blocks = h->next;
        free(h);
    }
}

static void *r_alloc(void *rg, size_t n) {
    region *r = rg;
    if (!r->locked)
        r->double_lock++; /* alloc outside the lock: a bug */
    if (r->used + n > r->cap)
        return NULL;
    hdr *h = malloc(sizeof *h + n);
    if (!h)
        return NULL;
    h->size = n;
    h->prev = NULL;
    h->next = blocks;
    if (blocks)
        blocks->prev = h;
    blocks = h;
    r->used += n;
    return h->pad;
}

static void r_free(void *rg, void *p) {
    region *r = rg;
    hdr *h = (hdr *)((char *)p - offsetof(hdr, pad));
    r->used -= h->size;
    if (h->prev)
        h->prev->next = h->next;
    else
        blocks = h->next;
    if (h->next)
        h->next->prev = h->prev;
    free(h);
}

static void r_lock(void *rg) {
    region *r = rg;
    r->double_lock += r->locked;
    r->locked = 1;
}

static void r_unlock(void *rg) {
    ((region *)rg)->locked = 0;
}

static pw_store *open_store(region *r, size_t cap, int evict, void *root, uint32_t slots) {
    r->cap = cap;
    pw_store_mem mem = {r, r_alloc, r_free, r_lock, r_unlock};
    pw_store_config cfg = {.evict_lru = evict, .slots = slots, .buckets = 64};
    pw_store *st = NULL;
    char err[PW_ERRLEN];
    CHECK(pw_store_open(&mem, &cfg, root, &st, err, sizeof err) == PW_OK);
    return st;
}

static int value_is(pw_store *st, pw_str vm, pw_str key, const char *want, uint32_t *cas) {
    char *v;
    size_t n;
    uint32_t c = 0;
    if (pw_store_get(st, vm, key, &v, &n, &c) != PROXY_RESULT_OK)
        return 0;
    int ok = n == strlen(want) && (!n || !memcmp(v, want, n));
    free(v);
    if (cas)
        *cas = c;
    return ok;
}

TEST(store_cas_rules) {
    region r = {0};
    pw_store *st = open_store(&r, 1 << 20, 1, NULL, 1);
    if (!st)
        return;
    uint32_t c1, c2, c3;
    char *v;
    size_t n;
    CHECK(pw_store_get(st, S("vm"), S("k"), &v, &n, &c1) == PROXY_RESULT_NOT_FOUND);
    /* a missing key is created, even with a non-zero cas */
    CHECK(pw_store_set(st, S("vm"), S("k"), S("one"), 77, NULL) == PROXY_RESULT_OK);
    CHECK(value_is(st, S("vm"), S("k"), "one", &c1));
    CHECK(c1 != 0);
    /* the right cas writes and gives a new one; a stale one does not */
    CHECK(pw_store_set(st, S("vm"), S("k"), S("two"), c1, NULL) == PROXY_RESULT_OK);
    CHECK(value_is(st, S("vm"), S("k"), "two", &c2));
    CHECK(c2 != c1);
    CHECK(pw_store_set(st, S("vm"), S("k"), S("three"), c1, NULL) == PROXY_RESULT_CAS_MISMATCH);
    CHECK(value_is(st, S("vm"), S("k"), "two", NULL));
    /* cas 0 overwrites */
    CHECK(pw_store_set(st, S("vm"), S("k"), S("four"), 0, NULL) == PROXY_RESULT_OK);
    CHECK(value_is(st, S("vm"), S("k"), "four", &c3));
    /* a NULL value deletes; created again, the key gets a cas never seen */
    CHECK(pw_store_set(st, S("vm"), S("k"), (pw_str){NULL, 0}, c3, NULL) == PROXY_RESULT_OK);
    CHECK(pw_store_get(st, S("vm"), S("k"), &v, &n, &c1) == PROXY_RESULT_NOT_FOUND);
    CHECK(pw_store_set(st, S("vm"), S("k"), S(""), 0, NULL) == PROXY_RESULT_OK);
    uint32_t c4;
    CHECK(value_is(st, S("vm"), S("k"), "", &c4)); /* an empty value is a value */
    CHECK(c4 != c1 && c4 != c2 && c4 != c3);
    /* namespaces: the same key in another vm_id is another key; keys
     * are compared whole */
    CHECK(pw_store_get(st, S("other"), S("k"), &v, &n, &c1) == PROXY_RESULT_NOT_FOUND);
    CHECK(pw_store_set(st, S("vm"), S("k\0x"), S("nul"), 0, NULL) == PROXY_RESULT_OK);
    CHECK(value_is(st, S("vm"), S("k"), "", NULL));
    CHECK(value_is(st, S("vm"), S("k\0x"), "nul", NULL));
    pw_store_stats stats;
    pw_store_stats_get(st, &stats);
    CHECK(stats.keys == 2);
    CHECK(r.double_lock == 0);
    pw_store_close(st);
}

TEST(store_eviction_and_refusal) {
    region r = {0};
    pw_store *st = open_store(&r, 40000, 1, NULL, 1);
    if (!st)
        return;
    char key[16], val[1000];
    memset(val, 'v', sizeof val);
    /* far more than fits: the least recently used keys go; key0, read
     * after every write, stays */
    char *v;
    size_t n;
    uint32_t cas;
    int kept = 1;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "key%d", i);
        CHECK(pw_store_set(st, S("vm"), (pw_str){key, strlen(key)}, (pw_str){val, sizeof val}, 0,
                           NULL) == PROXY_RESULT_OK);
        if (pw_store_get(st, S("vm"), S("key0"), &v, &n, &cas) == PROXY_RESULT_OK)
            free(v);
        else
            kept = 0;
    }
    CHECK(kept);
    pw_store_stats stats;
    pw_store_stats_get(st, &stats);
    CHECK(stats.evictions > 0);
    CHECK(stats.keys + stats.evictions == 100);
    CHECK(pw_store_get(st, S("vm"), S("key99"), &v, &n, &cas) == PROXY_RESULT_OK);
    free(v);
    CHECK(pw_store_get(st, S("vm"), S("key1"), &v, &n, &cas) == PROXY_RESULT_NOT_FOUND);
    /* a value larger than the whole region is refused: CasMismatch */
    static char big[50000];
    int refused = 0;
    CHECK(pw_store_set(st, S("vm"), S("big"), (pw_str){big, sizeof big}, 0, &refused) ==
          PROXY_RESULT_CAS_MISMATCH);
    CHECK(refused == 1);
    pw_store_close(st);

    /* eviction off: a full region refuses, keeps what it has */
    region r2 = {0};
    st = open_store(&r2, 40000, 0, NULL, 1);
    if (!st)
        return;
    int ok = 0, no = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "key%d", i);
        proxy_status_t rc = pw_store_set(st, S("vm"), (pw_str){key, strlen(key)},
                                         (pw_str){val, sizeof val}, 0, &refused);
        if (rc == PROXY_RESULT_OK)
            ok++;
        else if (rc == PROXY_RESULT_CAS_MISMATCH && refused)
            no++;
    }
    CHECK(ok > 0 && no > 0 && ok + no == 100);
    CHECK(value_is(st, S("vm"), S("key0"), "", NULL) == 0); /* 1000 v's, not "" */
    CHECK(pw_store_get(st, S("vm"), S("key0"), &v, &n, &cas) == PROXY_RESULT_OK);
    free(v);
    pw_store_stats_get(st, &stats);
    CHECK(stats.evictions == 0 && stats.refused == (uint64_t)no);
    pw_store_close(st);
}

/* Another handle on the same region (nginx: the next cycle after a reload)
 * sees the same data; a different slot count resets only metric values. */
TEST(store_reattach) {
    region r = {0};
    pw_store *st = open_store(&r, 1 << 20, 1, NULL, 2);
    if (!st)
        return;
    CHECK(pw_store_set(st, S("vm"), S("kept"), S("yes"), 0, NULL) == PROXY_RESULT_OK);
    void *root = pw_store_root(st);
    pw_store_close(st);
    st = open_store(&r, 1 << 20, 1, root, 2);
    if (!st)
        return;
    CHECK(value_is(st, S("vm"), S("kept"), "yes", NULL));
    pw_store_close(st);
    st = open_store(&r, 1 << 20, 1, root, 4);
    if (!st)
        return;
    CHECK(value_is(st, S("vm"), S("kept"), "yes", NULL));
    /* the old configuration's processes may still count: slots stay */
    CHECK(pw_store_slots(st) == 2);
    pw_store_set_slot(st, 3); /* beyond them: slot 0 */
    pw_store_close(st);
}

/* TTL rules: keys of a vm_id and prefix expire after their last write;
 * an expired key is missing for reads and CAS writes. */
TEST(store_ttl) {
    region r = {0};
    r.cap = 1 << 20;
    pw_store_mem mem = {&r, r_alloc, r_free, r_lock, r_unlock};
    pw_store_ttl rules[] = {{S("vm"), S("t."), 50}, {S(""), S("all."), 50}};
    pw_store_config cfg = {.evict_lru = 1, .slots = 1, .ttl = rules, .nttl = 2};
    pw_store *st = NULL;
    char err[PW_ERRLEN];
    CHECK(pw_store_open(&mem, &cfg, NULL, &st, err, sizeof err) == PW_OK);
    if (!st)
        return;
    uint32_t cas;
    CHECK(pw_store_set(st, S("vm"), S("t.a"), S("1"), 0, NULL) == PROXY_RESULT_OK);
    CHECK(pw_store_set(st, S("other"), S("t.a"), S("2"), 0, NULL) == PROXY_RESULT_OK);
    CHECK(pw_store_set(st, S("other"), S("all.b"), S("3"), 0, NULL) == PROXY_RESULT_OK);
    CHECK(pw_store_set(st, S("vm"), S("keep"), S("4"), 0, NULL) == PROXY_RESULT_OK);
    CHECK(value_is(st, S("vm"), S("t.a"), "1", &cas));
    struct timespec pause = {0, 80 * 1000 * 1000};
    nanosleep(&pause, NULL);
    char *v;
    size_t n;
    uint32_t c2;
    CHECK(pw_store_get(st, S("vm"), S("t.a"), &v, &n, &c2) == PROXY_RESULT_NOT_FOUND);
    CHECK(pw_store_get(st, S("other"), S("all.b"), &v, &n, &c2) == PROXY_RESULT_NOT_FOUND);
    CHECK(value_is(st, S("other"), S("t.a"), "2", NULL)); /* another vm_id: no rule */
    CHECK(value_is(st, S("vm"), S("keep"), "4", NULL));
    /* a CAS write to an expired key finds it missing: created */
    CHECK(pw_store_set(st, S("vm"), S("t.b"), S("5"), 0, NULL) == PROXY_RESULT_OK);
    CHECK(value_is(st, S("vm"), S("t.b"), "5", &cas));
    nanosleep(&pause, NULL);
    CHECK(pw_store_set(st, S("vm"), S("t.b"), S("6"), cas, NULL) == PROXY_RESULT_OK);
    CHECK(value_is(st, S("vm"), S("t.b"), "6", NULL)); /* written again: alive */
    /* too many rules, or a name too long: refused */
    pw_store *bad = NULL;
    cfg.nttl = PW_STORE_TTL_MAX + 1;
    CHECK(pw_store_open(&mem, &cfg, NULL, &bad, err, sizeof err) == PW_EINVAL);
    pw_store_close(st);
}

/* Quotas per vm_id: keys cost PW_STORE_ENTRY_OVERHEAD + vm_id + key +
 * value bytes; over the quota a write is refused (*refused 2) or, with
 * LRU eviction, evicts the vm_id's own oldest keys; other vm_ids keep
 * theirs. */
static pw_store *quota_store(region *r, int evict, const pw_store_quota *q, size_t nq) {
    r->cap = 1 << 20;
    pw_store_mem mem = {r, r_alloc, r_free, r_lock, r_unlock};
    pw_store_config cfg = {.evict_lru = evict, .slots = 1, .quota = q, .nquota = nq};
    pw_store *st = NULL;
    char err[PW_ERRLEN];
    CHECK(pw_store_open(&mem, &cfg, NULL, &st, err, sizeof err) == PW_OK);
    return st;
}

static proxy_status_t set100(pw_store *st, pw_str vm, int i, int *refused) {
    static char val[100];
    char key[16];
    memset(val, 'q', sizeof val);
    snprintf(key, sizeof key, "k%d", i); /* 2 bytes for i < 10 */
    return pw_store_set(st, vm, (pw_str){key, strlen(key)}, (pw_str){val, sizeof val}, 0, refused);
}

TEST(store_quota) {
    /* each key of vm "a": 64 + 1 + 2 + 100 = 167 bytes; 1000: 5 keys */
    pw_store_quota q[] = {{S(""), 1000}, {S("big"), 2000}};
    region r = {0};
    pw_store *st = quota_store(&r, 0, q, 2);
    if (!st)
        return;
    int refused = 0;
    for (int i = 0; i < 5; i++)
        CHECK(set100(st, S("a"), i, &refused) == PROXY_RESULT_OK && refused == 0);
    CHECK(set100(st, S("a"), 5, &refused) == PROXY_RESULT_CAS_MISMATCH && refused == 2);
    char *v;
    size_t n;
    uint32_t cas;
    CHECK(pw_store_get(st, S("a"), S("k0"), &v, &n, &cas) == PROXY_RESULT_OK && n == 100);
    free(v);
    /* another vm_id has its own quota; "big" its larger one */
    CHECK(set100(st, S("b"), 0, &refused) == PROXY_RESULT_OK);
    for (int i = 0; i < 9; i++)
        CHECK(set100(st, S("big"), i, &refused) == PROXY_RESULT_OK);
    /* the same size again is written in place; a delete makes room */
    CHECK(set100(st, S("a"), 0, &refused) == PROXY_RESULT_OK);
    CHECK(pw_store_set(st, S("a"), S("k1"), (pw_str){NULL, 0}, 0, NULL) == PROXY_RESULT_OK);
    CHECK(set100(st, S("a"), 5, &refused) == PROXY_RESULT_OK && refused == 0);
    /* a larger value for a key: its old size counts as freed */
    char v2[266];
    memset(v2, 'w', sizeof v2);
    CHECK(pw_store_set(st, S("a"), S("k2"), (pw_str){v2, sizeof v2}, 0, &refused) ==
          PROXY_RESULT_CAS_MISMATCH); /* 835 - 167 + 333 > 1000 */
    CHECK(pw_store_set(st, S("a"), S("k2"), (pw_str){v2, 100 + 165}, 0, &refused) ==
          PROXY_RESULT_OK); /* exactly 1000 */
    pw_store_stats stats;
    pw_store_stats_get(st, &stats);
    CHECK(stats.refused_quota == 2 && stats.refused == 0 && stats.evictions == 0);
    pw_store_close(st);

    /* LRU: the vm_id's own least recently used keys go, not b's older one */
    region r2 = {0};
    st = quota_store(&r2, 1, q, 1);
    if (!st)
        return;
    CHECK(set100(st, S("b"), 0, NULL) == PROXY_RESULT_OK);
    for (int i = 0; i < 8; i++)
        CHECK(set100(st, S("a"), i, &refused) == PROXY_RESULT_OK && refused == 0);
    for (int i = 0; i < 8; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        proxy_status_t rc = pw_store_get(st, S("a"), (pw_str){key, strlen(key)}, &v, &n, &cas);
        CHECK(rc == (i < 3 ? PROXY_RESULT_NOT_FOUND : PROXY_RESULT_OK));
        if (rc == PROXY_RESULT_OK)
            free(v);
    }
    CHECK(pw_store_get(st, S("b"), S("k0"), &v, &n, &cas) == PROXY_RESULT_OK);
    free(v);
    /* a value over the quota by itself evicts nothing */
    static char huge[1200];
    CHECK(pw_store_set(st, S("a"), S("h"), (pw_str){huge, sizeof huge}, 0, &refused) ==
          PROXY_RESULT_CAS_MISMATCH);
    CHECK(refused == 2);
    pw_store_stats_get(st, &stats);
    CHECK(stats.evictions == 3 && stats.keys == 6 && stats.refused_quota == 1);

    /* reopened with a smaller quota (a reload): a's keys stay, its next
     * write evicts down to the new quota */
    void *root = pw_store_root(st);
    pw_store_close(st);
    pw_store_quota small[] = {{S("a"), 400}};
    pw_store_mem m2 = {&r2, r_alloc, r_free, r_lock, r_unlock};
    pw_store_config c2 = {.evict_lru = 1, .slots = 1, .quota = small, .nquota = 1};
    char e2[PW_ERRLEN];
    CHECK(pw_store_open(&m2, &c2, root, &st, e2, sizeof e2) == PW_OK);
    if (!st)
        return;
    CHECK(pw_store_get(st, S("a"), S("k3"), &v, &n, &cas) == PROXY_RESULT_OK);
    free(v);
    CHECK(set100(st, S("a"), 8, &refused) == PROXY_RESULT_OK && refused == 0);
    pw_store_stats_get(st, &stats);
    CHECK(stats.keys == 3); /* b's k0, and two of a's: 2 * 167 <= 400 */
    CHECK(pw_store_get(st, S("b"), S("k0"), &v, &n, &cas) == PROXY_RESULT_OK);
    free(v);
    pw_store_close(st);

    /* two quotas for one vm_id, or a quota of 0: refused */
    region r3 = {0};
    r3.cap = 1 << 20;
    pw_store_mem mem = {&r3, r_alloc, r_free, r_lock, r_unlock};
    pw_store_quota twice[] = {{S("x"), 10}, {S("x"), 20}}, zero[] = {{S(""), 0}};
    pw_store_config cfg = {.slots = 1, .quota = twice, .nquota = 2};
    pw_store *bad = NULL;
    char err[PW_ERRLEN];
    CHECK(pw_store_open(&mem, &cfg, NULL, &bad, err, sizeof err) == PW_EINVAL && !bad);
    cfg.quota = zero;
    cfg.nquota = 1;
    CHECK(pw_store_open(&mem, &cfg, NULL, &bad, err, sizeof err) == PW_EINVAL && !bad);
}

typedef struct text {
    char b[8192];
    size_t n;
} text;

static void put(void *data, const char *p, size_t n) {
    text *t = data;
    if (t->n + n < sizeof t->b) {
        memcpy(t->b + t->n, p, n);
        t->n += n;
        t->b[t->n] = 0;
    }
}

/* ------------------------------------- through a plugin's hostcalls */

static pw_store *the_store;
static char plog[16384];
static size_t plog_len;
static uint32_t tick_period;
static unsigned woken;

static void h_log(void *h, void *s, pw_str name, proxy_log_level_t l, pw_str msg) {
    (void)h, (void)s, (void)name, (void)l;
    int w = snprintf(plog + plog_len, sizeof plog - plog_len, "%.*s\n", (int)msg.len, msg.data);
    if (w > 0 && plog_len + (size_t)w < sizeof plog)
        plog_len += (size_t)w;
}
static proxy_log_level_t h_level(void *h) {
    (void)h;
    return PROXY_LOG_TRACE;
}
static pw_store *h_store(void *h) {
    (void)h;
    return the_store;
}
static void h_ready(void *h, uint32_t slot) {
    (void)h, (void)slot;
    woken++;
}
static void h_tick(void *h, pw_plugin *p, uint32_t ms) {
    (void)h, (void)p;
    tick_period = ms;
}

static const pw_host_log_ops log_ops = {.log = h_log, .log_level = h_level};
static const pw_host_shared_ops shared_ops = {.store = h_store, .queue_ready = h_ready};
static const pw_host_timer_ops timer_ops = {.set_tick = h_tick};
static const pw_host_ops ops = {
    .size = sizeof(pw_host_ops), .log = &log_ops, .timers = &timer_ops, .shared = &shared_ops};

/* Two VMs of one vm_id (two nginx workers) on one store: probe.wasm runs
 * the commands of its VM configuration in proxy_on_vm_start. */
TEST(store_through_hostcalls) {
    pw_runtime *rt;
    char err[PW_ERRLEN];
    CHECK(pw_runtime_new(NULL, &rt, err, sizeof err) == PW_OK);
    pw_module *m = NULL;
    CHECK(pw_module_load_file(rt, "probe", "build/tests/conformance/probe.wasm", &m, err,
                              sizeof err) == PW_OK);
    region r = {0};
    the_store = open_store(&r, 1 << 20, 1, NULL, 2);
    if (!m || !the_store)
        return;
    static const char a_cfg[] =
        "vm_start metric_define 0 reqs;vm_start metric_increment 1 5;"
        "vm_start metric_increment 1 -1;vm_start metric_define 1 temp;"
        "vm_start metric_increment 2 -3;vm_start metric_define 2 lat;"
        "vm_start metric_record 3 7;vm_start metric_get 3;"
        "vm_start metric_define 0 reqs;vm_start shared_set k v 0;"
        "vm_start queue_register q;vm_start tick 250;"
        "vm_start metric_define 0 \"hits{plugin=\\\"a\\\"}\";"
        "vm_start metric_increment 4 1;"
        "vm_start metric_define 0 \"hits{plugin=\\\"b\\\"}\";"
        "vm_start metric_increment 5 2;vm_start metric_define 1 my.gauge-1";
    static const char b_cfg[] =
        "vm_start metric_define 0 reqs;vm_start metric_increment 1 2;"
        "vm_start metric_get 1;vm_start metric_value 1;vm_start shared_get k;"
        "vm_start queue_resolve \"\" q;vm_start queue_enqueue 1 one;"
        "vm_start queue_enqueue 1 two;vm_start queue_dequeue 1;"
        "vm_start queue_dequeue 1;vm_start queue_dequeue 1;"
        "vm_start queue_dequeue 9;vm_start queue_resolve vm nope";
    pw_vm *a = NULL, *b = NULL;
    pw_plugin *pa = NULL, *pb = NULL;
    CHECK(pw_vm_new(m, S("vm"), (pw_str){a_cfg, sizeof a_cfg - 1}, &ops, NULL, &a, err,
                    sizeof err) == PW_OK);
    CHECK(a && pw_plugin_new(a, S("a"), S(""), S(""), &pa, err, sizeof err) == PW_OK);
    pw_store_set_slot(the_store, 1); /* the second worker */
    CHECK(pw_vm_new(m, S("vm"), (pw_str){b_cfg, sizeof b_cfg - 1}, &ops, NULL, &b, err,
                    sizeof err) == PW_OK);
    CHECK(b && pw_plugin_new(b, S("b"), S(""), S(""), &pb, err, sizeof err) == PW_OK);
    CHECK_CONTAINS(plog, "vm_start metric_increment -> Ok\nvm_start metric_increment -> "
                         "BadArgument\n");                        /* a counter only goes up */
    CHECK_CONTAINS(plog, "vm_start metric_get -> BadArgument\n"); /* a histogram */
    CHECK_CONTAINS(plog, "vm_start metric_get -> Ok\n");
    CHECK_CONTAINS(plog, "vm_start metric_value -> Ok 7\n"); /* 5 + 2, both slots */
    CHECK_CONTAINS(plog, "vm_start shared_get -> Ok \"v\"");
    CHECK_CONTAINS(plog, "vm_start queue_resolve -> Ok\n");
    CHECK_CONTAINS(plog, "vm_start queue_dequeue -> Ok \"one\"\nvm_start queue_dequeue -> Ok "
                         "\"two\"\nvm_start queue_dequeue -> Empty\nvm_start queue_dequeue -> "
                         "NotFound\n");
    CHECK_CONTAINS(plog, "vm_start queue_resolve -> NotFound\n");
    CHECK(woken == 2); /* one wake per enqueue */
    CHECK(tick_period == 250);
    CHECK(pw_plugin_on_tick(pa) == PW_OK);
    pw_stream *st;
    static char host_stream;
    CHECK(pw_stream_new(pa, &host_stream, &st, err, sizeof err) == PW_OK);
    pw_stream_free(st);
    /* one callback in 64 is timed: 20 more streams make at least 64 */
    for (int i = 0; i < 20; i++) {
        CHECK(pw_stream_new(pa, &host_stream, &st, err, sizeof err) == PW_OK);
        pw_stream_free(st);
    }
    int64_t v;
    CHECK(pw_store_metric(the_store, S("reqs"), PROXY_METRIC_COUNTER, &v) == PROXY_RESULT_OK);
    CHECK(v == 7); /* 5 in one slot, 2 in the other */
    CHECK(pw_store_metric(the_store, S("temp"), PROXY_METRIC_GAUGE, &v) == PROXY_RESULT_OK);
    CHECK(v == -3); /* a gauge goes both ways */
    text t = {{0}, 0};
    CHECK(pw_store_prometheus(the_store, put, &t) == PW_OK);
    CHECK_CONTAINS(t.b, "# TYPE reqs counter\nreqs 7\n");
    CHECK_CONTAINS(t.b, "# TYPE temp gauge\ntemp -3\n");
    CHECK_CONTAINS(t.b, "lat_bucket{le=\"5\"} 0\nlat_bucket{le=\"10\"} 1\n");
    CHECK_CONTAINS(t.b, "lat_bucket{le=\"+Inf\"} 1\nlat_sum 7\nlat_count 1\n");
    /* labels in names: one family, one TYPE line, a series per label set */
    CHECK_CONTAINS(t.b, "# TYPE hits counter\nhits{plugin=\"a\"} 1\nhits{plugin=\"b\"} 2\n");
    CHECK_CONTAINS(t.b, "# TYPE my_gauge_1 gauge\nmy_gauge_1 0\n");
    /* the host's own: streams per plugin */
    CHECK_CONTAINS(t.b,
                   "# TYPE pwasm_streams_total counter\npwasm_streams_total{plugin=\"a\"} 21\n");
    CHECK_CONTAINS(t.b, "# TYPE pwasm_callback_duration_us histogram\n");
    CHECK_CONTAINS(t.b, "pwasm_callback_duration_us_bucket{plugin=\"a\",le=\"+Inf\"} ");
    CHECK_CONTAINS(t.b, "pwasm_callback_duration_us_count{plugin=\"a\"} ");
    pw_vm_free(b);
    pw_vm_free(a);
    CHECK(tick_period == 0); /* freed: its timer is stopped */
    CHECK(r.double_lock == 0);
    pw_store_close(the_store);
    pw_module_free(m);
    pw_runtime_free(rt);
}

void run_store_tests(void);
void run_store_tests(void) {
    RUN(store_cas_rules);
    RUN(store_eviction_and_refusal);
    RUN(store_reattach);
    RUN(store_ttl);
    RUN(store_quota);
    RUN(store_through_hostcalls);
    /* Prometheus text of an empty store: only the store's own figures */
    region r = {0};
    pw_store *st = open_store(&r, 1 << 20, 1, NULL, 1);
    if (st) {
        text t = {{0}, 0};
        CHECK(pw_store_prometheus(st, put, &t) == PW_OK);
        static const char first[] =
            "# TYPE pwasm_shared_data_keys gauge\npwasm_shared_data_keys 0\n";
        CHECK(!strncmp(t.b, first, sizeof first - 1));
        CHECK_CONTAINS(t.b, "pwasm_queue_dropped_total 0\n");
        pw_store_close(st);
    }
    regions_drop();
}
