/*
 * test_tcp.c -- TCP stream contexts (network filters, docs/ABI.md §8.3)
 * through the core with tests/plugins/tcp.c: the callbacks and what their
 * results mean, the DownstreamData / UpstreamData buffers through the
 * network hooks, the stream types of proxy_continue_stream /
 * proxy_close_stream, and Envoy's order at the end (done, log, delete).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "memhost.h"

#define S(lit) ((pw_str){lit, sizeof(lit) - 1})

static pw_runtime *trt;
static char err[PW_ERRLEN];

typedef struct {
    mh_host host;
    pw_vm *vm;
    pw_plugin *plugin;
} tcp_fixture;

static int fixture(tcp_fixture *f, pw_module *m, pw_str config) {
    memset(f, 0, sizeof *f);
    f->host.level = PROXY_LOG_TRACE;
    if (pw_vm_new(m, S(""), S(""), &mh_ops, &f->host, &f->vm, err, sizeof err) != PW_OK ||
        pw_plugin_new(f->vm, S("tcp"), S(""), config, &f->plugin, err, sizeof err) != PW_OK) {
        printf("  %s\n", err);
        return -1;
    }
    return 0;
}

/* A plugin with `config` and a TCP stream context on it, or NULL (the
 * failure counted). */
static pw_stream *tcp_start(tcp_fixture *f, pw_module *m, pw_str config, mh_stream *ms) {
    pw_stream *s = NULL;
    if (fixture(f, m, config) != 0) {
        t_failed++;
        return NULL;
    }
    mh_stream_init(ms);
    CHECK(pw_stream_new_tcp(f->plugin, ms, &s, err, sizeof err) == PW_OK);
    return s;
}

static const char *data_of(const mh_body *b) {
    static char buf[4200];
    snprintf(buf, sizeof buf, "%.*s", (int)b->len, b->data);
    return buf;
}

static void tcp_callbacks_and_buffers(pw_module *m) {
    tcp_fixture f;
    mh_stream ms;
    pw_stream *s = tcp_start(&f, m, S(""), &ms);
    if (!s)
        return;
    CHECK(pw_stream_call(s, PW_ON_NEW_CONNECTION, 0, 0) == PW_ACTION_CONTINUE);
    /* an HTTP direction on a TCP stream: BadArgument */
    CHECK_CONTAINS(f.host.log, "on_new_connection ctx=2 http_continue=2");
    /* HTTP events are not a TCP stream's */
    CHECK(pw_stream_call(s, PW_ON_REQUEST_HEADERS, 1, 0) == PW_ACTION_ERROR);

    /* a partial line is held (Pause), then the whole line is rewritten */
    mh_body_set(&ms.req_body, "hel");
    CHECK(pw_stream_call(s, PW_ON_DOWNSTREAM_DATA, 3, 0) == PW_ACTION_PAUSE);
    CHECK_CONTAINS(f.host.log, "on_downstream_data ctx=2 size=3 eos=0 data=hel\n");
    mh_body_set(&ms.req_body, "hello\n");
    CHECK(pw_stream_call(s, PW_ON_DOWNSTREAM_DATA, 6, 0) == PW_ACTION_CONTINUE);
    CHECK_STR(data_of(&ms.req_body), "HELLO\n");

    /* the upstream direction, through its own buffer */
    mh_body_set(&ms.resp_body, "abc");
    CHECK(pw_stream_call(s, PW_ON_UPSTREAM_DATA, 3, 1) == PW_ACTION_CONTINUE);
    CHECK_CONTAINS(f.host.log, "on_upstream_data ctx=2 size=3 eos=1");
    CHECK_STR(data_of(&ms.resp_body), "<abc");

    /* closes carry the peer type and have no result */
    CHECK(pw_stream_call(s, PW_ON_UPSTREAM_CLOSE, PROXY_PEER_REMOTE, 1) == PW_ACTION_CONTINUE);
    CHECK(pw_stream_call(s, PW_ON_DOWNSTREAM_CLOSE, PROXY_PEER_LOCAL, 0) == PW_ACTION_CONTINUE);
    CHECK_CONTAINS(f.host.log, "on_upstream_close ctx=2 peer=2");
    CHECK_CONTAINS(f.host.log, "on_downstream_close ctx=2 peer=1");

    /* Envoy's order for a connection: done, then log */
    pw_stream_free(s);
    const char *done = strstr(f.host.log, "on_done ctx=2"), *logd = strstr(f.host.log, "on_log ctx=2");
    CHECK(done && logd && done < logd);

    /* a close asked by the plugin */
    f.host.log_len = 0;
    f.host.log[0] = 0;
    mh_stream_init(&ms);
    CHECK(pw_stream_new_tcp(f.plugin, &ms, &s, err, sizeof err) == PW_OK);
    mh_body_set(&ms.req_body, "close now\n");
    CHECK(pw_stream_call(s, PW_ON_DOWNSTREAM_DATA, 10, 0) == PW_ACTION_CLOSE);
    CHECK_CONTAINS(f.host.log, "close 0");
    pw_stream_free(s);

    /* TCP events are not an HTTP stream's */
    mh_stream_init(&ms);
    CHECK(pw_stream_new(f.plugin, &ms, &s, err, sizeof err) == PW_OK);
    CHECK(pw_stream_call(s, PW_ON_DOWNSTREAM_DATA, 1, 0) == PW_ACTION_ERROR);
    pw_stream_free(s);
    pw_vm_free(f.vm);
}

