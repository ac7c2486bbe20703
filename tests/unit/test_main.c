/*
 * test_main.c -- unit tests of the engine and the core, on real plugins
 * built from tests/plugins and examples/ (run from the repository root
 * after `make`). Prints "N passed, N failed" last; exit 1 on any failure.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "memhost.h"
#include "pwasm.h"

int t_passed, t_failed;
void run_safety_tests(void);
void run_store_tests(void);
void run_callout_tests(void);
void run_tcp_tests(void);
void run_capability_tests(void);
void run_header_tests(void);
const char *t_current;

static pw_runtime *rt;
static char err[PW_ERRLEN];

#define PLUGIN(name) "build/tests/plugins/" name ".wasm"
#define EXAMPLE(name) "build/examples/" name ".wasm"
#define S(lit) ((pw_str){lit, sizeof(lit) - 1})

static pw_module *load(const char *name, const char *path) {
    pw_module *m = NULL;
    int rc = pw_module_load_file(rt, name, path, &m, err, sizeof err);
    if (rc != PW_OK)
        printf("  load %s: %s\n", path, err);
    return m;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

/* ---------------------------------------------------------------- engine */

TEST(engine_loads_examples) {
    pw_module *m = load("add_header", EXAMPLE("add_header"));
    CHECK(m != NULL);
    if (m) {
        CHECK_STR(pw_module_abi_version(m), "0.2.1");
        CHECK(pw_module_has_callback(m, "proxy_on_response_headers") == 1);
        CHECK(pw_module_has_callback(m, "proxy_on_no_such_thing") == 0);
    }
    pw_module *as = load("as_add_header", EXAMPLE("as_add_header"));
    CHECK(as != NULL);
    if (as)
        CHECK_STR(pw_module_abi_version(as), "0.2.0");
    pw_module_free(m);
    pw_module_free(as);
}

TEST(engine_refuses_unknown_import) {
    pw_module *m = NULL;
    int rc = pw_module_load_file(rt, "bad_import", PLUGIN("bad_import"), &m, err, sizeof err);
    CHECK(rc == PW_ELOAD);
    CHECK(m == NULL);
    CHECK_CONTAINS(err, "module \"bad_import\"");
    CHECK_CONTAINS(err, "env.proxy_does_not_exist (i32) -> i32");
    CHECK_CONTAINS(err, "does not provide");
}

TEST(engine_refuses_bad_signature) {
    pw_module *m = NULL;
    int rc =
        pw_module_load_file(rt, "bad_signature", PLUGIN("bad_signature"), &m, err, sizeof err);
    CHECK(rc == PW_ELOAD);
    CHECK_CONTAINS(err, "env.proxy_log with signature (i32, i32) -> i32");
    CHECK_CONTAINS(err, "host provides (i32, i32, i32) -> i32");
}

TEST(engine_refuses_truncated_and_garbage) {
    size_t len;
    unsigned char *b = read_all(EXAMPLE("add_header"), &len);
    CHECK(b != NULL);
    if (!b)
        return;
    pw_module *m = NULL;
    /* Cut in the middle: the section table no longer fits. */
    int rc = pw_module_load(rt, "cut", b, len / 2, &m, err, sizeof err);
    CHECK(rc == PW_ELOAD);
    CHECK_CONTAINS(err, "module \"cut\" refused");
    CHECK_CONTAINS(err, "truncated");
    /* Every prefix is refused cleanly (never a crash). */
    int refused = 0;
    for (size_t n = 0; n < len; n += 97)
        refused += pw_module_load(rt, "prefix", b, n, &m, err, sizeof err) != PW_OK;
    CHECK(refused == (int)((len + 96) / 97));
    rc = pw_module_load(rt, "text", (const uint8_t *)"hello world", 11, &m, err, sizeof err);
    CHECK(rc == PW_ELOAD);
    CHECK_CONTAINS(err, "not a Wasm module");
    /* Valid structure, invalid code: the validator (wasm2c) says why. */
    static const uint8_t bad_code[] = {
        0,   'a',  's', 'm', 1,   0,   0,   0,   1,   4,   1,   0x60, 0,    0, /* type ()->() */
        3,   2,    1,   0,                                                     /* one function */
        5,   3,    1,   0,   1,                                                /* memory 1 page */
        7,   0x24, 2,   6,   'm', 'e', 'm', 'o', 'r', 'y', 2,   0,    23,   'p', 'r', 'o',
        'x', 'y',  '_', 'a', 'b', 'i', '_', 'v', 'e', 'r', 's', 'i',  'o',  'n', '_', '0',
        '_', '2',  '_', '1', 0,   0,   10,  5,   1,   3,   0,   0x6a, 0x0b, /* body: i32.add */
    };
    rc = pw_module_load(rt, "badcode", bad_code, sizeof bad_code, &m, err, sizeof err);
    CHECK(rc == PW_ELOAD);
    CHECK_CONTAINS(err, "refused");
    /* A known section may appear once only. */
    static const uint8_t twice[] = {0, 'a', 's', 'm', 1, 0, 0, 0, 5, 3, 1, 0, 1, 5, 3, 1, 0, 1};
    rc = pw_module_load(rt, "twice", twice, sizeof twice, &m, err, sizeof err);
    CHECK(rc == PW_ELOAD);
    CHECK_CONTAINS(err, "section 5 appears twice");
    free(b);
}

TEST(engine_precompiled_artifact) {
    const char *out = "build/tests/add_header.pwasm";
    CHECK(pw_module_compile(rt, "add_header", EXAMPLE("add_header"), out, err, sizeof err) ==
          PW_OK);
    /* A runtime that cannot compile anything and has no cache. */
    pw_runtime_config cfg = {.cache_dir = "", .cc = "false"};
    pw_runtime *nocc;
    CHECK(pw_runtime_new(&cfg, &nocc, err, sizeof err) == PW_OK);
    pw_module *m = NULL;
    CHECK(pw_module_load_file(nocc, "raw", EXAMPLE("add_header"), &m, err, sizeof err) ==
          PW_ECOMPILE);
    CHECK_CONTAINS(err, "C compilation failed");
    /* Native code is loaded only when asked for: as a plain module the
     * artifact is refused, as precompiled with a wrong digest too. */
    CHECK(pw_module_load_file(nocc, "aot", out, &m, err, sizeof err) == PW_ELOAD);
    CHECK_CONTAINS(err, "load it as precompiled");
    CHECK(pw_module_load_precompiled(
              nocc, "aot", out, "0000000000000000000000000000000000000000000000000000000000000000",
              &m, err, sizeof err) == PW_ELOAD);
    CHECK_CONTAINS(err, "not the expected 0000");
    CHECK(pw_module_load_precompiled(nocc, "aot", EXAMPLE("add_header"), NULL, &m, err,
                                     sizeof err) == PW_ELOAD);
    CHECK_CONTAINS(err, "not a pwasm compile artifact");
    m = NULL;
    CHECK(pw_module_load_precompiled(nocc, "aot", out, NULL, &m, err, sizeof err) == PW_OK);
    if (m) {
        mh_host h = {.level = PROXY_LOG_INFO};
        pw_vm *vm;
        pw_plugin *p;
        CHECK(pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) == PW_OK);
        CHECK(pw_plugin_new(vm, S("aot"), S(""), S("x-aot=1"), &p, err, sizeof err) == PW_OK);
        mh_stream s;
        mh_stream_init(&s);
        pw_stream *st;
        CHECK(pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK);
        CHECK(pw_stream_on_response_headers(st, 0, 1) == PW_ACTION_CONTINUE);
        pw_stream_free(st);
        CHECK(mh_get(&s.resp, "x-aot") != NULL);
        pw_vm_free(vm);
        pw_module_free(m);
    }
    /* An artifact of another host table is refused, not run. */
    size_t len;
    unsigned char *b = read_all(out, &len);
    CHECK(b && len > 64);
    if (b) {
        size_t raw_len;
        unsigned char *raw = read_all(EXAMPLE("add_header"), &raw_len);
        const uint8_t *w;
        size_t wl;
        CHECK(pw_artifact_wasm(b, len, &w, &wl) == 1 && raw && wl == raw_len &&
              !memcmp(w, raw, wl));
        CHECK(raw && pw_artifact_wasm(raw, raw_len, &w, &wl) == 0);
        CHECK(pw_artifact_wasm(b, 60, &w, &wl) == -1);
        free(raw);
        b[20] ^= 0xff;
        const char *stale = "build/tests/stale.pwasm";
        FILE *f = fopen(stale, "wb");
        CHECK(f && fwrite(b, 1, len, f) == len);
        if (f)
            fclose(f);
        CHECK(pw_module_load_precompiled(nocc, "stale", stale, NULL, &m, err, sizeof err) ==
              PW_ELOAD);
        CHECK_CONTAINS(err, "compiled by another version of pwasm");
        free(b);
    }
    pw_runtime_free(nocc);
}

