/*
 * test_safety.c -- the engine's safety rules, each found broken by a
 * hostile-input review: host code is never unwound by a trap; handlers and
 * the CPU timer live only while attached; the CPU limit counts system
 * time; module files and compiles are bounded; the compile cache is
 * trusted only when it is ours and its entries match their digest.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "memhost.h"
#include "pwasm.h"

#define PLUGIN(name) "build/tests/plugins/" name ".wasm"
#define EXAMPLE(name) "build/examples/" name ".wasm"
#define S(lit) ((pw_str){lit, sizeof(lit) - 1})

static pw_runtime *rt;
static char err[PW_ERRLEN];

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* ------------------------------------------- the native stack budget */

/* A map_pairs hook that needs real stack and counts entries and exits:
 * if a trap ever unwound it, they would differ. */
static unsigned entered, left;

static proxy_status_t deep_pairs(void *host, void *stream, proxy_map_type_t map, pw_kv **pairs,
                                 size_t *n) {
    entered++;
    volatile char buf[32768];
    for (size_t i = 0; i < sizeof buf; i += 512)
        buf[i] = (char)i;
    (void)host, (void)stream, (void)map;
    static pw_kv one = {{"k", 1}, {"v", 1}};
    *pairs = buf[0] == 0 ? &one : &one;
    *n = 1;
    left++;
    return PROXY_RESULT_OK;
}

TEST(safety_recursion_through_hostcalls_traps_in_plugin_code) {
    pw_module *m = NULL;
    CHECK(pw_module_load_file(rt, "recurse", PLUGIN("recurse_hostcall"), &m, err, sizeof err) ==
          PW_OK);
    if (!m)
        return;
    /* it traps 20 times in a row on purpose: no crash-loop brake */
    CHECK(pw_module_set_limits(m, &(pw_limits){.brake_traps = UINT32_MAX}, 0, 0) == PW_OK);
    pw_host_http_ops http = mh_http_ops;
    http.map_pairs = deep_pairs;
    pw_host_ops ops = mh_ops;
    ops.http = &http;
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm;
    pw_plugin *p;
    CHECK(pw_vm_new(m, S(""), S(""), &ops, &h, &vm, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vm, S("recurse"), S(""), S(""), &p, err, sizeof err) == PW_OK);
    for (int i = 0; i < 20; i++) {
        mh_stream s;
        pw_stream *st;
        mh_stream_init(&s);
        entered = left = 0;
        CHECK(pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK);
        CHECK(pw_stream_on_request_headers(st, 0, 1) == PW_ACTION_ERROR);
        pw_stream_free(st);
        CHECK_CONTAINS(pw_vm_last_error(vm), "call stack exhausted");
        /* thousands of hostcalls ran, none was cut short */
        CHECK(entered > 1000);
        CHECK(entered == left);
        if (entered != left)
            break;
    }
    /* the host still works: malloc and the VM were left whole */
    void *big = malloc(1 << 20);
    CHECK(big != NULL);
    free(big);
    pw_vm_free(vm);
    pw_module_free(m);
}

/* ------------------------------------------------ attach and detach */

static void *segv_handler(void) {
    struct sigaction sa;
    sigaction(SIGSEGV, NULL, &sa);
    return (sa.sa_flags & SA_SIGINFO) ? (void *)sa.sa_sigaction : (void *)sa.sa_handler;
}

