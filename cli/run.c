/*
 * run.c -- `pwasm run PLUGIN FIXTURE`: replays one HTTP exchange through a
 * plugin and prints, per phase, what the plugin did.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *callbacks_of(enum phase p) {
    switch (p) {
    case PH_START:
        return "proxy_on_context_create (root), proxy_on_vm_start, proxy_on_configure";
    case PH_CREATE:
        return "proxy_on_context_create";
    case PH_REQ_HEADERS:
        return "proxy_on_request_headers";
    case PH_REQ_BODY:
        return "proxy_on_request_body";
    case PH_REQ_TRAILERS:
        return "proxy_on_request_trailers";
    case PH_RESP_HEADERS:
        return "proxy_on_response_headers";
    case PH_RESP_BODY:
        return "proxy_on_response_body";
    case PH_RESP_TRAILERS:
        return "proxy_on_response_trailers";
    case PH_NEW_CONNECTION:
        return "proxy_on_new_connection";
    case PH_DOWNSTREAM_DATA:
        return "proxy_on_downstream_data";
    case PH_UPSTREAM_DATA:
        return "proxy_on_upstream_data";
    case PH_DOWNSTREAM_CLOSE:
        return "proxy_on_downstream_connection_close";
    case PH_UPSTREAM_CLOSE:
        return "proxy_on_upstream_connection_close";
    case PH_TICK:
        return "proxy_on_tick";
    case PH_QUEUE:
        return "proxy_on_queue_ready";
    case PH_STEP:
        return "";
    default:
        return "proxy_on_log, proxy_on_done, proxy_on_delete";
    }
}

static const char *peer_name(size_t peer) {
    return peer == PROXY_PEER_LOCAL ? "local" : peer == PROXY_PEER_REMOTE ? "remote" : "unknown";
}

static void print_map(FILE *f, const char *indent, const hlist *h) {
    buf b = {0};
    for (size_t i = 0; i < h->n; i++) {
        buf_clear(&b);
        buf_escape(&b, h->kv[i].key.data, h->kv[i].key.len, 200);
        buf_puts(&b, ": ");
        buf_escape(&b, h->kv[i].value.data, h->kv[i].value.len, 400);
        fprintf(f, "%s%s\n", indent, b.p);
    }
    if (!h->n)
        fprintf(f, "%s(none)\n", indent);
    buf_free(&b);
}

static void print_body(FILE *f, const char *indent, const char *what, const char *p, size_t len) {
    buf b = {0};
    buf_escape(&b, p, len, 400);
    fprintf(f, "%s%s (%zu bytes): \"%s\"\n", indent, what, len, b.p ? b.p : "");
    buf_free(&b);
}

static void print_events(FILE *f, const exchange *x, int call, int trace) {
    for (size_t i = 0; i < x->nevents; i++) {
        const event *e = &x->events[i];
        if (e->call != call)
            continue;
        /* With --trace the hostcall that logged a line, or read a property,
         * is printed right after it and says the same. */
        int traced = trace && i + 1 < x->nevents && x->events[i + 1].kind == EV_TRACE;
        switch (e->kind) {
        case EV_LOG:
            if (!traced)
                fprintf(f, "   log %s: %.*s\n", log_level_name(e->level), (int)e->len, e->text);
            break;
        case EV_TRACE:
            if (trace || e->unimplemented)
                fprintf(f, "   %s %.*s\n", e->unimplemented ? "!" : ">", (int)e->len, e->text);
            break;
        case EV_PROPERTY:
            if (!trace)
                fprintf(f, "   property %.*s\n", (int)e->len, e->text);
            break;
        case EV_NOTE:
            fprintf(f, "   note: %.*s\n", (int)e->len, e->text);
            break;
        }
    }
}

/* "== step 2 (line 14): advance 2500 ms" */
static void print_step(FILE *f, const exchange *x, const call *c) {
    const fixture *fx = x->fx;
    fprintf(f, "\n== step %zu", c->size + 1);
    if (!fx || c->size >= fx->nsteps) {
        fprintf(f, "\n");
        return;
    }
    const step *s = &fx->steps[c->size];
    if (s->name)
        fprintf(f, " \"%s\"", s->name);
    fprintf(f, " (line %zu, at %llu ms): ", s->line, (unsigned long long)c->at_ms);
    if (s->kind == STEP_ADVANCE)
        fprintf(f, "advance %llu ms\n", (unsigned long long)s->advance_ms);
    else
        fprintf(f, "%u %s%s through %s\n", s->repeat,
                s->has_conn || (!s->has_req && !s->has_resp && fx->conn.present) ? "connection"
                                                                                  : "exchange",
                s->repeat == 1 ? "" : "s", s->through ? s->through : "the first plugin");
}