TEST(engine_relative_cache_dir) {
    /* The compiler runs in a temporary directory: a relative cache path
     * must still work (found by the benchmark harness). */
    system("rm -rf build/tests/relcache");
    pw_runtime_config cfg = {.cache_dir = "build/tests/relcache"};
    pw_runtime *r;
    CHECK(pw_runtime_new(&cfg, &r, err, sizeof err) == PW_OK);
    pw_module *m = NULL;
    CHECK(pw_module_load_file(r, "rel", EXAMPLE("deny"), &m, err, sizeof err) == PW_OK);
    if (!m)
        printf("  %s\n", err);
    pw_module_free(m);
    pw_runtime_free(r);
}

/* Runs one request through trap.wasm with x-trap: kind. */
static pw_action trap_request(pw_plugin *p, mh_stream *s, const char *kind) {
    mh_stream_init(s);
    mh_add(&s->req, ":path", "/");
    if (kind)
        mh_add(&s->req, "x-trap", kind);
    pw_stream *st;
    if (pw_stream_new(p, s, &st, err, sizeof err) != PW_OK)
        return PW_ACTION_ERROR;
    pw_action a = pw_stream_on_request_headers(st, (uint32_t)s->req.n, 1);
    pw_stream_free(st);
    return a;
}

/* A trap discards the VM: every other live stream context on it is told
 * (PW_PENDING_FAILED, announced by wake: none of its callbacks runs), the
 * failing one only by its result; the dead stream answers ERROR. */
TEST(core_trap_fails_the_other_streams) {
    pw_module *m = load("trap", PLUGIN("trap"));
    CHECK(m != NULL);
    if (!m)
        return;
    mh_host h = {.level = PROXY_LOG_DEBUG};
    pw_vm *vm;
    CHECK(pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) == PW_OK);
    pw_plugin *p;
    CHECK(pw_plugin_new(vm, S("trap"), S(""), S(""), &p, err, sizeof err) == PW_OK);
    mh_stream held, failing;
    mh_stream_init(&held);
    mh_add(&held.req, ":path", "/");
    pw_stream *st = NULL, *sf = NULL;
    CHECK(pw_stream_new(p, &held, &st, err, sizeof err) == PW_OK);
    CHECK(pw_stream_on_request_headers(st, 1, 0) == PW_ACTION_CONTINUE);
    CHECK_STR(held.events, "");
    mh_stream_init(&failing);
    mh_add(&failing.req, ":path", "/");
    mh_add(&failing.req, "x-trap", "unreachable");
    CHECK(pw_stream_new(p, &failing, &sf, err, sizeof err) == PW_OK);
    CHECK(pw_stream_on_request_headers(sf, 2, 1) == PW_ACTION_ERROR);
    CHECK(pw_stream_pending(sf) == 0);
    CHECK_STR(failing.events, "");
    CHECK_STR(held.events, "wake ");
    CHECK(pw_stream_pending(st) == PW_PENDING_FAILED);
    CHECK(pw_stream_take(st, PW_PENDING_FAILED) == PW_PENDING_FAILED);
    CHECK(pw_stream_on_response_headers(st, 0, 1) == PW_ACTION_ERROR);
    pw_stream_free(sf);
    pw_stream_free(st);
    pw_vm_free(vm);
    pw_module_free(m);
}

/* The chain: contexts created on first use, the failure policy for each
 * way a plugin cannot run, failed links skipped, contexts ended in order
 * (late: also those of links never reached), pending actions taken
 * across links. */
TEST(core_chain_and_failure_policy) {
    pw_module *mt = load("trap", PLUGIN("trap"));
    pw_module *ml = load("lifecycle", PLUGIN("lifecycle"));
    CHECK(mt && ml);
    if (!mt || !ml)
        return;
    mh_host h = {.level = PROXY_LOG_TRACE};
    pw_vm *vt, *vl;
    pw_plugin *pt, *pl;
    CHECK(pw_vm_new(mt, S(""), S(""), &mh_ops, &h, &vt, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vt, S("trap"), S(""), S(""), &pt, err, sizeof err) == PW_OK);
    CHECK(pw_vm_new(ml, S(""), S(""), &mh_ops, &h, &vl, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vl, S("life"), S(""), S(""), &pl, err, sizeof err) == PW_OK);
    char why[PW_ERRLEN];
    for (int open = 0; open <= 1; open++) {
        mh_stream s0, s1;
        mh_stream_init(&s0);
        mh_stream_init(&s1);
        mh_add(&s0.req, "x-trap", "unreachable");
        pw_link links[2] = {{.plugin = pt, .host_stream = &s0},
                            {.plugin = pl, .host_stream = &s1}};
        pw_chain ch = {links, 2, open ? PW_FAIL_OPEN : PW_FAIL_CLOSED, 0};
        h.log_len = 0;
        h.log[0] = 0;
        pw_action a = pw_chain_call(&ch, 0, PW_ON_REQUEST_HEADERS, 1, 1, why, sizeof why);
        CHECK(a == (open ? PW_ACTION_CONTINUE : PW_ACTION_ERROR));
        CHECK_CONTAINS(why, "plugin \"trap\" trapped in proxy_on_request_headers");
        CHECK(links[0].failed && links[0].stream != NULL);
        /* A failed link is skipped: no call, no reason. */
        CHECK(pw_chain_call(&ch, 0, PW_ON_RESPONSE_HEADERS, 0, 1, why, sizeof why) ==
              PW_ACTION_CONTINUE);
        CHECK_STR(why, "");
        CHECK(links[1].stream == NULL);
        /* late: the link never reached gets its context at the end. */
        pw_chain_end(&ch, open);
        CHECK(links[0].ended);
        if (open) {
            CHECK(links[1].ended);
            CHECK_CONTAINS(h.log, "life|2|lifecycle: proxy_on_log");
        } else {
            CHECK(!links[1].ended && links[1].stream == NULL);
            CHECK(strstr(h.log, "proxy_on_log") == NULL);
        }
    }
    /* No plugin (it did not start): the policy answers for it. */
    mh_stream s2;
    mh_stream_init(&s2);
    pw_link none = {.host_stream = &s2};
    pw_chain ch1 = {&none, 1, PW_FAIL_CLOSED, 0};
    CHECK(pw_chain_call(&ch1, 0, PW_ON_REQUEST_HEADERS, 0, 1, why, sizeof why) == PW_ACTION_ERROR);
    CHECK_STR(why, "plugin unavailable");
    /* The embedder fails a link (pw_chain_fail): its policy answers, and
     * the link is skipped from then on. */
    pw_link gone = {.host_stream = &s2, .has_policy = 1, .policy = PW_FAIL_OPEN};
    pw_chain chf = {&gone, 1, PW_FAIL_CLOSED, 0};
    CHECK(pw_chain_fail(&chf, 0) == PW_ACTION_CONTINUE);
    CHECK(gone.failed);
    CHECK(pw_chain_call(&chf, 0, PW_ON_REQUEST_HEADERS, 0, 1, why, sizeof why) ==
          PW_ACTION_CONTINUE);
    CHECK_STR(why, "");
    gone.has_policy = 0;
    CHECK(pw_chain_fail(&chf, 0) == PW_ACTION_ERROR);
    pw_chain_end(&ch1, 1);
    CHECK(none.failed && none.stream == NULL);
    /* A trap elsewhere discards the VM of a paused link: pw_chain_take marks
     * it, pw_chain_stranded fails it with the policy. */
    mh_stream s3, s4;
    mh_stream_init(&s3);
    mh_stream_init(&s4);
    mh_add(&s4.req, "x-trap", "unreachable");
    pw_link held = {.plugin = pt, .host_stream = &s3};
    pw_chain ch2 = {&held, 1, PW_FAIL_OPEN, 0};
    CHECK(pw_chain_call(&ch2, 0, PW_ON_REQUEST_HEADERS, 0, 0, why, sizeof why) ==
          PW_ACTION_CONTINUE);
    pw_link other = {.plugin = pt, .host_stream = &s4};
    pw_chain ch3 = {&other, 1, PW_FAIL_CLOSED, 0};
    CHECK(pw_chain_call(&ch3, 0, PW_ON_REQUEST_HEADERS, 1, 1, why, sizeof why) == PW_ACTION_ERROR);
    CHECK_STR(s3.events, "wake ");
    size_t first_local;
    CHECK(pw_chain_take(&ch2, PW_PENDING_ALL, &first_local) == PW_PENDING_FAILED);
    CHECK(first_local == 1);
    CHECK(held.discarded);
    CHECK(pw_chain_stranded(&ch2, 0, why, sizeof why) == PW_ACTION_CONTINUE);
    CHECK_CONTAINS(why, "paused, and its VM was discarded after a trap in another context");
    CHECK(held.failed);
    pw_chain_end(&ch3, 0);
    pw_chain_end(&ch2, 0);
    CHECK_STR(pw_event_name(PW_ON_RESPONSE_TRAILERS), "on_response_trailers");
    CHECK_STR(pw_event_name(99), "?");
    pw_vm_free(vt);
    pw_vm_free(vl);
    pw_module_free(mt);
    pw_module_free(ml);
}