static void tcp_new_connection_paused(pw_module *m) {
    tcp_fixture f;
    mh_stream ms;
    pw_stream *s = tcp_start(&f, m, S("hold"), &ms);
    if (!s)
        return;
    CHECK(pw_stream_call(s, PW_ON_NEW_CONNECTION, 0, 0) == PW_ACTION_PAUSE);
    unsigned applied = 1;
    CHECK(pw_stream_returned(s, &applied) == PW_ACTION_PAUSE && applied == 0);
    CHECK(pw_stream_pending(s) == 0);
    pw_stream_free(s);
    pw_vm_free(f.vm);
}

/* A chain of TCP links creates TCP stream contexts, on first use and at
 * the end (late) alike. */
static void tcp_chain(pw_module *m) {
    tcp_fixture f;
    if (fixture(&f, m, S("")) != 0) {
        t_failed++;
        return;
    }
    mh_stream a, b;
    mh_stream_init(&a);
    mh_stream_init(&b);
    pw_link links[2] = {{.plugin = f.plugin, .host_stream = &a},
                        {.plugin = f.plugin, .host_stream = &b}};
    pw_chain ch = {.links = links, .n = 2, .policy = PW_FAIL_CLOSED, .tcp = 1};
    char why[PW_ERRLEN];
    CHECK(pw_chain_call(&ch, 0, PW_ON_NEW_CONNECTION, 0, 0, why, sizeof why) ==
          PW_ACTION_CONTINUE);
    CHECK_STR(why, "");
    CHECK(links[0].stream && !links[0].failed);
    /* the second link is reached only at the end (late): a TCP context too */
    pw_chain_end(&ch, 1);
    CHECK(links[1].ended && !links[1].failed);
    CHECK_CONTAINS(f.host.log, "on_done ctx=3");
    pw_vm_free(f.vm);
}

void run_tcp_tests(void);
void run_tcp_tests(void) {
    if (pw_runtime_new(NULL, &trt, err, sizeof err) != PW_OK) {
        printf("runtime: %s\n", err);
        t_failed++;
        return;
    }
    pw_module *m = NULL;
    if (pw_module_load_file(trt, "tcp", "build/tests/plugins/tcp.wasm", &m, err, sizeof err) !=
        PW_OK) {
        printf("tcp.wasm: %s\n", err);
        t_failed++;
    } else {
        t_current = "tcp_callbacks_and_buffers";
        int f0 = t_failed;
        tcp_callbacks_and_buffers(m);
        printf("%s tcp_callbacks_and_buffers\n", t_failed == f0 ? "ok  " : "FAIL");
        t_current = "tcp_new_connection_paused";
        f0 = t_failed;
        tcp_new_connection_paused(m);
        printf("%s tcp_new_connection_paused\n", t_failed == f0 ? "ok  " : "FAIL");
        t_current = "tcp_chain";
        f0 = t_failed;
        tcp_chain(m);
        printf("%s tcp_chain\n", t_failed == f0 ? "ok  " : "FAIL");
        pw_module_free(m);
    }
    pw_runtime_free(trt);
}