static void print_call(FILE *f, const exchange *x, size_t i, int trace) {
    const call *c = &x->calls[i];
    if (c->phase == PH_STEP) {
        print_step(f, x, c);
        print_events(f, x, (int)i, trace);
        return;
    }
    fprintf(f, "\n-- %s", phase_name(c->phase));
    if (c->plugin)
        fprintf(f, " (%s)", c->plugin);
    fprintf(f, ": %s", c->phase == PH_CALLOUT                ? c->detail
                       : c->phase == PH_END && x->tcp ? "proxy_on_done, proxy_on_log, proxy_on_delete"
                                                      : callbacks_of(c->phase));
    switch (c->phase) {
    case PH_TICK:
    case PH_CALLOUT:
        fprintf(f, " at %llu ms", (unsigned long long)c->at_ms);
        break;
    case PH_QUEUE:
        fprintf(f, " (%zu call%s)", c->size, c->size == 1 ? "" : "s");
        break;
    case PH_REQ_HEADERS:
    case PH_RESP_HEADERS:
        fprintf(f, " (%zu header%s%s)", c->size, c->size == 1 ? "" : "s",
                c->eos ? ", end_of_stream" : "");
        break;
    case PH_REQ_BODY:
    case PH_RESP_BODY:
    case PH_DOWNSTREAM_DATA:
    case PH_UPSTREAM_DATA:
        fprintf(f, " (%zu byte%s%s)", c->size, c->size == 1 ? "" : "s",
                c->eos ? ", end_of_stream" : "");
        break;
    case PH_DOWNSTREAM_CLOSE:
    case PH_UPSTREAM_CLOSE:
        fprintf(f, " (peer %s: %s)", peer_name(c->size),
                c->size == PROXY_PEER_LOCAL ? "the proxy closed it" : "the peer closed it");
        break;
    case PH_REQ_TRAILERS:
    case PH_RESP_TRAILERS:
        fprintf(f, " (%zu trailer%s)", c->size, c->size == 1 ? "" : "s");
        break;
    default:
        break;
    }
    if (c->phase >= PH_REQ_HEADERS && c->phase <= PH_UPSTREAM_DATA)
        fprintf(f, " -> %s%s%s", action_name(c->action), c->resumed ? ", resumed" : "",
                c->closed ? ", closed" : "");
    fprintf(f, "\n");
    print_events(f, x, (int)i, trace);
    if (c->lr) {
        const local_resp *l = &x->lr;
        fprintf(f, "   local response: %u", l->status);
        if (l->details.len)
            fprintf(f, " (details \"%.*s\")", (int)l->details.len, l->details.data);
        if (l->grpc_status >= 0)
            fprintf(f, " grpc-status %d", l->grpc_status);
        fprintf(f, "\n");
        print_map(f, "     ", &l->headers);
        print_body(f, "     ", "body", l->body.data, l->body.len);
    }
    if (c->has_map && (c->phase == PH_DOWNSTREAM_DATA || c->phase == PH_UPSTREAM_DATA)) {
        /* What the plugin got, and what became of it. */
        int to_server = c->phase == PH_DOWNSTREAM_DATA;
        int passed = (c->action == PW_ACTION_CONTINUE || c->resumed) && !c->closed;
        print_body(f, "   ", "data before", c->data_before.data, c->data_before.len);
        print_body(f, "   ", "data after ", c->body_after.data, c->body_after.len);
        fprintf(f, "     -> %s\n",
                c->closed ? "the connection is closed"
                : passed  ? (to_server ? "forwarded to the upstream" : "forwarded to the client")
                          : "held");
    } else if (c->has_map) {
        if (c->phase == PH_REQ_BODY || c->phase == PH_RESP_BODY) {
            print_body(f, "   ", "body buffer after", c->body_after.data, c->body_after.len);
        } else {
            fprintf(f, "   %s after:\n",
                    c->phase == PH_REQ_TRAILERS || c->phase == PH_RESP_TRAILERS ? "trailers"
                                                                                : "headers");
            print_map(f, "     ", &c->map_after);
        }
    }
    fprintf(f, "   hostcalls: %u\n", c->hostcalls);
}