TEST(engine_traps_each_kind) {
    pw_module *m = load("trap", PLUGIN("trap"));
    CHECK(m != NULL);
    if (!m)
        return;
    /* five traps in a row on purpose: no crash-loop brake */
    CHECK(pw_module_set_limits(m, &(pw_limits){.brake_traps = UINT32_MAX}, 0, 0) == PW_OK);
    mh_host h = {.level = PROXY_LOG_DEBUG};
    pw_vm *vm;
    CHECK(pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) == PW_OK);
    pw_plugin *p;
    CHECK(pw_plugin_new(vm, S("trap"), S(""), S(""), &p, err, sizeof err) == PW_OK);
    mh_stream s;
    static const struct {
        const char *kind, *msg;
    } cases[] = {
        {"unreachable", "unreachable executed"},
        {"oob", "out-of-bounds memory access"},
        {"stack", "call stack exhausted"},
        {"div", "integer divide by zero"},
        {"exit", "proc_exit(3)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint64_t gen = pw_vm_generation(vm);
        CHECK(trap_request(p, &s, cases[i].kind) == PW_ACTION_ERROR);
        CHECK(pw_vm_dead(vm));
        CHECK(h.discarded == i + 1); /* the embedder is told, once */
        CHECK_CONTAINS(pw_vm_last_error(vm), cases[i].msg);
        CHECK_CONTAINS(pw_vm_last_error(vm), "in proxy_on_request_headers");
        CHECK_CONTAINS(pw_vm_last_error(vm), "plugin \"trap\"");
        /* The next request gets a fresh instance and succeeds. */
        CHECK(trap_request(p, &s, NULL) == PW_ACTION_CONTINUE);
        CHECK(!pw_vm_dead(vm));
        CHECK(pw_vm_generation(vm) == gen + 1);
        CHECK(h.discarded == i + 1); /* not for the rebuild */
    }
    CHECK_CONTAINS(
        h.log, "trap|4|plugin \"trap\" trapped in proxy_on_request_headers: unreachable executed");
    pw_vm_free(vm);
    pw_module_free(m);
}

TEST(engine_interrupts_a_looping_plugin) {
    /* The shared runtime has the default limit, 1000 ms of CPU time. */
    pw_module *m = load("loop", PLUGIN("loop"));
    CHECK(m != NULL);
    if (!m)
        return;
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm;
    pw_plugin *p;
    CHECK(pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vm, S("loop"), S(""), S(""), &p, err, sizeof err) == PW_OK);
    mh_stream s;
    pw_stream *st;
    mh_stream_init(&s);
    mh_add(&s.req, "x-loop", "1");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK(pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK);
    CHECK(pw_stream_on_request_headers(st, 1, 1) == PW_ACTION_ERROR);
    clock_gettime(CLOCK_MONOTONIC, &b);
    pw_stream_free(st);
    double secs = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    CHECK(secs >= 0.9 && secs < 10);
    CHECK_CONTAINS(pw_vm_last_error(vm), "CPU time limit exceeded");
    CHECK_CONTAINS(pw_vm_last_error(vm), "in proxy_on_request_headers");
    /* The next request gets a fresh instance. */
    mh_stream_init(&s);
    CHECK(pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK);
    CHECK(pw_stream_on_request_headers(st, 0, 1) == PW_ACTION_CONTINUE);
    pw_stream_free(st);
    CHECK(!pw_vm_dead(vm));
    pw_vm_free(vm);
    pw_module_free(m);
}

/* ------------------------------------------------------------------ core */

TEST(core_lifecycle_order) {
    pw_module *m = load("lifecycle", PLUGIN("lifecycle"));
    CHECK(m != NULL);
    if (!m)
        return;
    mh_host h = {.level = PROXY_LOG_TRACE};
    pw_vm *vm;
    pw_plugin *p;
    CHECK(pw_vm_new(m, S("vm1"), S("vmcfg"), &mh_ops, &h, &vm, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vm, S("life"), S(""), S("a=b"), &p, err, sizeof err) == PW_OK);
    mh_stream s;
    mh_stream_init(&s);
    mh_add(&s.req, ":path", "/x");
    mh_add(&s.resp, ":status", "200");
    pw_stream *st;
    CHECK(pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK);
    CHECK(pw_stream_on_request_headers(st, 1, 0) == PW_ACTION_CONTINUE);
    CHECK(pw_stream_on_response_headers(st, 1, 1) == PW_ACTION_CONTINUE);
    pw_stream_free(st);
    pw_vm_free(vm);
    CHECK_STR(h.log, "life|2|lifecycle: proxy_on_context_create 1 0\n"
                     "life|2|lifecycle: proxy_on_vm_start 1 5\n"
                     "life|2|lifecycle: proxy_on_configure 1 3 config=a=b\n"
                     "life|2|lifecycle: proxy_on_context_create 2 1\n"
                     "life|2|lifecycle: proxy_on_request_headers 2 1 0\n"
                     "life|2|lifecycle: proxy_on_response_headers 2 1 1\n"
                     "life|2|lifecycle: proxy_on_log 2\n"
                     "life|2|lifecycle: proxy_on_done 2\n"
                     "life|2|lifecycle: proxy_on_delete 2\n"
                     "life|2|lifecycle: proxy_on_done 1\n"
                     "life|2|lifecycle: proxy_on_delete 1\n");
    pw_module_free(m);
}

/* pw_host_ops.size: a size larger than sizeof(pw_host_ops), or one that
 * does not end on an area, is refused before the module runs; a smaller one
 * (an embedder built against an older pwasm.h) is taken with the areas past
 * it NULL; NULL ops and NULL areas mean no hooks. */
TEST(core_host_ops_size) {
    pw_module *m = load("lifecycle", PLUGIN("lifecycle"));
    if (!m)
        return;
    mh_host h = {.level = PROXY_LOG_TRACE};
    pw_vm *vm = NULL;
    pw_host_ops ops = mh_ops;
    ops.size = 0;
    CHECK(pw_vm_new(m, S(""), S(""), &ops, &h, &vm, err, sizeof err) == PW_EINVAL);
    CHECK_CONTAINS(err, "pw_host_ops.size is 0");
    ops.size = sizeof ops + 8;
    CHECK(pw_vm_new(m, S(""), S(""), &ops, &h, &vm, err, sizeof err) == PW_EINVAL);
    ops.size = offsetof(pw_host_ops, property) + 1;
    CHECK(pw_vm_new(m, S(""), S(""), &ops, &h, &vm, err, sizeof err) == PW_EINVAL);
    CHECK(vm == NULL);
    /* Only the log area: the plugin still logs, the rest is NULL. */
    ops.size = offsetof(pw_host_ops, clock);
    CHECK(pw_vm_new(m, S(""), S(""), &ops, &h, &vm, err, sizeof err) == PW_OK);
    pw_plugin *p0;
    CHECK(pw_plugin_new(vm, S("life"), S(""), S(""), &p0, err, sizeof err) == PW_OK);
    pw_vm_free(vm);
    CHECK_CONTAINS(h.log, "life|2|lifecycle: proxy_on_delete");
    h.log_len = 0;
    h.log[0] = 0;
    ops = (pw_host_ops){.size = sizeof ops};
    CHECK(pw_vm_new(m, S(""), S(""), &ops, &h, &vm, err, sizeof err) == PW_OK);
    pw_plugin *p;
    CHECK(pw_plugin_new(vm, S("life"), S(""), S(""), &p, err, sizeof err) == PW_OK);
    pw_vm_free(vm);
    CHECK(h.log_len == 0); /* no log area: the plugin's lines are dropped */
    CHECK(pw_vm_new(m, S(""), S(""), NULL, &h, &vm, err, sizeof err) == PW_OK);
    pw_vm_free(vm);
    pw_module_free(m);
}