TEST(safety_handlers_and_timer_exist_only_while_attached) {
    void *ours = segv_handler();
    CHECK(ours != (void *)SIG_DFL); /* rt is attached */
    pw_module *m = NULL;
    CHECK(pw_module_load_file(rt, "add_header", EXAMPLE("add_header"), &m, err, sizeof err) ==
          PW_OK);
    if (!m)
        return;
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm = NULL;
    pw_plugin *p;
    CHECK(pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) == PW_OK);
    CHECK(pw_plugin_new(vm, S("a"), S(""), S("x-a=1"), &p, err, sizeof err) == PW_OK);
    struct itimerval it;
    getitimer(ITIMER_PROF, &it);
    CHECK(it.it_interval.tv_usec != 0); /* armed by the calls above */

    /* Counted: a second runtime attaches and detaches without effect. */
    pw_runtime *r2;
    CHECK(pw_runtime_new(NULL, &r2, err, sizeof err) == PW_OK);
    pw_runtime_detach(r2);
    pw_runtime_detach(r2); /* idempotent per runtime */
    CHECK(segv_handler() == ours);

    /* The last detach restores the previous handlers and disarms. */
    pw_runtime_detach(rt);
    CHECK(segv_handler() == (void *)SIG_DFL);
    getitimer(ITIMER_PROF, &it);
    CHECK(it.it_interval.tv_usec == 0 && it.it_value.tv_usec == 0 && it.it_value.tv_sec == 0);
    struct sigaction prof;
    sigaction(SIGPROF, NULL, &prof);
    CHECK(prof.sa_handler == SIG_DFL);
    /* Detached, plugin code does not run (it could not be trapped). */
    mh_stream s;
    pw_stream *st = NULL;
    mh_stream_init(&s);
    int rc = pw_stream_new(p, &s, &st, err, sizeof err);
    if (rc == PW_OK) {
        CHECK(pw_stream_on_response_headers(st, 0, 1) == PW_ACTION_ERROR);
        pw_stream_free(st);
    }
    CHECK_CONTAINS(pw_vm_last_error(vm), "no trap handlers in this process");

    CHECK(pw_runtime_attach(rt, err, sizeof err) == PW_OK);
    CHECK(segv_handler() == ours);
    mh_stream_init(&s);
    CHECK(pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK);
    CHECK(pw_stream_on_response_headers(st, 0, 1) == PW_ACTION_CONTINUE);
    pw_stream_free(st);
    CHECK(mh_get(&s.resp, "x-a") != NULL);
    pw_runtime_free(r2);
    pw_vm_free(vm);
    pw_module_free(m);
}

/* --------------------------------------------- the CPU limit, system time */

/* Runs one request through a looping plugin (loop.wasm loops on x-loop,
 * loop_random.wasm always); returns the seconds until its call was
 * stopped (-1 if it was not), with the VM's last error in why. */
static double loop_once(pw_module *m, char *why, size_t whylen) {
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm;
    pw_plugin *p;
    if (pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) != PW_OK)
        return -1;
    double secs = -1;
    if (pw_plugin_new(vm, S("loop"), S(""), S(""), &p, err, sizeof err) == PW_OK) {
        mh_stream s;
        pw_stream *st;
        mh_stream_init(&s);
        mh_add(&s.req, "x-loop", "1");
        double t0 = now_s();
        if (pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK) {
            if (pw_stream_on_request_headers(st, 1, 1) == PW_ACTION_ERROR)
                secs = now_s() - t0;
            pw_stream_free(st);
        }
    }
    snprintf(why, whylen, "%s", pw_vm_last_error(vm));
    pw_vm_free(vm);
    return secs;
}

TEST(safety_cpu_limit_counts_time_in_hostcalls) {
    pw_module *m = NULL;
    CHECK(pw_module_load_file(rt, "loop_random", PLUGIN("loop_random"), &m, err, sizeof err) ==
          PW_OK);
    if (!m)
        return;
    char why[PW_ERRLEN];
    double secs = loop_once(m, why, sizeof why);
    /* the default limit is 1000 ms of CPU time */
    CHECK(secs >= 0.9 && secs < 5);
    CHECK_CONTAINS(why, "CPU time limit exceeded");
    pw_module_free(m);
}

TEST(safety_cpu_limit_is_per_runtime) {
    /* Before, the module loaded last set the limit for the whole process. */
    pw_runtime_config fast = {.max_call_ms = 200};
    pw_runtime *a, *b;
    CHECK(pw_runtime_new(&fast, &a, err, sizeof err) == PW_OK);
    pw_module *ma = NULL, *mb = NULL;
    CHECK(pw_module_load_file(a, "loop", PLUGIN("loop"), &ma, err, sizeof err) == PW_OK);
    CHECK(pw_runtime_new(NULL, &b, err, sizeof err) == PW_OK); /* 1000 ms */
    CHECK(pw_module_load_file(b, "loop", PLUGIN("loop"), &mb, err, sizeof err) == PW_OK);
    if (ma && mb) {
        char why[PW_ERRLEN];
        double ta = loop_once(ma, why, sizeof why), tb = loop_once(mb, why, sizeof why);
        CHECK(ta >= 0.15 && ta < 0.6);
        CHECK(tb >= 0.9 && tb < 5);
    }
    pw_module_free(ma);
    pw_module_free(mb);
    pw_runtime_free(b);
    pw_runtime_free(a);
}

/* ------------------------------------------- memory across a grow */

/* The generated code reads a memory's base once per function: accesses
 * after a memory.grow in the same function reach the new page, the old
 * contents stay, and an access past the new end still traps. Each call
 * grows a fresh VM's memory from 1 to 2 pages. */