/* The calls the plugins made so far, what answered them, and the entries
 * of `callouts:` no call used. */
static void print_callouts(FILE *f, const exchange *x) {
    const fixture *fx = x->fx;
    size_t nfx = fx ? fx->ncallouts : 0;
    if (!x->ncallouts && !nfx)
        return;
    arena tmp = {0};
    fprintf(f, "   callouts:\n");
    for (size_t i = 0; i < x->ncallouts; i++) {
        const callout *c = &x->callouts[i];
        fprintf(f, "     token %u %s (%s, %s at %llu ms): ", c->token, callout_title(&tmp, c),
                c->plugin, phase_name(c->made_in), (unsigned long long)c->made_ms);
        if (c->entry < 0)
            fprintf(f, "UNEXPECTED (no entry of callouts: matches), ");
        else
            fprintf(f, "callouts[%d] (line %zu), ", c->entry, fx->callouts[c->entry].line);
        fprintf(f, "%s\n", callout_state(&tmp, fx, c));
    }
    for (size_t e = 0; e < nfx; e++) {
        size_t used = 0;
        for (size_t i = 0; i < x->ncallouts; i++)
            used += x->callouts[i].entry == (int)e;
        if (!used)
            fprintf(f, "     callouts[%zu] (line %zu): no call made it%s\n", e,
                    fx->callouts[e].line, fx->callouts[e].times > 1 ? " (yet)" : "");
    }
    arena_free(&tmp);
}

/* A connection's result: how it ended, the bytes each way. */
static void print_conn_result(FILE *f, const exchange *x) {
    fprintf(f, "   connection %llu: ", (unsigned long long)x->conn_id);
    if (x->plugin_closed)
        fprintf(f, "closed by the plugin in %s at %llu ms\n", phase_name(x->stopped_in),
                (unsigned long long)x->closed_ms);
    else if (x->outcome == OUT_FAILED)
        fprintf(f, "closed: the plugin failed\n");
    else
        fprintf(f, "not closed by the plugin\n");
    print_body(f, "   ", "forwarded to the upstream", x->req_sent.p ? x->req_sent.p : "",
               x->req_sent.len);
    print_body(f, "   ", "forwarded to the client", x->resp_sent.p ? x->resp_sent.p : "",
               x->resp_sent.len);
    if (x->req_body.len)
        print_body(f, "   ", "held, never forwarded, from the client", x->req_body.p, x->req_body.len);
    if (x->resp_body.len)
        print_body(f, "   ", "held, never forwarded, from the upstream", x->resp_body.p, x->resp_body.len);
}

void print_result(FILE *f, const exchange *x) {
    fprintf(f, "\n== result: %s", outcome_name(x->outcome));
    if (x->outcome == OUT_PAUSED || x->outcome == OUT_CLOSED || x->outcome == OUT_FAILED)
        fprintf(f, " in %s", phase_name(x->stopped_in));
    if (x->error[0])
        fprintf(f, ": %s", x->error);
    fprintf(f, "\n");
    if (x->outcome == OUT_START_FAILED) {
        for (size_t i = 0; i < x->nevents; i++)
            if (x->events[i].kind == EV_LOG &&
                strstr(x->events[i].text, "Missing root context factory"))
                fprintf(f, "   hint: AssemblyScript plugins (proxy-runtime) pick their root "
                           "context by root id: give --root-id (or root_id: in YAML)\n");
        return;
    }
    if (x->tcp) {
        print_conn_result(f, x);
        print_callouts(f, x);
        fprintf(f, "   hostcalls: %u for the connection, %u at start", x->hostcalls,
                x->start_hostcalls);
        if (x->other_hostcalls)
            fprintf(f, ", %u in ticks, queue deliveries and callout answers", x->other_hostcalls);
        fprintf(f, "\n");
        return;
    }
    int sent = x->outcome != OUT_LOCAL || x->lr.phase >= PH_RESP_HEADERS;
    sent = sent && x->resp_h_on;
    fprintf(f, "   upstream request: %s\n",
            sent ? "sent" : "not sent (the plugin answered or the exchange stopped)");
    if (sent)
        print_body(f, "     ", "body sent", x->req_sent.p ? x->req_sent.p : "", x->req_sent.len);
    if (x->resp_h_on) {
        fprintf(f, "   response to the client:\n");
        print_map(f, "     ", &x->resp_h);
        print_body(f, "     ", "body", x->resp_sent.p ? x->resp_sent.p : "", x->resp_sent.len);
        if (x->resp_t.n) {
            fprintf(f, "     trailers:\n");
            print_map(f, "       ", &x->resp_t);
        }
    }
    print_callouts(f, x);
    fprintf(f, "   hostcalls: %u for the request, %u at start", x->hostcalls, x->start_hostcalls);
    if (x->other_hostcalls)
        fprintf(f, ", %u in ticks, queue deliveries and callout answers", x->other_hostcalls);
    fprintf(f, "\n");
}