TEST(core_plugin_refusing_config) {
    pw_module *m = load("add_header", EXAMPLE("add_header"));
    if (!m)
        return;
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm;
    pw_plugin *p;
    CHECK(pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vm, S("ah"), S(""), S("no equals sign"), &p, err, sizeof err) ==
          PW_EPLUGIN);
    CHECK_CONTAINS(err, "proxy_on_configure returned false");
    CHECK(pw_plugin_new(vm, S("ah"), S(""), S("x-a=1"), &p, err, sizeof err) == PW_OK);
    pw_vm_free(vm);
    pw_module_free(m);
}

/* hostcalls.wasm: runs the test named by x-test, returns the result line. */
static pw_vm *hc_vm;
static pw_plugin *hc_plugin;
static mh_host hc_host;
static mh_stream hc_s;

static const char *hostcall(const char *test, pw_action *action) {
    static char line[1024];
    mh_stream_init(&hc_s);
    mh_add(&hc_s.req, ":method", "GET");
    mh_add(&hc_s.req, ":path", "/p?q=1");
    mh_add(&hc_s.req, "x-test", test);
    mh_body_set(&hc_s.req_body, ""); /* available, empty */
    hc_host.log_len = 0;
    hc_host.log[0] = 0;
    pw_stream *st;
    if (pw_stream_new(hc_plugin, &hc_s, &st, err, sizeof err) != PW_OK)
        return err;
    pw_action a = pw_stream_on_request_headers(st, (uint32_t)hc_s.req.n, 1);
    if (action)
        *action = a;
    if (a == PW_ACTION_LOCAL_RESPONSE) {
        const pw_local_response *lr = pw_stream_local_response(st);
        snprintf(line, sizeof line, "%u %.*s %zu %.*s=%.*s %d", lr->status, (int)lr->body.len,
                 lr->body.data, lr->nheaders, lr->nheaders ? (int)lr->headers[0].key.len : 0,
                 lr->nheaders ? lr->headers[0].key.data : "",
                 lr->nheaders ? (int)lr->headers[0].value.len : 0,
                 lr->nheaders ? lr->headers[0].value.data : "", lr->grpc_status);
        /* The next callback (the local response's own response headers,
         * §8.8) no longer reports it. */
        if (pw_stream_on_response_headers(st, 0, 1) != PW_ACTION_CONTINUE ||
            pw_stream_local_response(st) != NULL)
            snprintf(line, sizeof line, "local response reported twice");
        pw_stream_free(st);
        return line;
    }
    pw_stream_free(st);
    const char *r = strstr(hc_host.log, "result: ");
    if (!r)
        return hc_host.log;
    const char *e = strchr(r, '\n');
    snprintf(line, sizeof line, "%.*s", (int)(e ? e - r : (long)strlen(r)), r);
    return line;
}

TEST(core_hostcalls) {
    pw_module *m = load("hostcalls", PLUGIN("hostcalls"));
    CHECK(m != NULL);
    if (!m)
        return;
    hc_host.level = PROXY_LOG_INFO;
    CHECK(pw_vm_new(m, S("my_vm"), S(""), &mh_ops, &hc_host, &hc_vm, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(hc_vm, S("hc"), S("my_root"), S("config-bytes"), &hc_plugin, err,
                        sizeof err) == PW_OK);
    /* Bad guest pointers: InvalidMemoryAccess (6), never a crash. */
    CHECK_STR(hostcall("log_badptr", NULL), "result: log_badptr 6");
    CHECK_STR(hostcall("get_header_badptr", NULL), "result: get_header_badptr 6");
    CHECK_STR(hostcall("out_badptr", NULL), "result: out_badptr 6");
    /* Header maps. */
    CHECK_STR(hostcall("get_header_missing", NULL), "result: get_header_missing 1");
    CHECK_STR(hostcall("get_pairs", NULL),
              "result: get_pairs 0 3 :method=GET :path=/p?q=1 x-test=get_pairs");
    CHECK_STR(hostcall("add_header", NULL), "result: add_header 0 yes");
    CHECK(mh_get(&hc_s.req, "x-added") && !strcmp(mh_get(&hc_s.req, "x-added"), "yes"));
    CHECK_STR(hostcall("replace_header", NULL), "result: replace_header 0 replaced");
    CHECK_STR(hostcall("remove_header", NULL), "result: remove_header 0 get=1");
    CHECK(mh_get(&hc_s.req, "x-test") == NULL);
    CHECK_STR(hostcall("set_pairs", NULL), "result: set_pairs 0 2 a=1 b=22");
    CHECK(hc_s.req.n == 2);
    /* Time and log level. */
    const char *t = hostcall("time", NULL);
    CHECK(strncmp(t, "result: time 0 ", 15) == 0 &&
          strtoull(t + 15, NULL, 10) > 1600000000ull * 1000000000ull);
    CHECK_STR(hostcall("log_level", NULL), "result: log_level 0 2");
    /* Properties. */
    CHECK_STR(hostcall("property_name", NULL), "result: property_name 0 hc");
    CHECK_STR(hostcall("property_root_id", NULL), "result: property_root_id 0 my_root");
    CHECK_STR(hostcall("property_vm_id", NULL), "result: property_vm_id 0 my_vm");
    CHECK_STR(hostcall("property_path", NULL), "result: property_path 0 /p?q=1");
    CHECK_STR(hostcall("property_trailing_nul", NULL), "result: property_trailing_nul 0 /p?q=1");
    CHECK_STR(hostcall("property_unknown", NULL), "result: property_unknown 1");
    /* Configuration buffer, clamped reads, bad buffer type. */
    CHECK_STR(hostcall("config", NULL), "result: config 0 config-bytes");
    CHECK_STR(hostcall("config_clamp", NULL), "result: config_clamp 0 nfig-bytes");
    CHECK_STR(hostcall("buffer_bad_type", NULL), "result: buffer_bad_type 2");
    /* Local response. */
    pw_action a;
    CHECK_STR(hostcall("local_response", &a), "401 nope 1 x-why=test -1");
    CHECK(a == PW_ACTION_LOCAL_RESPONSE);
    /* Not implemented yet: Unimplemented, cleanly. */
    CHECK_STR(hostcall("unimplemented", NULL), "result: unimplemented 12 http_call=12 foreign=1 route=12");
    CHECK_STR(hostcall("effective_ctx_bad", NULL), "result: effective_ctx_bad 2");
    /* WASI. */
    CHECK_STR(hostcall("wasi_write", NULL), "result: wasi_write 0 nwritten=16 fd2=0 fd7=8");
    CHECK_CONTAINS(hc_host.log, "hc|2|hello from wasi\n");
    CHECK_CONTAINS(hc_host.log, "hc|4|hello from wasi stderr\n");
    const char *r = hostcall("random", NULL);
    CHECK(strncmp(r, "result: random 0 ", 17) == 0 && strlen(r) == 17 + 32);
    CHECK(!pw_vm_dead(hc_vm));
    size_t memsize;
    CHECK(pw_vm_memory(hc_vm, &memsize) != NULL && memsize >= 65536);
    /* The registry says which hostcalls answer Unimplemented. */
    size_t n;
    const pw_hostcall_info *hi = pw_hostcalls(&n);
    int log_ok = 0, http_unimpl = 0, wasi_both = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(hi[i].name, "proxy_log"))
            log_ok = hi[i].implemented && !strcmp(hi[i].signature, "iii:i");
        if (!strcmp(hi[i].name, "proxy_clear_route_cache"))
            http_unimpl = !hi[i].implemented;
        if (!strcmp(hi[i].name, "fd_write"))
            wasi_both++;
    }
    CHECK(log_ok && http_unimpl && wasi_both == 2);
    pw_vm_free(hc_vm);
    pw_module_free(m);
}