static const char *grow_once(pw_module *m, uint32_t nheaders, pw_action *act) {
    static char why[PW_ERRLEN];
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm;
    pw_plugin *p;
    pw_stream *st;
    mh_stream s;
    mh_stream_init(&s);
    why[0] = 0;
    *act = PW_ACTION_ERROR;
    if (pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) != PW_OK)
        return err;
    if (pw_plugin_new(vm, S("grow"), S(""), S(""), &p, err, sizeof err) == PW_OK &&
        pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK) {
        *act = pw_stream_on_request_headers(st, nheaders, 1);
        pw_stream_free(st);
    }
    snprintf(why, sizeof why, "%s", pw_vm_last_error(vm));
    size_t size = 0;
    pw_vm_memory(vm, &size);
    if (*act != PW_ACTION_ERROR && size != 2 * 65536)
        snprintf(why, sizeof why, "memory is %zu bytes after the grow", size);
    pw_vm_free(vm);
    return why;
}

TEST(safety_memory_accesses_across_a_grow) {
    pw_module *m = NULL;
    CHECK(pw_module_load_file(rt, "grow", PLUGIN("grow_access"), &m, err, sizeof err) == PW_OK);
    if (!m)
        return;
    pw_action act;
    const char *why = grow_once(m, 0, &act);
    CHECK(act == PW_ACTION_CONTINUE);
    if (act != PW_ACTION_CONTINUE)
        printf("  grow_access: %s\n", why);
    why = grow_once(m, 1, &act);
    CHECK(act == PW_ACTION_ERROR);
    CHECK_CONTAINS(why, "out-of-bounds memory access");
    pw_module_free(m);
}

/* ----------------------------------------------------- module files */

TEST(safety_module_files_are_regular_and_bounded) {
    pw_module *m = NULL;
    const char *fifo = "build/tests/module.fifo";
    unlink(fifo);
    CHECK(mkfifo(fifo, 0600) == 0);
    double t0 = now_s();
    CHECK(pw_module_load_file(rt, "fifo", fifo, &m, err, sizeof err) == PW_EIO);
    CHECK_CONTAINS(err, "is not a regular file");
    CHECK(pw_module_load_file(rt, "zero", "/dev/zero", &m, err, sizeof err) == PW_EIO);
    CHECK_CONTAINS(err, "is not a regular file");
    unlink(fifo);
    /* A sparse file over the default limit (64 MiB) is refused unread. */
    const char *big = "build/tests/big.wasm";
    FILE *f = fopen(big, "w");
    CHECK(f && ftruncate(fileno(f), (64 << 20) + 1) == 0);
    if (f)
        fclose(f);
    CHECK(pw_module_load_file(rt, "big", big, &m, err, sizeof err) == PW_EIO);
    CHECK_CONTAINS(err, "over the limit of 67108864");
    unlink(big);
    CHECK(now_s() - t0 < 1.0);

    /* Structural limits, before anything is compiled. */
    pw_runtime_config cfg = {.cache_dir = "", .max_functions = 3};
    pw_runtime *r;
    CHECK(pw_runtime_new(&cfg, &r, err, sizeof err) == PW_OK);
    CHECK(pw_module_load_file(r, "f", EXAMPLE("deny"), &m, err, sizeof err) == PW_ELOAD);
    CHECK_CONTAINS(err, "functions, over the limit of 3");
    pw_runtime_free(r);
    pw_runtime_config cfg2 = {.cache_dir = "", .max_data_bytes = 16};
    CHECK(pw_runtime_new(&cfg2, &r, err, sizeof err) == PW_OK);
    CHECK(pw_module_load_file(r, "d", EXAMPLE("deny"), &m, err, sizeof err) == PW_ELOAD);
    CHECK_CONTAINS(err, "over the limit of 16");
    pw_runtime_free(r);

    /* A compile over its time limit is stopped, and the error says so. */
    pw_runtime_config cfg3 = {.cache_dir = "", .compile_timeout_ms = 50};
    CHECK(pw_runtime_new(&cfg3, &r, err, sizeof err) == PW_OK);
    t0 = now_s();
    CHECK(pw_module_load_file(r, "slow", EXAMPLE("deny"), &m, err, sizeof err) == PW_ECOMPILE);
    CHECK_CONTAINS(err, "exceeded the compile time limit of 50 ms");
    CHECK(now_s() - t0 < 2.0);
    pw_runtime_free(r);
}

/* ------------------------------------------------ the compile cache */

static char warned[2048];
static void on_warn(void *data, const char *msg) {
    (void)data;
    snprintf(warned, sizeof warned, "%s", msg);
}

