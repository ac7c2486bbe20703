/*
 * probe.wasm (C SDK, with dispatch): makes the hostcalls a script asks for,
 * in the callbacks it names, and logs each result. It is the plugin behind
 * most of the conformance corpus (the YAML files of tests/conformance): a test gives
 * the script as the plugin configuration and checks the log lines.
 *
 * Script: one command per line (or separated by ';'):
 *
 *   PHASE[@eos|@more] OP ARG...
 *
 * PHASE is vm_start, configure, create, request_headers, request_body,
 * request_trailers, response_headers, response_body, response_trailers, log,
 * done, delete, tick (proxy_on_tick), queue_ready (proxy_on_queue_ready),
 * http_response (proxy_on_http_call_response), grpc_initial, grpc_message,
 * grpc_trailing or grpc_close (proxy_on_grpc_*: the commands run in the
 * context that made the call, which the SDK made effective; `args` gives
 * "token=N headers=H body=B trailers=T", "token=N size=S", "token=N
 * status=S"); on TCP stream contexts new_connection, downstream_data,
 * upstream_data (`args`: "size=N eos=E"), downstream_close, upstream_close
 * (`args`: "peer=N");
 * @eos / @more restrict a body or headers command to calls with
 * end_of_stream 1 / 0. Commands for vm_start come from the VM
 * configuration (read in proxy_on_vm_start), all others from the plugin
 * configuration (read in proxy_on_configure). Several root contexts on one
 * VM each run the commands of their own plugin configuration (and every
 * command of the VM configuration). Arguments are separated by
 * spaces; "double quotes" keep spaces and understand \n \t \r \0 \\ \" \xHH.
 *
 * Every command but `return` logs one INFO line:
 *
 *   PHASE OP -> STATUS[ VALUE]
 *
 * STATUS is the proxy_status_t name (Ok, NotFound, BadArgument, ...,
 * Unimplemented), or errno=N for WASI calls; VALUE is what the call
 * returned, as "quoted text" with the escapes above, or a number.
 *
 * Names: MAP request_headers|request_trailers|response_headers|
 * response_trailers|N; BUFFER request_body|response_body|vm_configuration|
 * plugin_configuration|N; STREAM request|response|downstream|upstream|N;
 * numbers are decimal or 0x hex; `max` is 0xFFFFFFFF.
 *
 *   args                          the callback's arguments: "size=N eos=E"
 *                                 ("queue=N" in queue_ready)
 *   context                       "ctx=N root=R" (current context ids)
 *   return continue|pause|N       what this stream callback returns (default 0);
 *   return fail                   in vm_start / configure: return 0 (refuse)
 *   log LEVEL TEXT                proxy_log
 *   log_level / time              proxy_get_log_level / _current_time_nanoseconds
 *   get_buffer BUFFER START MAX   proxy_get_buffer_bytes -> the bytes
 *   buffer_status BUFFER          proxy_get_buffer_status -> "size=N flags=F"
 *   set_buffer BUFFER START SIZE DATA   proxy_set_buffer_bytes
 *   get_configuration             proxy_get_configuration (0.1.0)
 *   get_header MAP KEY            proxy_get_header_map_value -> the value
 *   add_header / replace_header MAP KEY VALUE, remove_header MAP KEY
 *   get_pairs MAP                 proxy_get_header_map_pairs -> "N: k=v, k=v"
 *   set_pairs MAP [K=V ...]       proxy_set_header_map_pairs (serialized here)
 *   set_pairs_raw MAP BYTES       proxy_set_header_map_pairs with raw bytes
 *   map_size MAP                  proxy_get_header_map_size -> N
 *   get_property PATH             proxy_get_property; '.' separates segments
 *   get_property_raw BYTES        proxy_get_property with the path as given
 *   get_property_int PATH         as get_property, value as a signed int64
 *   set_property PATH VALUE       proxy_set_property
 *   continue STREAM / close STREAM  proxy_continue_stream / proxy_close_stream
 *   continue_request / continue_response  the 0.1.0 calls
 *   local_response STATUS BODY [K=V ...]  proxy_send_local_response (grpc -1)
 *   local_response_grpc STATUS GRPC DETAILS BODY
 *   effective_context ID|self|root  proxy_set_effective_context
 *   done                          proxy_done
 *   tick MS                       proxy_set_tick_period_milliseconds
 *   shared_get K                  proxy_get_shared_data -> "value" cas=N
 *                                 (the cas is kept as `last`)
 *   shared_set K V CAS            proxy_set_shared_data; CAS may be `last`
 *   shared_delete K CAS           proxy_set_shared_data with a NULL value
 *   queue_register NAME           the id is kept as `last`
 *   queue_resolve VM NAME         VM "" is the own vm_id; id kept as `last`
 *   queue_id                      -> the kept id: "id=N"
 *   queue_enqueue ID V, queue_dequeue ID   ID may be `last`
 *   metric_define TYPE NAME       TYPE counter|gauge|histogram|N -> id=N;
 *                                 the id is kept as `last`, the one
 *                                 before as `prev`
 *   metric_increment ID N, metric_record ID N   ID may be last or prev
 *   metric_get ID                 proxy_get_metric (status only)
 *   metric_value ID               proxy_get_metric -> the value (signed)
 *   http_call UPSTREAM [timeout=MS] [body=TEXT] [trailer=K:V] [K=V ...]
 *                                 pw_http_call with headers K=V (none given:
 *                                 :method GET, :path /, :authority pwasm.test),
 *                                 with trailer=: pw_http_call_with_trailers,
 *                                 timeout default 1000 -> "token=N"; the token
 *                                 is kept as `last`, the one before as `prev`
 *   grpc_call UPSTREAM [service=S] [method=M] [msg=TEXT] [timeout=MS] [K=V ...]
 *                                 pw_grpc_call (defaults svc, m, "", 1000;
 *                                 K=V initial metadata) -> "token=N", kept
 *   grpc_stream UPSTREAM [service=S] [method=M] [K=V ...]   pw_grpc_stream
 *   grpc_send ID MSG [eos], grpc_cancel ID, grpc_close ID   (the SDK's
 *                                 wrappers, which remember the calling context
 *                                 for the answer's dispatch) ID: a number,
 *                                 last, prev, or cur (the answer's token)
 *   get_status                    proxy_get_status -> code=N "message"
 *   foreign NAME ARGS             call_foreign_function -> "N bytes"
 *   zlib_roundtrip TEXT           compress, then uncompress -> "N bytes
 *                                 compressed, back: TEXT"
 *   filter_state PATH VALUE       set_envoy_filter_state{path, value}
 *   clear_route_cache             the 0.1.0 route cache
 *   badptr_log, badptr_get_header MAP, badptr_out MAP KEY
 *                                 pointers outside memory (InvalidMemoryAccess)
 *   wasi_write FD TEXT            fd_write -> "nwritten=N"
 *   wasi_clock ID                 clock_time_get -> "nonzero" or "zero"
 *   wasi_random N                 random_get -> "N bytes"
 *   wasi_environ / wasi_args      environ_sizes_get / args_sizes_get -> "count=N"
 *   wasi_open PATH, wasi_read FD, wasi_prestat FD, wasi_yield
 *                                 path_open (dir fd 3), fd_read, fd_prestat_get,
 *                                 sched_yield: the sandbox's answers
 *   emscripten_growth             env.emscripten_notify_memory_growth(0)
 *   pthread_equal A B             env.pthread_equal -> its result
 *   wasi_exit CODE                proc_exit (ends the VM)
 *   trap                          unreachable
 *
 * An unknown command logs "PHASE OP -> unknown command" at ERROR.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

#include "proxy_wasm.h"

enum phase {
    VM_START,
    CONFIGURE,
    CREATE,
    REQUEST_HEADERS,
    REQUEST_BODY,
    REQUEST_TRAILERS,
    RESPONSE_HEADERS,
    RESPONSE_BODY,
    RESPONSE_TRAILERS,
    LOG,
    DONE,
    DELETE,
    TICK,
    QUEUE_READY,
    HTTP_RESPONSE,
    GRPC_INITIAL,
    GRPC_MESSAGE,
    GRPC_TRAILING,
    GRPC_CLOSE,
    NEW_CONNECTION,
    DOWNSTREAM_DATA,
    UPSTREAM_DATA,
    DOWNSTREAM_CLOSE,
    UPSTREAM_CLOSE,
    NPHASES
};
static const char *const phase_names[NPHASES] = {"vm_start",
                                                 "configure",
                                                 "create",
                                                 "request_headers",
                                                 "request_body",
                                                 "request_trailers",
                                                 "response_headers",
                                                 "response_body",
                                                 "response_trailers",
                                                 "log",
                                                 "done",
                                                 "delete",
                                                 "tick",
                                                 "queue_ready",
                                                 "http_response",
                                                 "grpc_initial",
                                                 "grpc_message",
                                                 "grpc_trailing",
                                                 "grpc_close",
                                                 "new_connection",
                                                 "downstream_data",
                                                 "upstream_data",
                                                 "downstream_close",
                                                 "upstream_close"};

#define MAX_ARGS 12

typedef struct cmd {
    uint32_t root; /* the root context whose configuration has it; 0: all */
    int phase;
    int when; /* 0 always, 1 only eos, 2 only not eos */
    int argc;
    char *argv[MAX_ARGS]; /* argv[0] is the operation */
    size_t len[MAX_ARGS];
} cmd;