/* Bytes malloc'ed by the process (mmap'ed chunks included). */
static size_t heap_used(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Starts hostcalls.wasm as plugin "hc" on the shared hc_* globals. */
static pw_module *hc_start(pw_runtime *r) {
    pw_module *m = NULL;
    if (pw_module_load_file(r, "hostcalls", PLUGIN("hostcalls"), &m, err, sizeof err) != PW_OK) {
        printf("  load: %s\n", err);
        return NULL;
    }
    hc_host.level = PROXY_LOG_INFO;
    if (pw_vm_new(m, S("my_vm"), S(""), &mh_ops, &hc_host, &hc_vm, err, sizeof err) != PW_OK ||
        pw_plugin_new(hc_vm, S("hc"), S("my_root"), S(""), &hc_plugin, err, sizeof err) != PW_OK) {
        printf("  start: %s\n", err);
        pw_module_free(m);
        return NULL;
    }
    return m;
}

TEST(core_limits) {
    pw_module *m = hc_start(rt);
    CHECK(m != NULL);
    if (!m)
        return;
    /* Header names up to 8 KiB, values up to 64 KiB: 10 MB values are
     * refused without reaching the embedder. */
    CHECK_STR(hostcall("limit_name", NULL), "result: limit_name 2 8k=0");
    CHECK_CONTAINS(hc_host.log, "hc|3|plugin \"hc\": refused "
                                "proxy_add_header_map_value: header name of "
                                "1048576 bytes (limit 8192)");
    CHECK_STR(hostcall("limit_value", NULL), "result: limit_value 2 64k=0 64k+1=2 ok=0 bad=200");
    CHECK(hc_s.hook_bytes == 5 + 65536);
    /* One refusal notice per callback. */
    CHECK(count_of(hc_host.log, "refused") == 1);
    CHECK_STR(hostcall("limit_pairs", NULL), "result: limit_pairs 2");
    /* 32 MiB per callback: 511 values of 64 KiB (+ 5 bytes of name) fit;
     * the next callback has its budget again. */
    CHECK_STR(hostcall("limit_budget", NULL), "result: limit_budget 2 ok=511 bad=489");
    CHECK(hc_s.hook_bytes == 511ull * (5 + 65536));
    CHECK_CONTAINS(hc_host.log, "over the callback's budget of 33554432 bytes");
    CHECK_STR(hostcall("limit_budget", NULL), "result: limit_budget 2 ok=511 bad=489");
    /* Bodies and properties count too: 32 prepends of 1 MiB reach the
     * embedder (which refuses them: its buffer is 4 KiB), 31 properties
     * (1 MiB + a 1-byte path). */
    hostcall("limit_body", NULL);
    CHECK(hc_s.hook_bytes == 32ull << 20);
    CHECK_STR(hostcall("limit_property", NULL), "result: limit_property 2 ok=31 bad=9");
    CHECK_STR(hostcall("limit_local_body", NULL), "result: limit_local_body 2");
    /* random_get: 64 KiB per call, 512 calls (32 MiB) per callback. */
    CHECK_STR(hostcall("limit_random", NULL), "result: limit_random 28 calls=512 errno=28");
    /* A large local response is not kept once its stream is gone. */
    pw_action a;
    size_t before = heap_used();
    CHECK(strncmp(hostcall("local_big_body", &a), "200 bbbb", 8) == 0);
    CHECK(a == PW_ACTION_LOCAL_RESPONSE);
    CHECK(heap_used() < before + 65536);
    CHECK(!pw_vm_dead(hc_vm));
    pw_vm_free(hc_vm);
    pw_module_free(m);
}

TEST(core_status_limits) {
    pw_module *m = hc_start(rt);
    CHECK(m != NULL);
    if (!m)
        return;
    /* Local responses: 200..599 only, no body with 204 and 304. */
    pw_action a;
    CHECK_STR(hostcall("local_bad_status", &a),
              "result: local_bad_status 2 100=2 101=2 199=2 600=2 999=2 0=2 "
              "204+body=2 304+body=2");
    CHECK(a == PW_ACTION_CONTINUE);
    CHECK_CONTAINS(hc_host.log, "refused proxy_send_local_response: status 100 "
                                "(200..599 only)");
    CHECK_STR(hostcall("local_204", &a), "204  0 = -1");
    CHECK(a == PW_ACTION_LOCAL_RESPONSE);
    /* :status writes, by every hostcall that writes the response map. */
    CHECK_STR(hostcall("status_write", NULL),
              "result: status_write 0 100=2 add101=2 pairs100=2 600=2 20=2 "
              "2000=2 200=0");
    CHECK(mh_get(&hc_s.resp, ":status") && !strcmp(mh_get(&hc_s.resp, ":status"), "200"));
    CHECK(mh_get(&hc_s.resp, "x-a") == NULL);
    pw_vm_free(hc_vm);
    pw_module_free(m);
}

TEST(core_log_limits) {
    /* 1000 lines per second (the default, 10,000, would not fit in the
     * memhost's 64 KiB of log). */
    pw_runtime_config cfg = {.limits = {.max_log_lines_per_sec = 1000}};
    pw_runtime *r;
    CHECK(pw_runtime_new(&cfg, &r, err, sizeof err) == PW_OK);
    pw_module *m = hc_start(r);
    CHECK(m != NULL);
    if (!m) {
        pw_runtime_free(r);
        return;
    }
    /* Control characters but TAB escaped: one line per message. */
    CHECK_STR(hostcall("log_forge", NULL), "result: log_forge 0");
    CHECK_CONTAINS(hc_host.log, "hc|2|a\\nb\\r\\x00c\td\\x1b[31m\n");
    /* Cut after 4096 bytes. */
    static char want[4200];
    snprintf(want, sizeof want, "hc|2|%0*d...(5904 bytes truncated)\n", 4096, 0);
    for (char *p = want + 5; *p == '0'; p++)
        *p = 'x';
    CHECK_STR(hostcall("log_long", NULL), "result: log_long 0");
    CHECK_CONTAINS(hc_host.log, want);
    CHECK_STR(hostcall("wasi_forge", NULL), "result: wasi_forge 0 fd2=0 nwritten=10001");
    CHECK_CONTAINS(hc_host.log, "hc|2|l1\\nl2\n");
    for (char *p = want + 5; *p == 'x'; p++)
        *p = 'y';
    want[3] = '4';
    CHECK_CONTAINS(hc_host.log, want);
    /* 1000 lines per second: the rest is dropped, noticed once; the count
     * is logged with the first line of a later second. Lines logged earlier
     * in this second count too; the flood may straddle two seconds. */
    hostcall("log_flood", NULL);
    int lines = count_of(hc_host.log, "|flood ");
    CHECK(lines > 900 && lines <= 2000);
    CHECK_CONTAINS(hc_host.log, "hc|3|plugin \"hc\": log rate limit reached "
                                "(1000 lines or 1048576 bytes per second), "
                                "dropping lines\n");
    CHECK(count_of(hc_host.log, "dropping lines") <= 2);
    nanosleep(&(struct timespec){1, 100000000}, NULL);
    CHECK_STR(hostcall("log_level", NULL), "result: log_level 0 2");
    CHECK_CONTAINS(hc_host.log, "hc|3|plugin \"hc\": log rate limit: ");
    CHECK_CONTAINS(hc_host.log, " lines dropped\n");
    pw_vm_free(hc_vm);
    pw_module_free(m);
    pw_runtime_free(r);
}

TEST(core_limits_configurable) {
    pw_runtime_config cfg = {.limits = {.max_header_value_bytes = 100000}};
    pw_runtime *r;
    CHECK(pw_runtime_new(&cfg, &r, err, sizeof err) == PW_OK);
    pw_module *m = hc_start(r);
    CHECK(m != NULL);
    if (m) {
        CHECK_STR(hostcall("limit_value", NULL),
                  "result: limit_value 2 64k=0 64k+1=0 ok=0 bad=200");
        pw_vm_free(hc_vm);
        pw_module_free(m);
    }
    pw_runtime_free(r);
}

TEST(core_abi_0_1_0) {
    pw_module *m = load("abi010", PLUGIN("abi010"));
    CHECK(m != NULL);
    if (!m)
        return;
    CHECK_STR(pw_module_abi_version(m), "0.1.0");
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm;
    pw_plugin *p;
    CHECK(pw_vm_new(m, S(""), S("the-vm-config"), &mh_ops, &h, &vm, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vm, S("old"), S(""), S("the-plugin-config"), &p, err, sizeof err) ==
          PW_OK);
    mh_stream s;
    mh_stream_init(&s);
    mh_add(&s.req, ":path", "/");
    mh_add(&s.req, "x-a", "1");
    pw_stream *st;
    CHECK(pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK);
    CHECK(pw_stream_on_request_headers(st, 2, 1) == PW_ACTION_CONTINUE);
    pw_stream_free(st);
    /* proxy_get_configuration: VM config in on_vm_start, plugin config in
     * on_configure; then one word per check. */
    CHECK_STR(h.log, "old|2|the-vm-config\n"
                     "old|2|the-plugin-config\n"
                     "old|2|status-ok\n"
                     "old|2|missing-ok\n"
                     "old|2|size-ok\n"
                     "old|2|eff-ok\n"
                     "old|2|done-ok\n");
    pw_vm_free(vm);
    pw_module_free(m);
}

/* bodies.wasm: one stream with x-mode, returns the log of the stream. */
static pw_plugin *bd_plugin;
static mh_host bd_host;

static pw_stream *bd_start(mh_stream *s, const char *mode) {
    mh_stream_init(s);
    mh_add(&s->req, ":path", "/");
    mh_add(&s->req, "x-mode", mode);
    bd_host.log_len = 0;
    bd_host.log[0] = 0;
    pw_stream *st = NULL;
    if (pw_stream_new(bd_plugin, s, &st, err, sizeof err) != PW_OK)
        printf("  stream: %s\n", err);
    return st;
}

TEST(core_bodies_and_stream_control) {
    pw_module *m = load("bodies", PLUGIN("bodies"));
    CHECK(m != NULL);
    if (!m)
        return;
    bd_host.level = PROXY_LOG_INFO;
    pw_vm *vm;
    CHECK(pw_vm_new(m, S(""), S(""), &mh_ops, &bd_host, &vm, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vm, S("b"), S(""), S(""), &bd_plugin, err, sizeof err) == PW_OK);
    mh_stream s;
    pw_stream *st;

    /* Pause from request headers; continue/close are kept by the core:
     * pending for the embedder, or applied to the callback's result. Asked
     * during the stream's own callback, they are not announced (no wake). */
    unsigned applied;
    st = bd_start(&s, "pause");
    CHECK(pw_stream_on_request_headers(st, 2, 0) == PW_ACTION_PAUSE);
    CHECK(pw_stream_pending(st) == 0);
    pw_stream_free(st);
    st = bd_start(&s, "continue");
    CHECK(pw_stream_on_request_headers(st, 2, 0) == PW_ACTION_CONTINUE);
    CHECK(pw_stream_pending(st) == PW_PENDING_CONTINUE_REQUEST);
    CHECK(pw_stream_take(st, PW_PENDING_CONTINUE_RESPONSE) == 0);
    CHECK(pw_stream_take(st, PW_PENDING_ALL) == PW_PENDING_CONTINUE_REQUEST);
    CHECK(pw_stream_pending(st) == 0);
    CHECK_STR(s.events, "");
    CHECK_CONTAINS(bd_host.log, "request_headers 0");
    pw_stream_free(st);
    st = bd_start(&s, "close");
    CHECK(pw_stream_on_request_headers(st, 2, 0) == PW_ACTION_CLOSE);
    CHECK(pw_stream_returned(st, &applied) == PW_ACTION_CONTINUE);
    CHECK(applied == PW_PENDING_CLOSE);
    CHECK(pw_stream_pending(st) == 0);
    CHECK_STR(s.events, "");
    pw_stream_free(st);
    st = bd_start(&s, "continue010");
    pw_stream_on_request_headers(st, 2, 0);
    CHECK(pw_stream_pending(st) == PW_PENDING_CONTINUE_REQUEST);
    pw_stream_free(st);
    /* Type 9, and the TCP directions, which an HTTP stream does not have:
     * BadArgument (2), nothing pending. */
    for (int i = 0; i < 2; i++) {
        st = bd_start(&s, i ? "tcpstream" : "badstream");
        pw_stream_on_request_headers(st, 2, 0);
        CHECK(pw_stream_pending(st) == 0);
        CHECK_STR(s.events, "");
        CHECK_CONTAINS(bd_host.log, "request_headers 2");
        pw_stream_free(st);
    }
    /* A Pause whose direction the same callback continued goes on; the
     * raw result stays readable. */
    st = bd_start(&s, "pausecontinue");
    CHECK(pw_stream_on_request_headers(st, 2, 0) == PW_ACTION_CONTINUE);
    CHECK(pw_stream_returned(st, &applied) == PW_ACTION_PAUSE);
    CHECK(applied == PW_PENDING_CONTINUE_REQUEST);
    CHECK(pw_stream_pending(st) == 0);
    CHECK_STR(s.events, "");
    pw_stream_free(st);
    st = bd_start(&s, "setprop");
    pw_stream_on_request_headers(st, 2, 0);
    CHECK_STR(s.events, "setprop:my.key=1 ");
    pw_stream_free(st);

    /* Buffering: Pause until end of stream, then the whole body. */
    st = bd_start(&s, "buffer");
    pw_stream_on_request_headers(st, 2, 0);
    mh_body_set(&s.req_body, "hello ");
    CHECK(pw_stream_on_request_body(st, 6, 0) == PW_ACTION_PAUSE);
    mh_body_set(&s.req_body, "hello world");
    CHECK(pw_stream_on_request_body(st, 11, 1) == PW_ACTION_CONTINUE);
    CHECK_CONTAINS(bd_host.log, "request_body 6 0 1 size=6 body=hello \n");
    CHECK_CONTAINS(bd_host.log, "request_body 11 1 0 size=11 body=hello world\n");
    pw_stream_free(st);
    st = bd_start(&s, "nobuffer");
    mh_body_set(&s.req_body, "x");
    CHECK(pw_stream_on_request_body(st, 1, 0) == PW_ACTION_PAUSE_NO_BUFFER);
    pw_stream_free(st);

    /* Splices: prepend, append (start past the end), replace in the middle,
     * replace all, truncate. */
    st = bd_start(&s, "splice");
    mh_body_set(&s.req_body, "abcdef");
    pw_stream_on_request_body(st, 6, 1);
    CHECK_CONTAINS(bd_host.log, "body=[aXYZef]\n");
    CHECK(s.req_body.len == 8 && !memcmp(s.req_body.data, "[aXYZef]", 8));
    pw_stream_free(st);
    st = bd_start(&s, "replace");
    mh_body_set(&s.req_body, "abcdef");
    pw_stream_on_request_body(st, 6, 1);
    CHECK_CONTAINS(bd_host.log, "size=3 body=new\n");
    pw_stream_free(st);
    st = bd_start(&s, "truncate");
    mh_body_set(&s.req_body, "abcdef");
    pw_stream_on_request_body(st, 6, 1);
    CHECK_CONTAINS(bd_host.log, "size=2 body=ab\n");
    pw_stream_free(st);

    /* Response body rewrite; a body the embedder does not offer. */
    st = bd_start(&s, "upper");
    mh_body_set(&s.resp_body, "quiet words");
    CHECK(pw_stream_on_response_body(st, 11, 1) == PW_ACTION_CONTINUE);
    CHECK(s.resp_body.len == 11 && !memcmp(s.resp_body.data, "QUIET WORDS", 11));
    pw_stream_free(st);
    st = bd_start(&s, "");
    CHECK(pw_stream_on_response_body(st, 0, 1) == PW_ACTION_CONTINUE);
    CHECK_CONTAINS(bd_host.log, "response_body 0 1 0 size=0 body=\n");
    pw_stream_free(st);

    /* Local response from a body callback. */
    st = bd_start(&s, "local_body");
    mh_body_set(&s.req_body, "0123456789");
    CHECK(pw_stream_on_request_body(st, 10, 0) == PW_ACTION_LOCAL_RESPONSE);
    const pw_local_response *lr = pw_stream_local_response(st);
    CHECK(lr && lr->status == 413 && lr->body.len == 7);
    pw_stream_free(st);

    /* Trailers: maps 1 and 3 reach the embedder. */
    st = bd_start(&s, "");
    mh_add(&s.req_trailers, "x-t", "tv");
    CHECK(pw_stream_on_request_trailers(st, 1) == PW_ACTION_CONTINUE);
    CHECK_CONTAINS(bd_host.log, "request_trailers 1 x-t=tv");
    CHECK(mh_get(&s.req_trailers, "x-added") != NULL);
    CHECK(pw_stream_on_response_trailers(st, 0) == PW_ACTION_PAUSE);
    pw_stream_free(st);
    CHECK(!pw_vm_dead(vm));
    pw_vm_free(vm);
    pw_module_free(m);
}

TEST(core_trace_hook) {
    pw_module *m = load("add_header", EXAMPLE("add_header"));
    if (!m)
        return;
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm;
    pw_plugin *p;
    CHECK(pw_vm_new(m, S(""), S(""), &mh_ops_traced, &h, &vm, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vm, S("ah"), S(""), S("x-a=1"), &p, err, sizeof err) == PW_OK);
    CHECK_CONTAINS(h.trace_log, "env.proxy_get_buffer_bytes(7, 0, ");
    mh_stream s;
    mh_stream_init(&s);
    pw_stream *st;
    h.trace_len = 0;
    h.trace_log[0] = 0;
    CHECK(pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK);
    pw_stream_on_response_headers(st, 0, 1);
    pw_stream_free(st);
    /* One hostcall with its five arguments and the Ok status. */
    CHECK(strncmp(h.trace_log, "env.proxy_add_header_map_value(2, ", 34) == 0);
    CHECK_CONTAINS(h.trace_log, ", 3, ");
    CHECK_CONTAINS(h.trace_log, ", 1) -> 0\n");
    pw_vm_free(vm);
    pw_module_free(m);
}

TEST(core_assemblyscript_example) {
    pw_module *m = load("as_add_header", EXAMPLE("as_add_header"));
    if (!m)
        return;
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm;
    pw_plugin *p;
    CHECK(pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) == PW_OK);
    /* The AS runtime aborts unless plugin_root_id names its root context. */
    CHECK(pw_plugin_new(vm, S("as"), S("wrong"), S(""), &p, err, sizeof err) == PW_ETRAP);
    CHECK_CONTAINS(err, "proc_exit(255)");
    CHECK(pw_plugin_new(vm, S("as"), S("add_header"), S("x-as=hi"), &p, err, sizeof err) == PW_OK);
    mh_stream s;
    mh_stream_init(&s);
    mh_add(&s.req, ":path", "/");
    mh_add(&s.resp, ":status", "200");
    for (int i = 0; i < 3; i++) {
        pw_stream *st;
        CHECK(pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK);
        CHECK(pw_stream_on_request_headers(st, 1, 1) == PW_ACTION_CONTINUE);
        CHECK(pw_stream_on_response_headers(st, 1, 1) == PW_ACTION_CONTINUE);
        pw_stream_free(st);
    }
    CHECK(mh_get(&s.req, "x-as-request") != NULL);
    CHECK(mh_get(&s.resp, "x-as") && !strcmp(mh_get(&s.resp, "x-as"), "hi"));
    CHECK(!pw_vm_dead(vm));
    pw_vm_free(vm);
    pw_module_free(m);
}