/* The one <key>.so in dir, into path. */
static int cache_entry(const char *dir, char *path, size_t len) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s/*.so", dir);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int ok = fgets(path, (int)len, p) != NULL;
    pclose(p);
    if (!ok)
        return -1;
    path[strcspn(path, "\n")] = 0;
    return 0;
}

static int works(pw_module *m) {
    mh_host h = {.level = PROXY_LOG_INFO};
    pw_vm *vm;
    pw_plugin *p;
    if (pw_vm_new(m, S(""), S(""), &mh_ops, &h, &vm, err, sizeof err) != PW_OK)
        return 0;
    int ok = pw_plugin_new(vm, S("a"), S(""), S("x-c=1"), &p, err, sizeof err) == PW_OK;
    mh_stream s;
    pw_stream *st;
    mh_stream_init(&s);
    ok = ok && pw_stream_new(p, &s, &st, err, sizeof err) == PW_OK;
    if (ok) {
        ok = pw_stream_on_response_headers(st, 0, 1) == PW_ACTION_CONTINUE;
        pw_stream_free(st);
        ok = ok && mh_get(&s.resp, "x-c") != NULL;
    }
    pw_vm_free(vm);
    return ok;
}

TEST(safety_cache_entries_are_verified_before_loading) {
    const char *dir = "build/tests/trustcache";
    const char *marker = "build/tests/constructor-ran";
    char so[1024], cmd[2048];
    CHECK(system("rm -rf build/tests/trustcache build/tests/constructor-ran") == 0);
    pw_runtime_config cfg = {.cache_dir = dir, .warn = on_warn};
    pw_runtime *r;
    CHECK(pw_runtime_new(&cfg, &r, err, sizeof err) == PW_OK);
    pw_module *m = NULL;
    CHECK(pw_module_load_file(r, "c", EXAMPLE("add_header"), &m, err, sizeof err) == PW_OK);
    pw_module_free(m);
    CHECK(cache_entry(dir, so, sizeof so) == 0);

    /* 1. Replaced by an object whose constructor would write a file. */
    snprintf(cmd, sizeof cmd,
             "printf '#include <stdio.h>\\n__attribute__((constructor)) static void "
             "c(void){FILE*f=fopen(\"%s\",\"w\");if(f)fclose(f);}\\n' > build/tests/evil.c && "
             "cc -shared -fPIC -o '%s' build/tests/evil.c",
             marker, so);
    CHECK(system(cmd) == 0);
    warned[0] = 0;
    m = NULL;
    CHECK(pw_module_load_file(r, "c", EXAMPLE("add_header"), &m, err, sizeof err) == PW_OK);
    CHECK(access(marker, F_OK) != 0); /* its code never ran */
    CHECK_CONTAINS(warned, "does not match its recorded SHA-256");
    CHECK_CONTAINS(warned, "compiling it again");
    CHECK(m && works(m));
    pw_module_free(m);

    /* 2. Truncated ("file too short" for dlopen): compiled again. */
    CHECK(truncate(so, 100) == 0);
    warned[0] = 0;
    m = NULL;
    CHECK(pw_module_load_file(r, "c", EXAMPLE("add_header"), &m, err, sizeof err) == PW_OK);
    CHECK_CONTAINS(warned, "does not match");
    CHECK(m && works(m));
    pw_module_free(m);

    /* 3. Writable by others: not trusted, compiled again. */
    CHECK(chmod(so, 0666) == 0);
    warned[0] = 0;
    m = NULL;
    CHECK(pw_module_load_file(r, "c", EXAMPLE("add_header"), &m, err, sizeof err) == PW_OK);
    CHECK_CONTAINS(warned, "writable by others");
    struct stat st;
    CHECK(stat(so, &st) == 0 && !(st.st_mode & 022));
    pw_module_free(m);

    /* 4. No recorded digest: compiled again. */
    char sum[1100];
    snprintf(sum, sizeof sum, "%.*s.sha256", (int)(strlen(so) - 3), so);
    CHECK(unlink(sum) == 0);
    warned[0] = 0;
    m = NULL;
    CHECK(pw_module_load_file(r, "c", EXAMPLE("add_header"), &m, err, sizeof err) == PW_OK);
    CHECK_CONTAINS(warned, "has no recorded digest");
    CHECK(access(sum, F_OK) == 0);
    pw_module_free(m);

    /* 5. Untouched: loaded without a warning. */
    warned[0] = 0;
    m = NULL;
    CHECK(pw_module_load_file(r, "c", EXAMPLE("add_header"), &m, err, sizeof err) == PW_OK);
    CHECK_STR(warned, "");
    pw_module_free(m);

    /* 6. A cache directory others may write to is refused outright. */
    CHECK(chmod(dir, 0777) == 0);
    m = NULL;
    CHECK(pw_module_load_file(r, "c", EXAMPLE("add_header"), &m, err, sizeof err) == PW_ELOAD);
    CHECK_CONTAINS(err, "refusing the compile cache");
    CHECK_CONTAINS(err, "writable by others");
    CHECK(chmod(dir, 0755) == 0);
    pw_runtime_free(r);
}