static cmd *cmds;
static size_t ncmds;

/* The callback in progress. */
static int cur_phase;
static uint32_t cur_ctx, cur_size, cur_eos;
static uint32_t result;

/* What `last` / `prev` stand for in later commands. */
static uint32_t last_cas, last_queue, last_metric, prev_metric;
/* Tokens of the calls made (`last`, `prev`) and of the answer being
 * delivered (`cur`); the callout callback's arguments. */
static uint32_t last_token, prev_token, cur_token;
static char cur_args[96];

/* ------------------------------------------------------------- parsing */

static int hexval(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Next token of s (advanced); unquoted and unescaped into a fresh buffer. */
static int next_token(const char **s, const char *end, char **out, size_t *len) {
    const char *p = *s;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p == end)
        return 0;
    char *o = malloc((size_t)(end - p) + 1);
    size_t n = 0;
    if (*p == '"') {
        for (p++; p < end && *p != '"'; p++) {
            if (*p != '\\' || p + 1 == end) {
                o[n++] = *p;
                continue;
            }
            char c = *++p;
            if (c == 'n')
                o[n++] = '\n';
            else if (c == 't')
                o[n++] = '\t';
            else if (c == 'r')
                o[n++] = '\r';
            else if (c == '0')
                o[n++] = '\0';
            else if (c == 'x' && p + 2 < end && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
                o[n++] = (char)(hexval(p[1]) << 4 | hexval(p[2]));
                p += 2;
            } else
                o[n++] = c;
        }
        if (p < end)
            p++; /* closing quote */
    } else {
        while (p < end && *p != ' ' && *p != '\t')
            o[n++] = *p++;
    }
    o[n] = 0;
    *out = o;
    *len = n;
    *s = p;
    return 1;
}