/* ---------------------------------------------------- registry, reader */

/* Wasm arguments a trace argument kind takes (pwasm.h). */
static int kind_args(char k) {
    return strchr("spPoOV", k) ? 2 : 1;
}

TEST(registry_rows_agree) {
    size_t n;
    const pw_hostcall_info *h = pw_hostcalls(&n);
    CHECK(n > 100);
    int bad = 0, described = 0, wasi = 0;
    for (size_t i = 0; i < n; i++) {
        const char *sig = h[i].signature, *colon = strchr(sig, ':');
        int is_wasi = strcmp(h[i].module, "env") != 0;
        wasi += is_wasi;
        if (!colon || h[i].area < 0 || h[i].area >= PW_AREA_OTHER ||
            (is_wasi != (h[i].area == PW_AREA_WASI)) ||
            pw_hostcall_find(h[i].module, h[i].name) != &h[i]) {
            printf("  row %s.%s\n", h[i].module, h[i].name);
            bad++;
            continue;
        }
        if (!*h[i].arguments)
            continue;
        /* The kinds take the signature's parameters, as many as each
         * says; D (i64) exactly where the signature has an i64. */
        described++;
        const char *a = h[i].arguments;
        int np = (int)(colon - sig), at = 0;
        for (;;) {
            int k = kind_args(*a);
            if (at + k > np || (sig[at] == 'I') != (*a == 'D')) {
                printf("  arguments of %s: \"%s\" vs %s\n", h[i].name, h[i].arguments, sig);
                bad++;
                break;
            }
            at += k;
            a = strchr(a, ',');
            if (!a)
                break;
            a++;
        }
        if (!a && at != np) {
            printf("  arguments of %s: %d of %d parameters\n", h[i].name, at, np);
            bad++;
        }
    }
    CHECK(bad == 0);
    CHECK(described > 40);
    CHECK(wasi % 2 == 0 && wasi > 0);
    CHECK(pw_hostcall_find("env", "proxy_no_such_call") == NULL);
    CHECK(pw_hostcall_find("env", "fd_write") == NULL);
    const pw_hostcall_info *log = pw_hostcall_find("env", "proxy_log");
    CHECK(log && log->area == PW_AREA_LOG && log->implemented &&
          !strcmp(log->arguments, "L level,s message"));
    const pw_hostcall_info *q = pw_hostcall_find("env", "proxy_enqueue_shared_queue");
    CHECK(q && q->area == PW_AREA_SHARED && q->implemented);
    const pw_hostcall_info *hc = pw_hostcall_find("env", "proxy_http_call");
    CHECK(hc && hc->area == PW_AREA_CALLOUTS && hc->implemented);
    const pw_hostcall_info *ff = pw_hostcall_find("env", "proxy_call_foreign_function");
    CHECK(ff && ff->implemented);
    const pw_hostcall_info *rc = pw_hostcall_find("env", "proxy_clear_route_cache");
    CHECK(rc && !rc->implemented);
    CHECK_STR(pw_area_name(PW_AREA_MAPS), "header maps");
    CHECK_STR(pw_area_name(PW_AREA_WASI), "WASI");
    CHECK_STR(pw_area_name(-1), "other");
    CHECK_STR(pw_area_name(PW_AREA_COUNT), "other");
}