/* The number of <key>.so files in dir. */
static int cache_entries(const char *dir) {
    char cmd[512], line[64];
    snprintf(cmd, sizeof cmd, "ls %s/*.so 2>/dev/null | wc -l", dir);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int n = fgets(line, sizeof line, p) ? atoi(line) : -1;
    pclose(p);
    return n;
}

/* Generated code split into parts compiled in parallel (forced here on a
 * small module with PWASM_COMPILE_PART_BYTES): the plugin works, the part
 * size is in the cache key, and a failing or slow compile still names the
 * module and the reason. */
TEST(safety_split_compile_keeps_errors_and_limits) {
    const char *dir = "build/tests/splitcache";
    CHECK(system("rm -rf build/tests/splitcache") == 0);
    setenv("PWASM_COMPILE_PART_BYTES", "4096", 1);
    setenv("PWASM_COMPILE_JOBS", "2", 1);
    pw_runtime_config cfg = {.cache_dir = dir};
    pw_runtime *r;
    CHECK(pw_runtime_new(&cfg, &r, err, sizeof err) == PW_OK);
    pw_module *m = NULL;
    CHECK(pw_module_load_file(r, "c", EXAMPLE("add_header"), &m, err, sizeof err) == PW_OK);
    CHECK(m && works(m));
    pw_module_free(m);
    CHECK(cache_entries(dir) == 1);
    unsetenv("PWASM_COMPILE_PART_BYTES");
    m = NULL;
    CHECK(pw_module_load_file(r, "c", EXAMPLE("add_header"), &m, err, sizeof err) == PW_OK);
    CHECK(m && works(m));
    pw_module_free(m);
    CHECK(cache_entries(dir) == 2); /* one unit: another entry */
    pw_runtime_free(r);

    setenv("PWASM_COMPILE_PART_BYTES", "4096", 1);
    pw_runtime_config bad = {.cache_dir = "", .cflags = "-O2 -fno-such-flag"};
    CHECK(pw_runtime_new(&bad, &r, err, sizeof err) == PW_OK);
    CHECK(pw_module_load_file(r, "badflags", EXAMPLE("add_header"), &m, err, sizeof err) ==
          PW_ECOMPILE);
    CHECK_CONTAINS(err, "module \"badflags\": C compilation failed");
    /* The compiler's own message follows (gcc, clang). */
    CHECK(strstr(err, "unrecognized command-line option") || strstr(err, "unknown argument"));
    pw_runtime_free(r);

    pw_runtime_config slow = {.cache_dir = "", .compile_timeout_ms = 50};
    CHECK(pw_runtime_new(&slow, &r, err, sizeof err) == PW_OK);
    double t0 = now_s();
    CHECK(pw_module_load_file(r, "slow", EXAMPLE("add_header"), &m, err, sizeof err) ==
          PW_ECOMPILE);
    CHECK_CONTAINS(err, "exceeded the compile time limit of 50 ms");
    CHECK(now_s() - t0 < 2.0);
    pw_runtime_free(r);
    unsetenv("PWASM_COMPILE_PART_BYTES");
    unsetenv("PWASM_COMPILE_JOBS");
}

void run_safety_tests(void);
void run_safety_tests(void) {
    if (pw_runtime_new(NULL, &rt, err, sizeof err) != PW_OK) {
        printf("runtime: %s\n", err);
        t_failed++;
        return;
    }
    RUN(safety_recursion_through_hostcalls_traps_in_plugin_code);
    RUN(safety_handlers_and_timer_exist_only_while_attached);
    RUN(safety_cpu_limit_counts_time_in_hostcalls);
    RUN(safety_cpu_limit_is_per_runtime);
    RUN(safety_memory_accesses_across_a_grow);
    RUN(safety_module_files_are_regular_and_bounded);
    RUN(safety_cache_entries_are_verified_before_loading);
    RUN(safety_split_compile_keeps_errors_and_limits);
    pw_runtime_free(rt);
}