/* The root context whose plugin configuration is being read (0 while the
 * VM configuration is). */
static uint32_t parsing_root;

static void parse_line(const char *p, const char *end) {
    char *tok;
    size_t len;
    if (!next_token(&p, end, &tok, &len))
        return;
    cmd c = {0};
    c.root = parsing_root;
    char *at = strchr(tok, '@');
    if (at) {
        *at++ = 0;
        c.when = !strcmp(at, "eos") ? 1 : !strcmp(at, "more") ? 2 : 3;
    }
    c.phase = -1;
    for (int i = 0; i < NPHASES; i++)
        if (!strcmp(tok, phase_names[i]))
            c.phase = i;
    if (c.phase < 0 || c.when == 3) {
        pw_logf(PROXY_LOG_ERROR, "probe: unknown phase \"%s\"", tok);
        free(tok);
        return;
    }
    free(tok);
    while (c.argc < MAX_ARGS && next_token(&p, end, &c.argv[c.argc], &c.len[c.argc]))
        c.argc++;
    if (!c.argc)
        return;
    cmds = realloc(cmds, (ncmds + 1) * sizeof *cmds);
    cmds[ncmds++] = c;
}

static void parse_script(const char *s, size_t len) {
    const char *end = s + len, *line = s;
    int quoted = 0;
    for (const char *p = s; p <= end; p++) {
        if (p < end && *p == '"' && (p == s || p[-1] != '\\'))
            quoted = !quoted;
        if (p == end || *p == '\n' || (*p == ';' && !quoted)) {
            parse_line(line, p);
            line = p + 1;
        }
    }
}

/* -------------------------------------------------------------- values */

static uint32_t num(const char *s) {
    if (!strcmp(s, "max"))
        return 0xFFFFFFFFu;
    return (uint32_t)strtoul(s, NULL, 0);
}

static uint32_t named(const char *s, const char *const *names, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return i;
    return num(s);
}

/* A number, or `last` / `prev` (the values kept above). */
static uint32_t kept(const char *s, uint32_t last, uint32_t prev) {
    if (!strcmp(s, "last"))
        return last;
    if (!strcmp(s, "prev"))
        return prev;
    return num(s);
}

static proxy_map_type_t map_arg(const char *s) {
    static const char *const n[] = {"request_headers",
                                    "request_trailers",
                                    "response_headers",
                                    "response_trailers",
                                    "grpc_initial_metadata",
                                    "grpc_trailing_metadata",
                                    "http_call_response_headers",
                                    "http_call_response_trailers"};
    return (proxy_map_type_t)named(s, n, 8);
}

/* A call's token: a number, `last`, `prev` (the calls made) or `cur` (the
 * answer being delivered). */
static uint32_t token_arg(const char *s) {
    return !strcmp(s, "cur") ? cur_token : kept(s, last_token, prev_token);
}

/* Arguments after the first of a callout command: NAME=VALUE options from
 * `opts` into vals (NULL when absent), the rest K=V pairs (headers or
 * metadata). Returns the number of pairs. */
static int callout_args(int argc, char *const *argv, const char *const *opts, char **vals,
                        char **pairs) {
    int n = 0;
    for (int i = 0; i < argc; i++) {
        int o = -1;
        for (int k = 0; opts[k] && o < 0; k++) {
            size_t l = strlen(opts[k]);
            if (!strncmp(argv[i], opts[k], l) && argv[i][l] == '=')
                o = k;
        }
        if (o >= 0)
            vals[o] = argv[i] + strlen(opts[o]) + 1;
        else
            pairs[n++] = argv[i];
    }
    return n;
}

static proxy_buffer_type_t buffer_arg(const char *s) {
    static const char *const n[] = {
        "request_body",     "response_body",           "downstream_data",
        "upstream_data",    "http_call_response_body", "grpc_receive_buffer",
        "vm_configuration", "plugin_configuration"};
    return (proxy_buffer_type_t)named(s, n, 8);
}

static proxy_stream_type_t stream_arg(const char *s) {
    static const char *const n[] = {"request", "response", "downstream", "upstream"};
    return (proxy_stream_type_t)named(s, n, 4);
}

static const char *status_name(uint32_t st) {
    static const char *const n[] = {
        "Ok",           "NotFound",       "BadArgument",         "SerializationFailure",
        "ParseFailure", "BadExpression",  "InvalidMemoryAccess", "Empty",
        "CasMismatch",  "ResultMismatch", "InternalFailure",     "BrokenConnection",
        "Unimplemented"};
    return st < 13 ? n[st] : "?";
}

/* The value part of a result line. */
static char value[4096];
static size_t vlen;