static const pw_import_info *info_import(const pw_module_info *mi, const char *name) {
    for (size_t i = 0; i < mi->nimports; i++)
        if (!strcmp(mi->imports[i].name, name))
            return &mi->imports[i];
    return NULL;
}

static int info_export_role(const pw_module_info *mi, const char *name) {
    for (size_t i = 0; i < mi->nexports; i++)
        if (!strcmp(mi->exports[i].name, name))
            return mi->exports[i].role;
    return -1;
}

/* Reads path with pw_module_info_read; 0 when it was read. */
static int read_info(const char *path, pw_module_info *mi) {
    size_t len;
    unsigned char *b = read_all(path, &len);
    if (!b) {
        printf("  cannot read %s\n", path);
        return -1;
    }
    int rc = pw_module_info_read(b, len, mi, err, sizeof err);
    free(b);
    if (rc != PW_OK)
        printf("  %s: %s\n", path, err);
    return rc;
}

TEST(reader_module_info) {
    pw_module_info mi;
    CHECK(read_info(EXAMPLE("add_header"), &mi) == PW_OK);
    CHECK_STR(mi.abi_version, "0.2.1");
    CHECK_STR(mi.problem, "");
    CHECK_STR(mi.allocator, "proxy_on_memory_allocate");
    CHECK_STR(mi.start, "_initialize");
    CHECK(!mi.artifact && mi.has_memory && mi.memory_initial >= 1 && mi.nfunctions > 0);
    CHECK(mi.nmissing == 0 && mi.nunimplemented == 0);
    const pw_import_info *im = info_import(&mi, "proxy_log");
    CHECK(im && im->status == PW_IMPORT_OK && im->area == PW_AREA_LOG &&
          im->kind == PW_KIND_FUNC && !strcmp(im->signature, "iii:i") && im->host &&
          !strcmp(im->host->name, "proxy_log"));
    CHECK(info_export_role(&mi, "proxy_abi_version_0_2_1") == PW_EXPORT_ABI_MARKER);
    CHECK(info_export_role(&mi, "proxy_on_request_headers") == PW_EXPORT_CALLBACK);
    CHECK(info_export_role(&mi, "_initialize") == PW_EXPORT_CALLBACK);
    CHECK(info_export_role(&mi, "proxy_on_tick") == PW_EXPORT_CALLBACK);
    CHECK(info_export_role(&mi, "proxy_on_memory_allocate") == PW_EXPORT_ALLOCATOR);
    CHECK(info_export_role(&mi, "memory") == PW_EXPORT_OTHER);
    pw_module_info_free(&mi);
    CHECK(mi.imports == NULL && mi.internal_ == NULL);

    /* Imports this version links but does not implement. */
    CHECK(read_info(PLUGIN("hostcalls"), &mi) == PW_OK);
    im = info_import(&mi, "proxy_http_call");
    CHECK(im && im->status == PW_IMPORT_OK && im->area == PW_AREA_CALLOUTS);
    im = info_import(&mi, "proxy_clear_route_cache");
    CHECK(im && im->status == PW_IMPORT_UNIMPLEMENTED);
    im = info_import(&mi, "fd_write");
    CHECK(im && im->status == PW_IMPORT_OK && im->area == PW_AREA_WASI);
    CHECK(mi.nunimplemented > 0 && mi.nmissing == 0);
    pw_module_info_free(&mi);

    /* Imports this host does not provide. */
    CHECK(read_info(PLUGIN("bad_import"), &mi) == PW_OK);
    im = info_import(&mi, "proxy_does_not_exist");
    CHECK(im && im->status == PW_IMPORT_MISSING && im->area == PW_AREA_OTHER && !im->host);
    CHECK(mi.nmissing == 1 && mi.problem[0] == 0);
    pw_module_info_free(&mi);
    CHECK(read_info(PLUGIN("bad_signature"), &mi) == PW_OK);
    im = info_import(&mi, "proxy_log");
    CHECK(im && im->status == PW_IMPORT_WRONG_SIGNATURE && im->area == PW_AREA_LOG && im->host &&
          !strcmp(im->host->signature, "iii:i"));
    CHECK(mi.nmissing == 1);
    pw_module_info_free(&mi);

    /* Not a Proxy-Wasm module: said by the reader as by the loader. */
    CHECK(read_info(PLUGIN("not_proxy_wasm"), &mi) == PW_OK);
    CHECK(mi.abi_version == NULL && mi.allocator == NULL);
    CHECK_CONTAINS(mi.problem, "no Proxy-Wasm ABI version marker");
    CHECK(mi.nmissing == 0);
    pw_module_info_free(&mi);
    pw_module *m = NULL;
    CHECK(pw_module_load_file(rt, "plain", PLUGIN("not_proxy_wasm"), &m, err, sizeof err) ==
          PW_ELOAD);
    CHECK_CONTAINS(err, "module \"plain\" refused: no Proxy-Wasm ABI version marker");

    /* Neither Wasm nor an artifact. */
    CHECK(pw_module_info_read((const uint8_t *)"hello", 5, &mi, err, sizeof err) == PW_ELOAD);
    CHECK_CONTAINS(err, "not a Wasm module");
    CHECK(pw_module_info_read((const uint8_t *)"PWASMAOT\1\0\0\0", 12, &mi, err, sizeof err) ==
          PW_ELOAD);
    CHECK_CONTAINS(err, "truncated pwasm compile artifact");
    char buf[64];
    CHECK_STR(pw_signature_pretty("iI:i", buf, sizeof buf), "(i32, i64) -> i32");
}

