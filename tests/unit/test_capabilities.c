/*
 * test_capabilities.c -- the capability allow-list (pw_capability_*,
 * pw_module_restrict; docs/ABI.md "Capabilities"). The hostcalls' answers
 * are checked by tests/conformance/capabilities.yaml.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "pwasm.h"

static char err[PW_ERRLEN];

TEST(capability_rules_parse) {
    uint32_t a = 0;
    CHECK(pw_capability_parse("allow=headers,log", 17, &a, err, sizeof err) == PW_OK);
    CHECK(a == ((1u << PW_CAP_HEADERS) | (1u << PW_CAP_LOG)));
    CHECK(pw_capability_parse("deny=http_call,grpc", 19, &a, err, sizeof err) == PW_OK);
    CHECK(a == (PW_CAP_ALL & ~((1u << PW_CAP_HTTP_CALL) | (1u << PW_CAP_GRPC))));
    CHECK(pw_capability_parse("allow=", 6, &a, err, sizeof err) == PW_OK && a == 0);
    CHECK(pw_capability_parse("deny=", 5, &a, err, sizeof err) == PW_OK && a == PW_CAP_ALL);
    CHECK(pw_capability_parse("deny=headers,sockets", 20, &a, err, sizeof err) == PW_EINVAL);
    CHECK_CONTAINS(err, "unknown capability \"sockets\"");
    CHECK(pw_capability_parse("allow=,log", 10, &a, err, sizeof err) == PW_EINVAL);
    CHECK(pw_capability_parse("only=log", 8, &a, err, sizeof err) == PW_EINVAL);
    CHECK_CONTAINS(err, "allow=LIST");
}

TEST(capability_every_group_has_hostcalls) {
    size_t n;
    const pw_hostcall_info *h = pw_hostcalls(&n);
    int seen[PW_CAP_COUNT] = {0};
    for (size_t i = 0; i < n; i++) {
        int c = pw_capability_of(h[i].module, h[i].name);
        CHECK(c >= -1 && c < PW_CAP_COUNT);
        if (c >= 0)
            seen[c]++;
    }
    for (int c = 0; c < PW_CAP_COUNT; c++) {
        CHECK(pw_capability_name(c) != NULL);
        CHECK(seen[c] > 0);
    }
    CHECK(pw_capability_name(PW_CAP_COUNT) == NULL);
    CHECK(pw_capability_of("env", "proxy_get_buffer_bytes") == -1);
    CHECK(pw_capability_of("env", "proxy_done") == -1);
    CHECK(pw_capability_of("wasi_snapshot_preview1", "proc_exit") == -1);
    CHECK(pw_capability_of("wasi_unstable", "random_get") == PW_CAP_WASI_RANDOM);
    CHECK(pw_capability_of("env", "proxy_http_call") == PW_CAP_HTTP_CALL);
    CHECK(pw_capability_of("env", "no_such_call") == -1);
}

static int nwarn;
static char lastwarn[512];
static void warn(void *data, const char *msg) {
    (void)data;
    nwarn++;
    snprintf(lastwarn, sizeof lastwarn, "%s", msg);
}

/* Denying everything reports each import of a capability, once, and
 * nothing else: a deniable hostcall without a stub would add a warning
 * ("cannot be denied"), so the count and the warnings would differ. The
 * probe imports nearly every hostcall. */
TEST(capability_restrict_reports_each_denied_import) {
    pw_runtime *rt = NULL;
    pw_module *m = NULL;
    if (pw_runtime_new(NULL, &rt, err, sizeof err) != PW_OK ||
        pw_module_load_file(rt, "probe", "build/tests/conformance/probe.wasm", &m, err,
                            sizeof err) != PW_OK) {
        printf("  %s\n", err);
        CHECK(0);
        pw_runtime_free(rt);
        return;
    }
    nwarn = 0;
    int all = pw_module_restrict(m, 0, warn, NULL);
    CHECK(all > 30);
    CHECK(nwarn == all);
    int sum = 0;
    for (int c = 0; c < PW_CAP_COUNT; c++) {
        nwarn = 0;
        int one = pw_module_restrict(m, PW_CAP_ALL & ~(1u << c), warn, NULL);
        CHECK(one > 0 && nwarn == one);
        sum += one;
    }
    CHECK(sum == all);
    pw_module_restrict(m, PW_CAP_ALL & ~(1u << PW_CAP_WASI_IO), warn, NULL);
    CHECK_CONTAINS(lastwarn, "of capability \"wasi_io\", which is denied: it answers "
                             "ENOTCAPABLE (76)");
    nwarn = 0;
    CHECK(pw_module_restrict(m, PW_CAP_ALL, warn, NULL) == 0);
    CHECK(nwarn == 0);
    pw_module_free(m);
    pw_runtime_free(rt);
}

void run_capability_tests(void) {
    RUN(capability_rules_parse);
    RUN(capability_every_group_has_hostcalls);
    RUN(capability_restrict_reports_each_denied_import);
}