static void vput(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void vput(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = pw_vsnprintf(value + vlen, sizeof value - vlen, fmt, ap);
    va_end(ap);
    vlen += (size_t)n;
    if (vlen >= sizeof value)
        vlen = sizeof value - 1;
}

static void vquote(const char *s, size_t n) {
    vput("\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            vput("\\%c", c);
        else if (c == '\n')
            vput("\\n");
        else if (c == '\t')
            vput("\\t");
        else if (c == '\r')
            vput("\\r");
        else if (c < 0x20 || c >= 0x7f)
            vput("\\x%02x", c);
        else
            vput("%c", c);
    }
    vput("\"");
}

/* A returned value: quote it and free it. */
static void vtake(char *data, size_t n) {
    vquote(data ? data : "", n);
    free(data);
}

/* "a.b.c" -> "a\0b\0c" (same length). */
static char *path_arg(const char *s, size_t *len) {
    *len = strlen(s);
    char *p = malloc(*len + 1);
    for (size_t i = 0; i <= *len; i++)
        p[i] = s[i] == '.' ? '\0' : s[i];
    return p;
}

/* K=V arguments into a serialized map. */
static proxy_status_t pairs_arg(int argc, char **argv, char **data, size_t *size) {
    pw_pair_t *pairs = calloc((size_t)argc + 1, sizeof *pairs);
    for (int i = 0; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        pairs[i].key = argv[i];
        pairs[i].key_len = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        pairs[i].value = eq ? eq + 1 : "";
        pairs[i].value_len = eq ? strlen(eq + 1) : 0;
    }
    proxy_status_t st = pw_pairs_serialize(pairs, (size_t)argc, data, size);
    free(pairs);
    return st;
}

#define BAD_PTR 0xFFFFFF00u

/* Emscripten's imports, which every host provides (docs/ABI.md §1.4). */
__attribute__((import_module("env"), import_name("emscripten_notify_memory_growth"))) void
emscripten_notify_memory_growth(uint32_t index);
__attribute__((import_module("env"), import_name("pthread_equal"))) uint32_t
pthread_equal_import(uint32_t a, uint32_t b);

static void token_made(uint32_t token) {
    prev_token = last_token;
    last_token = token;
    vput("token=%u", token);
}

/* ----------------------------------------------------------- commands */

static int need(const cmd *c, int n) {
    if (c->argc - 1 >= n)
        return 1;
    pw_logf(PROXY_LOG_ERROR, "%s %s -> needs %d arguments", phase_names[c->phase], c->argv[0], n);
    return 0;
}

static void run(const cmd *c) {
    const char *op = c->argv[0];
    char *const *a = c->argv + 1;
    char *data = NULL, *map = NULL;
    size_t size = 0, msize = 0;
    uint32_t u = 0;
    uint64_t u64 = 0;
    long long st = -1; /* proxy status; WASI results use wasi_errno */
    long long wasi_errno = -1;
    vlen = 0;
    value[0] = 0;
#define OP(name, n) (!strcmp(op, name) && need(c, n))
    if (!strcmp(op, "return")) {
        if (!need(c, 1))
            return;
        result = !strcmp(a[0], "continue")                         ? 0
                 : !strcmp(a[0], "pause") || !strcmp(a[0], "fail") ? 1
                                                                   : num(a[0]);
        return;
    } else if (!strcmp(op, "args")) {
        st = 0;
        if (cur_phase == QUEUE_READY)
            vput("queue=%u", cur_size);
        else if (cur_phase == DOWNSTREAM_CLOSE || cur_phase == UPSTREAM_CLOSE)
            vput("peer=%u", cur_size);
        else if (cur_phase >= HTTP_RESPONSE && cur_phase <= GRPC_CLOSE)
            vput("%s", cur_args);
        else
            vput("size=%u eos=%u", cur_size, cur_eos);
    } else if (!strcmp(op, "context")) {
        st = 0;
        vput("ctx=%u root=%u", cur_ctx, pw_get_root_id(cur_ctx));
    } else if (OP("log", 2)) {
        static const char *const lv[] = {"trace", "debug", "info", "warn", "error", "critical"};
        st = proxy_log((proxy_log_level_t)named(a[0], lv, 6), a[1], c->len[2]);
    } else if (!strcmp(op, "log_level")) {
        st = proxy_get_log_level(&u);
        vput("%u", u);
    } else if (!strcmp(op, "time")) {
        st = proxy_get_current_time_nanoseconds(&u64);
        vput("%llu", (unsigned long long)u64);
    } else if (OP("get_buffer", 3)) {
        st = proxy_get_buffer_bytes(buffer_arg(a[0]), num(a[1]), num(a[2]), &data, &size);
        if (st == PROXY_RESULT_OK)
            vtake(data, size);
    } else if (OP("buffer_status", 1)) {
        st = proxy_get_buffer_status(buffer_arg(a[0]), &size, &u);
        if (st == PROXY_RESULT_OK)
            vput("size=%zu flags=%u", size, u);
    } else if (OP("set_buffer", 4)) {
        st = proxy_set_buffer_bytes(buffer_arg(a[0]), num(a[1]), num(a[2]), a[3], c->len[4]);
    } else if (!strcmp(op, "get_configuration")) {
        st = proxy_get_configuration(&data, &size);
        if (st == PROXY_RESULT_OK)
            vtake(data, size);
    } else if (OP("get_header", 2)) {
        st = proxy_get_header_map_value(map_arg(a[0]), a[1], c->len[2], &data, &size);
        if (st == PROXY_RESULT_OK)
            vtake(data, size);
    } else if (OP("add_header", 3)) {
        st = proxy_add_header_map_value(map_arg(a[0]), a[1], c->len[2], a[2], c->len[3]);
    } else if (OP("replace_header", 3)) {
        st = proxy_replace_header_map_value(map_arg(a[0]), a[1], c->len[2], a[2], c->len[3]);
    } else if (OP("remove_header", 2)) {
        st = proxy_remove_header_map_value(map_arg(a[0]), a[1], c->len[2]);
    } else if (OP("get_pairs", 1)) {
        st = proxy_get_header_map_pairs(map_arg(a[0]), &data, &size);
        pw_pair_t *pairs = NULL;
        size_t n = 0;
        if (st == PROXY_RESULT_OK && pw_pairs_parse(data, size, &pairs, &n) == PROXY_RESULT_OK) {
            vput("%zu:", n);
            for (size_t i = 0; i < n; i++)
                vput("%s %.*s=%.*s", i ? "," : "", (int)pairs[i].key_len, pairs[i].key,
                     (int)pairs[i].value_len, pairs[i].value);
        } else if (st == PROXY_RESULT_OK) {
            vput("malformed (%zu bytes)", size);
        }
        free(pairs);
        free(data);
    } else if (OP("set_pairs", 1)) {
        st = pairs_arg(c->argc - 2, (char **)a + 1, &map, &msize);
        if (st == PROXY_RESULT_OK)
            st = proxy_set_header_map_pairs(map_arg(a[0]), map, msize);
    } else if (OP("set_pairs_raw", 2)) {
        st = proxy_set_header_map_pairs(map_arg(a[0]), a[1], c->len[2]);
    } else if (OP("map_size", 1)) {
        st = proxy_get_header_map_size(map_arg(a[0]), &size);
        if (st == PROXY_RESULT_OK)
            vput("%zu", size);
    } else if (OP("get_property", 1) || OP("get_property_int", 1) || OP("get_property_raw", 1)) {
        size_t plen = c->len[1];
        char *path = !strcmp(op, "get_property_raw") ? NULL : path_arg(a[0], &plen);
        st = proxy_get_property(path ? path : a[0], plen, &data, &size);
        free(path);
        if (st == PROXY_RESULT_OK && !strcmp(op, "get_property_int")) {
            int64_t v = 0;
            if (size == 8)
                memcpy(&v, data, 8);
            if (size == 8)
                vput("%lld", (long long)v);
            else
                vput("size %zu", size);
            free(data);
        } else if (st == PROXY_RESULT_OK) {
            vtake(data, size);
        }
    } else if (OP("set_property", 2)) {
        size_t plen;
        char *path = path_arg(a[0], &plen);
        st = proxy_set_property(path, plen, a[1], c->len[2]);
        free(path);
    } else if (OP("continue", 1)) {
        st = proxy_continue_stream(stream_arg(a[0]));
    } else if (OP("close", 1)) {
        st = proxy_close_stream(stream_arg(a[0]));
    } else if (!strcmp(op, "continue_request")) {
        st = proxy_continue_request();
    } else if (!strcmp(op, "continue_response")) {
        st = proxy_continue_response();
    } else if (OP("local_response", 2)) {
        st = pairs_arg(c->argc - 3, (char **)a + 2, &map, &msize);
        if (st == PROXY_RESULT_OK)
            st = proxy_send_local_response(num(a[0]), NULL, 0, a[1], c->len[2], map, msize,
                                           PROXY_GRPC_STATUS_NONE);
    } else if (OP("local_response_grpc", 4)) {
        st = proxy_send_local_response(num(a[0]), a[2], c->len[3], a[3], c->len[4], NULL, 0,
                                       (int32_t)strtol(a[1], NULL, 0));
    } else if (OP("effective_context", 1)) {
        uint32_t id = !strcmp(a[0], "self")   ? cur_ctx
                      : !strcmp(a[0], "root") ? pw_get_root_id(cur_ctx)
                                              : num(a[0]);
        st = proxy_set_effective_context(id);
    } else if (!strcmp(op, "done")) {
        st = proxy_done();
    } else if (OP("tick", 1)) {
        st = proxy_set_tick_period_milliseconds(num(a[0]));
    } else if (OP("shared_get", 1)) {
        st = proxy_get_shared_data(a[0], c->len[1], &data, &size, &u);
        if (st == PROXY_RESULT_OK) {
            vtake(data, size);
            vput(" cas=%u", u);
            last_cas = u;
        }
    } else if (OP("shared_set", 3)) {
        /* A value of "" is empty, not NULL (that would delete). */
        st = proxy_set_shared_data(a[0], c->len[1], a[1], c->len[2], kept(a[2], last_cas, 0));
    } else if (OP("shared_delete", 2)) {
        st = proxy_set_shared_data(a[0], c->len[1], NULL, 0, kept(a[1], last_cas, 0));
    } else if (OP("queue_register", 1)) {
        st = proxy_register_shared_queue(a[0], c->len[1], &u);
        if (st == PROXY_RESULT_OK)
            last_queue = u;
    } else if (OP("queue_resolve", 2)) {
        st = proxy_resolve_shared_queue(a[0], c->len[1], a[1], c->len[2], &u);
        if (st == PROXY_RESULT_OK)
            last_queue = u;
    } else if (!strcmp(op, "queue_id")) {
        st = 0;
        vput("id=%u", last_queue);
    } else if (OP("queue_enqueue", 2)) {
        st = proxy_enqueue_shared_queue(kept(a[0], last_queue, 0), a[1], c->len[2]);
    } else if (OP("queue_dequeue", 1)) {
        st = proxy_dequeue_shared_queue(kept(a[0], last_queue, 0), &data, &size);
        if (st == PROXY_RESULT_OK)
            vtake(data, size);
    } else if (OP("metric_define", 2)) {
        static const char *const types[] = {"counter", "gauge", "histogram"};
        st = proxy_define_metric((proxy_metric_type_t)named(a[0], types, 3), a[1], c->len[2], &u);
        if (st == PROXY_RESULT_OK) {
            prev_metric = last_metric;
            vput("id=%u", last_metric = u);
        }
    } else if (OP("metric_increment", 2)) {
        st = proxy_increment_metric(kept(a[0], last_metric, prev_metric), strtoll(a[1], NULL, 0));
    } else if (OP("metric_record", 2)) {
        st = proxy_record_metric(kept(a[0], last_metric, prev_metric), strtoull(a[1], NULL, 0));
    } else if (OP("metric_get", 1)) {
        st = proxy_get_metric(kept(a[0], last_metric, prev_metric), &u64);
    } else if (OP("metric_value", 1)) {
        st = proxy_get_metric(kept(a[0], last_metric, prev_metric), &u64);
        if (st == PROXY_RESULT_OK)
            vput("%lld", (long long)u64);
    } else if (OP("http_call", 1) || OP("grpc_call", 1) || OP("grpc_stream", 1)) {
        /* Through the SDK's wrappers, which remember the calling context
         * so that the answer reaches it. */
        static const char *const opts[] = {"timeout", "body",    "service", "method",
                                           "msg",     "trailer", NULL};
        char *vals[6] = {0}, *kv[MAX_ARGS];
        int np = callout_args(c->argc - 2, a + 1, opts, vals, kv);
        pw_pair_t pairs[MAX_ARGS];
        for (int i = 0; i < np; i++) {
            char *eq = strchr(kv[i], '=');
            pairs[i].key = kv[i];
            pairs[i].key_len = eq ? (size_t)(eq - kv[i]) : strlen(kv[i]);
            pairs[i].value = eq ? eq + 1 : "";
            pairs[i].value_len = eq ? strlen(eq + 1) : 0;
        }
        if (!strcmp(op, "http_call") && !np) {
            pairs[0] = pw_pair(":method", "GET");
            pairs[1] = pw_pair(":path", "/");
            pairs[2] = pw_pair(":authority", "pwasm.test");
            np = 3;
        }
        uint32_t timeout = vals[0] ? num(vals[0]) : 1000;
        const char *svc = vals[2] ? vals[2] : "svc", *meth = vals[3] ? vals[3] : "m";
        const char *msg = vals[4] ? vals[4] : "", *body = vals[1] ? vals[1] : "";
        char *colon = vals[5] ? strchr(vals[5], ':') : NULL;
        if (!strcmp(op, "http_call") && colon) {
            pw_pair_t t = {vals[5], (size_t)(colon - vals[5]), colon + 1, strlen(colon + 1)};
            st = pw_http_call_with_trailers(a[0], pairs, (size_t)np, body, strlen(body), &t, 1,
                                            timeout, &u);
        } else if (!strcmp(op, "http_call"))
            st = pw_http_call(a[0], pairs, (size_t)np, body, strlen(body), timeout, &u);
        else if (!strcmp(op, "grpc_call"))
            st = pw_grpc_call(a[0], svc, meth, pairs, (size_t)np, msg, strlen(msg), timeout, &u);
        else
            st = pw_grpc_stream(a[0], svc, meth, pairs, (size_t)np, &u);
        if (st == PROXY_RESULT_OK)
            token_made(u);
    } else if (OP("grpc_send", 2)) {
        int eos = c->argc > 3 && !strcmp(a[2], "eos");
        st = pw_grpc_send(token_arg(a[0]), a[1], c->len[2], eos);
    } else if (OP("grpc_cancel", 1)) {
        st = pw_grpc_cancel(token_arg(a[0]));
    } else if (OP("grpc_close", 1)) {
        st = pw_grpc_close(token_arg(a[0]));
    } else if (!strcmp(op, "get_status")) {
        st = proxy_get_status(&u, &data, &size);
        if (st == PROXY_RESULT_OK) {
            vput("code=%u ", u);
            vtake(data, size);
        } else {
            free(data);
        }
    } else if (OP("foreign", 2)) {
        st = proxy_call_foreign_function(a[0], c->len[1], a[1], c->len[2], &data, &size);
        if (st == PROXY_RESULT_OK)
            vput("%zu bytes", size);
        free(data);
    } else if (OP("zlib_roundtrip", 1)) {
        /* compress then uncompress: the text back, and the compressed size */
        char *z = NULL;
        size_t zn = 0;
        st = proxy_call_foreign_function("compress", 8, a[0], c->len[1], &z, &zn);
        if (st == PROXY_RESULT_OK) {
            vput("%zu bytes compressed, back: ", zn);
            st = proxy_call_foreign_function("uncompress", 10, z, zn, &data, &size);
            if (st == PROXY_RESULT_OK)
                vtake(data, size);
        }
        free(z);
    } else if (OP("filter_state", 2)) {
        /* set_envoy_filter_state with SetEnvoyFilterStateArguments{path,
         * value} encoded by hand (fields 1 and 2, strings < 128 bytes) */
        char pb[512];
        size_t n = 0, lp = c->len[1] & 127, lv = c->len[2] & 127;
        pb[n++] = 0x0a;
        pb[n++] = (char)lp;
        memcpy(pb + n, a[0], lp);
        n += lp;
        pb[n++] = 0x12;
        pb[n++] = (char)lv;
        memcpy(pb + n, a[1], lv);
        n += lv;
        st = proxy_call_foreign_function("set_envoy_filter_state", 22, pb, n, &data, &size);
        free(data);
    } else if (!strcmp(op, "clear_route_cache")) {
        st = proxy_clear_route_cache();
    } else if (!strcmp(op, "badptr_log")) {
        st = proxy_log(PROXY_LOG_INFO, (const char *)(uintptr_t)BAD_PTR, 512);
    } else if (OP("badptr_get_header", 1)) {
        st = proxy_get_header_map_value(map_arg(a[0]), (const char *)(uintptr_t)BAD_PTR, 512,
                                        &data, &size);
    } else if (OP("badptr_out", 2)) {
        st = proxy_get_header_map_value(map_arg(a[0]), a[1], c->len[2],
                                        (char **)(uintptr_t)0xFFFFFFF0u,
                                        (size_t *)(uintptr_t)0xFFFFFFF8u);
    } else if (OP("wasi_write", 2)) {
        __wasi_ciovec_t iov = {(const uint8_t *)a[1], c->len[2]};
        __wasi_size_t n = 0;
        wasi_errno = __wasi_fd_write(num(a[0]), &iov, 1, &n);
        if (!wasi_errno)
            vput("nwritten=%lu", (unsigned long)n);
    } else if (OP("wasi_clock", 1)) {
        __wasi_timestamp_t t = 0;
        wasi_errno = __wasi_clock_time_get(num(a[0]), 1, &t);
        if (!wasi_errno)
            vput("%s", t ? "nonzero" : "zero");
    } else if (OP("wasi_random", 1)) {
        uint32_t n = num(a[0]);
        uint8_t *b = malloc(n + 1);
        wasi_errno = __wasi_random_get(b, n);
        free(b);
        if (!wasi_errno)
            vput("%u bytes", n);
    } else if (!strcmp(op, "wasi_environ") || !strcmp(op, "wasi_args")) {
        __wasi_size_t count = 0, bytes = 0;
        wasi_errno = !strcmp(op, "wasi_args") ? __wasi_args_sizes_get(&count, &bytes)
                                              : __wasi_environ_sizes_get(&count, &bytes);
        if (!wasi_errno)
            vput("count=%lu", (unsigned long)count);
    } else if (OP("wasi_open", 1)) {
        __wasi_fd_t fd = 0;
        wasi_errno = __wasi_path_open(3, 0, a[0], 0, 0, 0, 0, &fd);
    } else if (OP("wasi_read", 1)) {
        char b[16];
        __wasi_iovec_t iov = {(uint8_t *)b, sizeof b};
        __wasi_size_t n = 0;
        wasi_errno = __wasi_fd_read(num(a[0]), &iov, 1, &n);
    } else if (OP("wasi_prestat", 1)) {
        __wasi_prestat_t ps;
        wasi_errno = __wasi_fd_prestat_get(num(a[0]), &ps);
    } else if (!strcmp(op, "wasi_yield")) {
        wasi_errno = __wasi_sched_yield();
    } else if (!strcmp(op, "emscripten_growth")) {
        emscripten_notify_memory_growth(0);
        st = 0;
    } else if (OP("pthread_equal", 2)) {
        st = 0;
        vput("%d", pthread_equal_import(num(a[0]), num(a[1])));
    } else if (OP("wasi_exit", 1)) {
        __wasi_proc_exit(num(a[0]));
    } else if (!strcmp(op, "trap")) {
        __builtin_trap();
    } else {
        pw_logf(PROXY_LOG_ERROR, "%s %s -> unknown command", phase_names[c->phase], op);
        return;
    }
#undef OP
    free(map);
    if (st < 0 && wasi_errno < 0)
        return; /* missing arguments, logged by need() */
    if (wasi_errno >= 0)
        pw_logf(PROXY_LOG_INFO, "%s %s -> errno=%lld%s%s", phase_names[c->phase], op, wasi_errno,
                vlen ? " " : "", value);
    else
        pw_logf(PROXY_LOG_INFO, "%s %s -> %s%s%s", phase_names[c->phase], op,
                status_name((uint32_t)st), vlen ? " " : "", value);
}

/* Runs the commands of a phase; returns what the callback returns. */
static uint32_t phase(int ph, uint32_t ctx, uint32_t size, uint32_t eos) {
    cur_phase = ph;
    cur_ctx = ctx;
    cur_size = size;
    cur_eos = eos;
    result = 0;
    for (size_t i = 0; i < ncmds; i++) {
        const cmd *c = &cmds[i];
        if (c->phase != ph || (c->when == 1 && !eos) || (c->when == 2 && eos))
            continue;
        if (c->root && c->root != pw_get_root_id(ctx))
            continue; /* another plugin's on this VM */
        run(c);
    }
    return result;
}

/* ---------------------------------------------------------- callbacks */

static int on_vm_start(uint32_t root, size_t size) {
    char *script = NULL;
    size_t len = 0;
    if (pw_get_vm_config(&script, &len) == PROXY_RESULT_OK && script)
        parse_script(script, len);
    free(script);
    return phase(VM_START, root, (uint32_t)size, 0) == 0;
}

static int on_configure(uint32_t root, size_t size) {
    char *script = NULL;
    size_t len = 0;
    parsing_root = root;
    if (pw_get_plugin_config(&script, &len) == PROXY_RESULT_OK && script)
        parse_script(script, len);
    parsing_root = 0;
    free(script);
    return phase(CONFIGURE, root, (uint32_t)size, 0) == 0;
}

static void on_context_create(uint32_t ctx, uint32_t root) {
    (void)root;
    phase(CREATE, ctx, 0, 0);
}

#define STREAM_CB(name, PH)                                                                       \
    static proxy_action_t name(uint32_t ctx, size_t n, int eos) {                                 \
        return (proxy_action_t)phase(PH, ctx, (uint32_t)n, (uint32_t)eos);                        \
    }
STREAM_CB(on_request_headers, REQUEST_HEADERS)
STREAM_CB(on_request_body, REQUEST_BODY)
STREAM_CB(on_response_headers, RESPONSE_HEADERS)
STREAM_CB(on_response_body, RESPONSE_BODY)

static proxy_action_t on_request_trailers(uint32_t ctx, size_t n) {
    return (proxy_action_t)phase(REQUEST_TRAILERS, ctx, (uint32_t)n, 0);
}

static proxy_action_t on_response_trailers(uint32_t ctx, size_t n) {
    return (proxy_action_t)phase(RESPONSE_TRAILERS, ctx, (uint32_t)n, 0);
}

static proxy_action_t on_new_connection(uint32_t ctx) {
    return (proxy_action_t)phase(NEW_CONNECTION, ctx, 0, 0);
}

STREAM_CB(on_downstream_data, DOWNSTREAM_DATA)
STREAM_CB(on_upstream_data, UPSTREAM_DATA)

static void on_downstream_close(uint32_t ctx, proxy_peer_type_t peer) {
    phase(DOWNSTREAM_CLOSE, ctx, (uint32_t)peer, 0);
}

static void on_upstream_close(uint32_t ctx, proxy_peer_type_t peer) {
    phase(UPSTREAM_CLOSE, ctx, (uint32_t)peer, 0);
}

static void on_log(uint32_t ctx) {
    phase(LOG, ctx, 0, 0);
}

static int on_done(uint32_t ctx) {
    phase(DONE, ctx, 0, 0);
    return 1;
}

static void on_delete(uint32_t ctx) {
    phase(DELETE, ctx, 0, 0);
}

static void on_tick(uint32_t root) {
    phase(TICK, root, 0, 0);
}

static void on_queue_ready(uint32_t root, uint32_t queue_id) {
    phase(QUEUE_READY, root, queue_id, 0);
}

/* Answers of callouts; ctx is the context that made the call. */
static void answer(int ph, uint32_t ctx, uint32_t token, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void answer(int ph, uint32_t ctx, uint32_t token, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cur_token = token;
    pw_vsnprintf(cur_args, sizeof cur_args, fmt, ap);
    va_end(ap);
    phase(ph, ctx, 0, 0);
}

static void on_http_call_response(uint32_t ctx, uint32_t token, size_t nheaders,
                                  size_t body_size, size_t ntrailers) {
    answer(HTTP_RESPONSE, ctx, token, "token=%u headers=%zu body=%zu trailers=%zu", token,
           nheaders, body_size, ntrailers);
}

static void on_grpc_initial_metadata(uint32_t ctx, uint32_t token, size_t n) {
    answer(GRPC_INITIAL, ctx, token, "token=%u headers=%zu", token, n);
}

static void on_grpc_receive(uint32_t ctx, uint32_t token, size_t size) {
    answer(GRPC_MESSAGE, ctx, token, "token=%u size=%zu", token, size);
}

static void on_grpc_trailing_metadata(uint32_t ctx, uint32_t token, size_t n) {
    answer(GRPC_TRAILING, ctx, token, "token=%u trailers=%zu", token, n);
}

static void on_grpc_close(uint32_t ctx, uint32_t token, uint32_t status) {
    answer(GRPC_CLOSE, ctx, token, "token=%u status=%u", token, status);
}

const pw_plugin_t pw_plugin = {
    .on_vm_start = on_vm_start,
    .on_configure = on_configure,
    .on_tick = on_tick,
    .on_queue_ready = on_queue_ready,
    .on_context_create = on_context_create,
    .on_request_headers = on_request_headers,
    .on_request_body = on_request_body,
    .on_request_trailers = on_request_trailers,
    .on_response_headers = on_response_headers,
    .on_response_body = on_response_body,
    .on_response_trailers = on_response_trailers,
    .on_new_connection = on_new_connection,
    .on_downstream_data = on_downstream_data,
    .on_upstream_data = on_upstream_data,
    .on_downstream_close = on_downstream_close,
    .on_upstream_close = on_upstream_close,
    .on_log = on_log,
    .on_done = on_done,
    .on_delete = on_delete,
    .on_http_call_response = on_http_call_response,
    .on_grpc_initial_metadata = on_grpc_initial_metadata,
    .on_grpc_receive = on_grpc_receive,
    .on_grpc_trailing_metadata = on_grpc_trailing_metadata,
    .on_grpc_close = on_grpc_close,
};