/* A module of one ABI version with the header callbacks of the other:
 * loaded, and each callback called with the arity it exports (the WAT
 * writes its arity and arguments as headers, one digit each). */
static void mixed_headers(const char *path, const char *abi, int arity) {
    pw_module *m = load("mixed", path);
    CHECK(m != NULL);
    if (!m)
        return;
    CHECK_STR(pw_module_abi_version(m), abi);
    CHECK(pw_module_has_callback(m, "proxy_on_request_headers") == 1);
    CHECK(pw_module_has_callback(m, "proxy_on_response_headers") == 1);
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm;
    pw_plugin *p;
    CHECK(pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vm, S("mixed"), S(""), S(""), &p, err, sizeof err) == PW_OK);
    mh_stream s;
    mh_stream_init(&s);
    mh_add(&s.req, ":path", "/");
    mh_add(&s.req, "x-a", "1");
    mh_add(&s.resp, ":status", "200");
    pw_stream *st;
    CHECK(pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK);
    CHECK(pw_stream_on_request_headers(st, 2, 1) == PW_ACTION_CONTINUE);
    CHECK(pw_stream_on_response_headers(st, 1, 0) == PW_ACTION_CONTINUE);
    pw_stream_free(st);
    CHECK_STR(h.log, "mixed|2|request_headers\n"
                     "mixed|2|response_headers\n");
    const char *want_args = arity == 3 ? "3" : "2";
    CHECK_STR(mh_get(&s.req, "x-args"), want_args);
    CHECK_STR(mh_get(&s.req, "x-ctx"), "2"); /* the stream, after root 1 */
    CHECK_STR(mh_get(&s.req, "x-n"), "2");
    CHECK_STR(mh_get(&s.resp, "x-args"), want_args);
    CHECK_STR(mh_get(&s.resp, "x-ctx"), "2");
    CHECK_STR(mh_get(&s.resp, "x-n"), "1");
    if (arity == 3) {
        CHECK_STR(mh_get(&s.req, "x-eos"), "1");
        CHECK_STR(mh_get(&s.resp, "x-eos"), "0");
    } else {
        CHECK(mh_get(&s.req, "x-eos") == NULL && mh_get(&s.resp, "x-eos") == NULL);
    }
    CHECK(!pw_vm_dead(vm));
    pw_vm_free(vm);
    pw_module_free(m);
}

TEST(core_abi_0_1_0_marker_0_2_x_callbacks) {
    mixed_headers(PLUGIN("mixed_abi010"), "0.1.0", 3);
}

TEST(core_abi_0_2_x_marker_0_1_0_callbacks) {
    mixed_headers(PLUGIN("mixed_abi020"), "0.2.0", 2);
}

TEST(core_header_callbacks_of_neither_signature) {
    pw_module *m = NULL;
    CHECK(pw_module_load_file(rt, "bad_headers", PLUGIN("bad_headers"), &m, err, sizeof err) ==
          PW_ELOAD);
    CHECK(m == NULL);
    CHECK_CONTAINS(err, "module \"bad_headers\" refused: exports "
                        "proxy_on_request_headers with signature (i32) -> i32, "
                        "expected (i32, i32, i32) -> i32 or (i32, i32) -> i32");
    pw_module_info mi;
    CHECK(read_info(PLUGIN("mixed_abi010"), &mi) == PW_OK);
    CHECK_STR(mi.problem, "");
    pw_module_info_free(&mi);
}

TEST(api_version_and_strerror) {
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", PWASM_VERSION_MAJOR, PWASM_VERSION_MINOR,
             PWASM_VERSION_PATCH);
    CHECK_STR(v, PWASM_VERSION_STRING);
    CHECK(PWASM_VERSION_NUMBER ==
          PWASM_VERSION_MAJOR * 10000 + PWASM_VERSION_MINOR * 100 + PWASM_VERSION_PATCH);
    CHECK_STR(pw_strerror(PW_OK), "success");
    CHECK_STR(pw_strerror(PW_ELOAD), "module refused");
    CHECK_STR(pw_strerror(PW_ETRAP), "plugin trapped");
    CHECK_STR(pw_strerror(12345), "unknown error");
    /* Every code has words of its own. */
    int distinct = 1;
    for (int a = PW_EDEAD; a <= PW_OK; a++)
        for (int b = a + 1; b <= PW_OK; b++)
            distinct &= strcmp(pw_strerror(a), pw_strerror(b)) != 0;
    CHECK(distinct);
    CHECK(strcmp(pw_strerror(PW_EDEAD), "unknown error") != 0);
}

int main(void) {
    if (pw_runtime_new(NULL, &rt, err, sizeof err) != PW_OK) {
        printf("runtime: %s\n", err);
        return 2;
    }
    RUN(engine_loads_examples);
    RUN(engine_refuses_unknown_import);
    RUN(engine_refuses_bad_signature);
    RUN(engine_refuses_truncated_and_garbage);
    RUN(engine_traps_each_kind);
    RUN(core_trap_fails_the_other_streams);
    RUN(core_chain_and_failure_policy);
    RUN(engine_precompiled_artifact);
    RUN(engine_relative_cache_dir);
    RUN(engine_interrupts_a_looping_plugin);
    RUN(core_lifecycle_order);
    RUN(core_host_ops_size);
    RUN(core_plugin_refusing_config);
    RUN(core_hostcalls);
    RUN(core_limits);
    RUN(core_status_limits);
    RUN(core_log_limits);
    RUN(core_limits_configurable);
    RUN(core_abi_0_1_0);
    RUN(core_abi_0_1_0_marker_0_2_x_callbacks);
    RUN(core_abi_0_2_x_marker_0_1_0_callbacks);
    RUN(core_header_callbacks_of_neither_signature);
    RUN(core_bodies_and_stream_control);
    RUN(core_trace_hook);
    RUN(core_assemblyscript_example);
    RUN(registry_rows_agree);
    RUN(reader_module_info);
    RUN(api_version_and_strerror);
    pw_runtime_free(rt);
    run_safety_tests(); /* test_safety.c, with a runtime of its own */
    run_store_tests();  /* test_store.c */
    run_callout_tests(); /* test_callout.c */
    run_tcp_tests();     /* test_tcp.c */
    run_capability_tests(); /* test_capabilities.c */
    run_header_tests();     /* test_headers.c */
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