void print_calls(FILE *f, const exchange *x, size_t from, int trace) {
    for (size_t i = from; i < x->ncalls; i++) {
        const call *c = &x->calls[i];
        /* Silent context creation is noise. */
        if (c->phase == PH_CREATE && !c->hostcalls)
            continue;
        print_call(f, x, i, trace);
    }
}

void print_exchange(FILE *f, const exchange *x, int trace) {
    print_calls(f, x, 0, trace);
    print_result(f, x);
}

/* Modules of `plugins:` with a path of their own, loaded once. */
typedef struct run_modules {
    pw_runtime *rt;
    char **paths;
    pw_module **mods;
    size_t n;
    int load_failures; /* a module of `plugins:` that could not be loaded */
} run_modules;

static pw_module *run_load(void *data, const char *path, char *err, size_t errlen) {
    run_modules *rm = data;
    for (size_t i = 0; i < rm->n; i++)
        if (!strcmp(rm->paths[i], path))
            return rm->mods[i];
    pw_module *m;
    if (plugin_load(rm->rt, path, NULL, &m, err, errlen)) {
        rm->load_failures++;
        return NULL;
    }
    rm->paths = xrealloc(rm->paths, (rm->n + 1) * sizeof *rm->paths);
    rm->mods = xrealloc(rm->mods, (rm->n + 1) * sizeof *rm->mods);
    rm->paths[rm->n] = xstrdup(path);
    rm->mods[rm->n++] = m;
    return m;
}

static void run_modules_free(run_modules *rm) {
    for (size_t i = 0; i < rm->n; i++) {
        pw_module_free(rm->mods[i]);
        free(rm->paths[i]);
    }
    free(rm->paths);
    free(rm->mods);
}

/* The fixture's steps, each printed as it ran; exchanges with their
 * result. */
static void run_steps(host *h, exchange *x, int trace) {
    const fixture *fx = x->fx;
    print_calls(stdout, x, 0, trace);
    for (size_t i = 0; i < fx->nsteps; i++) {
        size_t from = x->ncalls;
        int rc = host_step(h, x, fx, i);
        print_calls(stdout, x, from, trace);
        if (rc) {
            printf("   error: %s\n", x->error);
            break;
        }
        if (fx->steps[i].kind == STEP_EXCHANGE)
            print_result(stdout, x);
    }
}

static int cli_fixture(fixture *fx, const char *path, const char *const flags[5], char *err,
                       size_t errlen) {
    fixture_init(fx);
    if (path) {
        ydoc d;
        int rc = ydoc_load(&d, path, err, errlen) ||
                 ycheck_keys(&d, yroot(&d), fixture_keys, "the fixture", err, errlen) ||
                 fixture_parse(fx, &d, yroot(&d), 1, err, errlen);
        ydoc_free(&d);
        if (rc) {
            fixture_free(fx);
            return -1;
        }
    }
    fixture_finish(fx);
    plugin_spec *ps = &fx->plugin;
    for (int i = 0; i < 2; i++) {
        if (!flags[i])
            continue;
        char **v = i ? &ps->vm_config : &ps->config;
        free(*v);
        *v = NULL;
        *(i ? &ps->has_vm_config : &ps->has_config) = 1;
        if (read_arg_value(flags[i], v, i ? &ps->vm_config_len : &ps->config_len, err, errlen)) {
            fixture_free(fx);
            return -1;
        }
    }
    char **text[3] = {&ps->root_id, &ps->vm_id, &ps->name};
    for (int i = 0; i < 3; i++)
        if (flags[2 + i]) {
            free(*text[i]);
            *text[i] = xstrdup(flags[2 + i]);
        }
    return 0;
}

