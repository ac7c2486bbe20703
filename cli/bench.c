/*
 * bench.c -- `pwasm bench PLUGIN FIXTURE [-n N]`: the fixture's exchange N
 * times on one warm instance; per-request time (mean, p50, p99), hostcalls
 * per request and guest memory.
 *
 * Timing covers one whole stream: pw_stream_new (on_context_create) to
 * pw_stream_free (on_log, on_done, on_delete), with the CLI's in-memory
 * host doing the maps and bodies. Hostcalls are counted on a second VM with
 * the trace hook on, so the timed VM runs without it, as in production.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[n]. */
static uint64_t pct(const uint64_t *v, size_t n, double p) {
    size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
    return v[k ? k - 1 : 0];
}

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {SESSION_OPTIONS,
                                         {"requests", required_argument, 0, 'n'},
                                         {"warmup", required_argument, 0, 'w'},
                                         {"json", no_argument, 0, 'j'},
                                         {0}};
    session s = {.cmd = "bench", .level = -1};
    long n = 10000, warm = -1;
    int json = 0, c, rc;
    char *end;
    optind = 1;
    while ((c = getopt_long(argc, argv, SESSION_SHORT "n:w:j", opts, NULL)) != -1) {
        if (c == 'n' || c == 'w') {
            *(c == 'n' ? &n : &warm) = strtol(optarg, &end, 10);
            if (*end || (c == 'n' ? n < 1 : warm < 0)) {
                fprintf(stderr, "pwasm bench: -%c needs a %s number\n", c,
                        c == 'n' ? "positive" : "non-negative");
                return 2;
            }
        } else if (c == 'j') {
            json = 1;
        } else if ((rc = session_option(&s, c)) != -2) {
            return rc == -1 ? (usage(stderr, "bench"), 2) : rc;
        }
    }
    if (warm < 0)
        warm = n / 10 < 1000 ? n / 10 : 1000;
    uint64_t *t = xmalloc((size_t)n * sizeof *t);
    host h, hc;
    exchange x, xc;
    exchange_init(&x, &s.fx, 0);
    exchange_init(&xc, &s.fx, 0);
    if ((rc = session_open(&s, argc, argv)))
        goto out;
    rc = 1;
    const fixture *fx = &s.fx;
    pw_module *m = s.m;
    const char *plugin_path = s.plugin_path;
    int level = s.level;
    /* Hostcalls per request, on a VM with the trace hook. */
    run_opts oc = {.log_level = level, .default_level = PROXY_LOG_INFO, .trace = 1};
    if (host_start(&hc, m, fx, &xc, &oc)) {
        fprintf(stderr, "pwasm bench: %s\n", xc.error);
        goto out;
    }
    host_exchange(&hc, &xc);
    host_stop(&hc);
    run_opts o = {.log_level = level, .default_level = PROXY_LOG_INFO, .trace = 0};
    if (host_start(&h, m, fx, &x, &o)) {
        fprintf(stderr, "pwasm bench: %s\n", x.error);
        goto out;
    }
    for (long i = 0; i < warm; i++) {
        exchange_reset(&x);
        host_exchange(&h, &x);
    }
    for (long i = 0; i < n; i++) {
        exchange_reset(&x);
        uint64_t t0 = now_ns();
        host_exchange(&h, &x);
        t[i] = now_ns() - t0;
    }
    uint64_t mem = host_guest_memory(&h);
    host_stop(&h);
    qsort(t, (size_t)n, sizeof *t, cmp_u64);
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += (double)t[i];
    double mean = sum / (double)n;
    uint64_t p50 = pct(t, (size_t)n, 50), p99 = pct(t, (size_t)n, 99);
    const char *name = fx->plugin.name ? fx->plugin.name : pw_module_name(m);
    if (json) {
        buf b = {0};
        buf_puts(&b, "{\"plugin\":");
        buf_json_str(&b, name, strlen(name));
        buf_puts(&b, ",\"file\":");
        buf_json_str(&b, plugin_path, strlen(plugin_path));
        buf_printf(&b,
                   ",\"requests\":%ld,\"warmup\":%ld,\"outcome\":\"%s\",\"mean_ns\":%.0f,"
                   "\"p50_ns\":%llu,\"p99_ns\":%llu,\"min_ns\":%llu,\"max_ns\":%llu,"
                   "\"hostcalls_per_request\":%u,\"guest_memory_bytes\":%llu}",
                   n, warm, outcome_name(x.outcome), mean, (unsigned long long)p50,
                   (unsigned long long)p99, (unsigned long long)t[0], (unsigned long long)t[n - 1],
                   xc.hostcalls, (unsigned long long)mem);
        printf("%s\n", b.p);
        buf_free(&b);
    } else {
        printf("plugin:     %s (%s)\n", name, plugin_path);
        printf("requests:   %ld on one warm instance (after %ld warm-up), outcome %s\n", n, warm,
               outcome_name(x.outcome));
        printf("time:       mean %.0f ns, p50 %llu ns, p99 %llu ns per request (min %llu, "
               "max %llu)\n",
               mean, (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)t[0],
               (unsigned long long)t[n - 1]);
        printf("hostcalls:  %u per request\n", xc.hostcalls);
        printf("memory:     %llu bytes of guest linear memory\n", (unsigned long long)mem);
    }
    if (x.outcome == OUT_FAILED)
        fprintf(stderr, "pwasm bench: warning: the exchange fails: %s\n", x.error);
    rc = 0;
out:
    free(t);
    exchange_free(&x);
    exchange_free(&xc);
    session_close(&s);
    return rc;
}