int session_option(session *s, int c) {
    const char *keys = "cvriN";
    const char *k = strchr(keys, c);
    if (c && k) {
        s->flags[k - keys] = optarg;
        return -2;
    }
    if (c == 'l') {
        if ((s->level = log_level_parse(optarg)) >= 0)
            return -2;
        fprintf(stderr, "pwasm %s: unknown log level \"%s\"\n", s->cmd, optarg);
        return 2;
    }
    if (c == 'h') {
        usage(stdout, s->cmd);
        return 0;
    }
    return -1;
}

int session_open(session *s, int argc, char **argv) {
    if (argc - optind < 1 || argc - optind > 2) {
        if (argc - optind < 1)
            fprintf(stderr,
                    "pwasm %s: missing PLUGIN (a .wasm file or a pwasm compile artifact)\n\n",
                    s->cmd);
        else
            fprintf(stderr,
                    "pwasm %s: too many arguments (from \"%s\" on): one PLUGIN and at most "
                    "one FIXTURE\n\n",
                    s->cmd, argv[optind + 2]);
        usage(stderr, s->cmd);
        return 2;
    }
    s->plugin_path = argv[optind];
    char err[PW_ERRLEN];
    if (cli_fixture(&s->fx, argv[optind + 1], s->flags, err, sizeof err)) {
        fprintf(stderr, "pwasm %s: %s\n", s->cmd, err);
        return CLI_EXIT_LOAD;
    }
    s->opened = 1;
    if (!(s->rt = cli_runtime(err, sizeof err)) ||
        plugin_load(s->rt, s->plugin_path, NULL, &s->m, err, sizeof err) ||
        plugin_restrict(s->m, s->fx.plugin.capabilities, 1, err, sizeof err)) {
        fprintf(stderr, "pwasm: %s\n", err);
        return CLI_EXIT_LOAD;
    }
    return 0;
}

void session_close(session *s) {
    if (s->m)
        pw_module_free(s->m);
    if (s->rt)
        pw_runtime_free(s->rt);
    if (s->opened)
        fixture_free(&s->fx);
}

int cmd_run(int argc, char **argv) {
    static const struct option opts[] = {SESSION_OPTIONS, {"trace", no_argument, 0, 't'}, {0}};
    session s = {.cmd = "run", .level = -1};
    int trace = 0, c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, SESSION_SHORT "t", opts, NULL)) != -1) {
        if (c == 't')
            trace = 1;
        else if ((rc = session_option(&s, c)) != -2)
            return rc == -1 ? (usage(stderr, "run"), 2) : rc;
    }
    if ((rc = session_open(&s, argc, argv))) {
        session_close(&s);
        return rc;
    }
    const plugin_spec *ps = &s.fx.plugin;
    printf("plugin: %s (%s, ABI %s)\n", ps->name ? ps->name : pw_module_name(s.m), s.plugin_path,
           pw_module_abi_version(s.m));
    if (ps->config_len) {
        buf b = {0};
        buf_escape(&b, ps->config, ps->config_len, 400);
        printf("config: \"%s\"\n", b.p);
        buf_free(&b);
    }
    host h;
    exchange x;
    exchange_init(&x, &s.fx, 1);
    run_modules rm = {.rt = s.rt};
    run_opts o = {.log_level = s.level,
                  .default_level = PROXY_LOG_TRACE,
                  .trace = 2,
                  .record = 1,
                  .load = run_load,
                  .load_data = &rm};
    if (host_start(&h, s.m, &s.fx, &x, &o) == 0) {
        if (s.fx.nsteps) {
            run_steps(&h, &x, trace);
            host_stop(&h);
        } else {
            host_exchange(&h, &x);
            host_stop(&h);
            print_exchange(stdout, &x, trace);
        }
    } else {
        print_exchange(stdout, &x, trace);
    }
    rc = x.outcome != OUT_START_FAILED ? CLI_EXIT_OK
         : rm.load_failures           ? CLI_EXIT_LOAD
                                      : CLI_EXIT_FAIL;
    exchange_free(&x);
    run_modules_free(&rm);
    session_close(&s);
    return rc;
}
