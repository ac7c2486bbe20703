/*
 * cli.h -- the pwasm command-line tool: shared declarations.
 *
 * Layout of cli/:
 *   pwasm.c    main, subcommand dispatch, usage texts
 *   util.c     byte buffers, arenas, files, escaping, regexes, line diffs
 *   yaml.c     libyaml documents with line:column errors, scalar helpers
 *   fixture.c  the exchange a plugin is run on (YAML -> struct fixture)
 *   host.c     pw_host_ops in memory, and the replay of one exchange
 *   trace.c    hostcalls rendered like strace, guest memory decoding
 *   plugin.c   loading a .wasm or a `pwasm compile` artifact, compiling
 *   inspect.c, run.c, test.c, bench.c: the subcommands
 *   report.c   JUnit XML and TAP reports of `pwasm test`
 */
#ifndef PWASM_CLI_H
#define PWASM_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <yaml.h>

#include "pwasm.h"

/* ------------------------------------------------------------ util.c */

/* A growable byte buffer; p is NUL-terminated after every operation. */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

void buf_put(buf *b, const void *data, size_t len);
void buf_puts(buf *b, const char *s);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_clear(buf *b);
void buf_free(buf *b);
/* Appends s[0..len) in C/JSON-like escaped form (no quotes): \n \t \r \\ \"
 * \xHH for other non-printable bytes; at most `max` input bytes (0: all),
 * then "...". */
void buf_escape(buf *b, const char *s, size_t len, size_t max);
/* As buf_escape, for text shown as it is (log lines): only control bytes
 * are escaped, \ and " are kept. */
void buf_escape_ctl(buf *b, const char *s, size_t len, size_t max);
/* Appends s as a JSON string with quotes. */
void buf_json_str(buf *b, const char *s, size_t len);

/* Bump allocator: many small strings freed at once. arena_reset keeps the
 * memory for reuse (bench runs one exchange after another). */
typedef struct arena {
    struct arena_block *head;
} arena;

void *arena_alloc(arena *a, size_t n);
pw_str arena_dup(arena *a, const char *s, size_t len);
char *arena_strdup(arena *a, const char *s);
void arena_reset(arena *a);
void arena_free(arena *a);

/* malloc that exits with a message when memory runs out. */
void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Whole file into a malloc'ed buffer (NUL-terminated, not counted).
 * Returns 0 or -1 (errno set). */
int read_file(const char *path, uint8_t **out, size_t *len);

/* "STR" or "@FILE" (a command-line value): the string itself or the
 * file's contents. Returns 0 or -1 with err. */
int read_arg_value(const char *arg, char **out, size_t *len, char *err, size_t errlen);

/* POSIX extended regex search of pattern in text[0..len). Returns 1 match,
 * 0 no match, -1 bad pattern (reason in err). Text may hold NUL bytes: they
 * are matched as if they were "\0" stand-ins (REG_STARTEND). */
int regex_find(const char *pattern, const char *text, size_t len, char *err, size_t errlen);

/* Appends a line diff of expected vs actual ("- " / "+ " / "  " lines,
 * each prefixed with indent) to out. */
void diff_lines(buf *out, const char *indent, const char *expected, size_t elen,
                const char *actual, size_t alen);

/* ns as "1234" or "1.2 µs"-like human text into buf (static storage per call
 * site is the caller's). */
const char *status_name(uint32_t st);  /* "Ok", "NotFound", ... or NULL */
const char *log_level_name(int level); /* "trace" ... "critical" */
int log_level_parse(const char *s);    /* -1 when unknown */
const char *action_name(pw_action a);  /* "continue", "pause", ... */
int action_parse(const char *s);       /* -1 when unknown */

/* ------------------------------------------------------------ yaml.c */

typedef struct ydoc {
    yaml_document_t doc;
    int loaded;
    char *path; /* as given */
    char *dir;  /* directory of path, for relative file names */
} ydoc;

/* Loads the first document of a YAML file. Errors: "FILE:LINE:COL: problem
 * (context)" in err. */
int ydoc_load(ydoc *d, const char *path, char *err, size_t errlen);
/* The same from len bytes in memory; path names them in errors and gives
 * the directory relative paths in the document resolve against. */
int ydoc_load_buffer(ydoc *d, const char *path, const void *buf, size_t len, char *err,
                     size_t errlen);
void ydoc_free(ydoc *d);
yaml_node_t *yroot(ydoc *d);
yaml_node_t *ynode(ydoc *d, int id);
/* Value of key in a mapping node, or NULL. */
yaml_node_t *ymap_get(ydoc *d, yaml_node_t *map, const char *key);
/* Scalar text (NUL-terminated by libyaml) and length; NULL if not a scalar. */
const char *yscalar(yaml_node_t *n, size_t *len);
/* 1 for a plain null scalar (~, null, Null, NULL, or empty). */
int ynull(yaml_node_t *n);
/* The node's tag when explicit ("!int", "tag:yaml.org,2002:int"), else NULL. */
const char *ytag(yaml_node_t *n);
/* Writes "FILE:LINE:COL: " + message into err; returns -1. */
int yerr(ydoc *d, yaml_node_t *n, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Checks every key of a mapping is one of the NULL-terminated list. */
int ycheck_keys(ydoc *d, yaml_node_t *map, const char *const *allowed, const char *what, char *err,
                size_t errlen);
/* Path relative to the document's directory (absolute paths as they are),
 * after ${VAR} / ${VAR:-default} expansion. Malloc'ed. */
char *ypath(ydoc *d, const char *p);
/* A configuration value: a scalar as its text, a mapping or sequence as
 * JSON. Malloc'ed into *out. */
int yconfig(ydoc *d, yaml_node_t *n, char **out, size_t *len, char *err, size_t errlen);
/* A scalar as bytes: its text, or with a tag !int / !uint (8 bytes LE),
 * !float (8 bytes LE IEEE-754), !bool (1 byte), !hex (hex digits) per
 * docs/ABI.md §6.3. Bytes live in the arena. */
int yvalue_bytes(ydoc *d, yaml_node_t *n, arena *a, pw_str *out, char *err, size_t errlen);
/* Unsigned integer scalar. */
int yuint(ydoc *d, yaml_node_t *n, uint64_t *out, char *err, size_t errlen);

/* --------------------------------------------------------- fixture.c */

/* An ordered list of header pairs; strings live in an arena. */
typedef struct hlist {
    pw_kv *kv;
    size_t n, cap;
} hlist;

void hlist_add(hlist *h, arena *a, pw_str k, pw_str v);
void hlist_copy(hlist *dst, arena *a, const hlist *src);
/* First value of k (case-insensitive) or NULL. */
const pw_str *hlist_get(const hlist *h, const char *k, size_t klen);
void hlist_free(hlist *h);

/* One mocked property: path with '.' between segments, raw value bytes. */
typedef struct prop {
    char *path;
    pw_str value;
} prop;

typedef struct props {
    prop *v;
    size_t n, cap;
} props;

void props_set(props *p, arena *a, const char *path, size_t plen, pw_str value);
const prop *props_get(const props *p, const char *path, size_t plen);

/* What one side (request or response) of the exchange carries. */
typedef struct side {
    int present; /* the fixture gave this side */
    hlist headers;
    pw_str *chunks; /* body chunks, in order */
    size_t nchunks;
    int has_trailers;
    hlist trailers;
} side;

/* One event of a TCP connection (`connection:`, docs/CLI.md
 * "Connections"), in the fixture's order. */
enum conn_kind {
    CONN_DOWNSTREAM,       /* the client sends `data` */
    CONN_UPSTREAM,         /* the server sends `data` */
    CONN_DOWNSTREAM_CLOSE, /* the client's side ends (peer) */
    CONN_UPSTREAM_CLOSE,   /* the server's side ends (peer) */
    CONN_ADVANCE           /* the clock moves on (advance_ms) */
};

typedef struct conn_event {
    enum conn_kind kind;
    pw_str data;         /* CONN_DOWNSTREAM / CONN_UPSTREAM */
    int peer;            /* closes: 2 remote (the peer closed), 1 local */
    uint64_t advance_ms; /* CONN_ADVANCE */
    size_t line;         /* in its file */
} conn_event;

/* A TCP connection replayed instead of an HTTP exchange. */
typedef struct connection {
    int present; /* the fixture gave `connection:` */
    conn_event *ev;
    size_t n;
} connection;

/* Plugin settings a fixture or test file may give (NULL/unset: default). */
typedef struct plugin_spec {
    char *path;
    char *name;
    char *config;
    size_t config_len;
    int has_config;
    char *vm_config;
    size_t vm_config_len;
    int has_vm_config;
    char *root_id;
    char *vm_id;
    uint32_t worker; /* the worker process it runs in (own VMs, own store
                        slot); 0 unless given */
    char *capabilities; /* "allow=LIST" or "deny=LIST" (pw_capability_parse);
                           NULL: every capability */
} plugin_spec;

/* One step of a test or fixture with `steps:` (docs/CLI.md "Steps"). */
enum step_kind {
    STEP_EXCHANGE, /* one or more exchanges through one plugin */
    STEP_ADVANCE   /* the clock moves on: proxy_on_tick per elapsed period */
};

typedef struct step {
    enum step_kind kind;
    uint64_t advance_ms; /* STEP_ADVANCE */
    char *name;          /* its `name`, or NULL */
    char *through;       /* plugin_name of the plugin; NULL: the first one */
    uint32_t repeat;     /* exchanges in a row (>= 1) */
    int has_req, has_resp, has_conn;
    side req, resp;  /* replace the test's request / response when given */
    connection conn; /* replaces the test's exchange when given */
    int expect;     /* YAML node id of its `expect`, 0: none */
    size_t line;    /* of the step in its file (1-based) */
} step;

/* One entry of `callouts:` (docs/CLI.md "Callouts"): which call it
 * answers (the match fields; NULL: any) and the answer. Strings live in
 * the fixture's arena. */
enum callout_kind { CO_HTTP, CO_GRPC };

typedef struct callout_spec {
    enum callout_kind kind;
    char *upstream; /* the upstream / grpc_service argument */
    char *method;   /* HTTP :method, or the gRPC method */
    char *path;     /* HTTP :path */
    char *service;  /* gRPC service name */
    uint32_t times; /* calls it answers (>= 1) */
    uint64_t delay_ms;
    char *fail; /* NULL: the answer below; else the failure's reason */
    /* HTTP: :status first, then the headers */
    hlist headers;
    pw_str body;
    int has_trailers;
    hlist trailers;
    /* gRPC */
    int has_initial, has_trailing;
    hlist initial, trailing;
    pw_str *messages;
    size_t nmessages;
    uint32_t grpc_status;
    pw_str grpc_message;
    int expect;  /* YAML node id of its `expect`, 0: none */
    size_t line; /* of the entry in its file */
} callout_spec;

typedef struct fixture {
    arena mem;
    side req, resp;
    connection conn; /* present: the exchange is this TCP connection */
    props props;
    int has_clock;
    uint64_t clock_ns;
    int log_level; /* -1: the command's default */
    /* `limits:` of the test's modules (pw_module_set_limits before their
     * VMs are made); zeroes: the defaults */
    pw_limits limits;
    /* limits: shm_quota (bytes of shared data per vm_id, 0: none) and
     * shm_eviction (1: lru) of the test's store */
    uint64_t shm_quota;
    int shm_lru;
    plugin_spec plugin;
    /* More plugins, started after `plugin` in order (`plugins:`). Unset
     * path, vm_id and vm_config are the first plugin's: plugins of one
     * module and vm_id share one VM. */
    plugin_spec *plugins;
    size_t nplugins;
    /* `steps:`; none: one exchange through the first plugin. */
    step *steps;
    size_t nsteps;
    /* `callouts:`: the answers of the calls the plugins make. */
    callout_spec *callouts;
    size_t ncallouts;
} fixture;

void fixture_init(fixture *f);
void fixture_free(fixture *f);
/* Fills f from a mapping node holding the exchange keys (request, response,
 * properties, clock, log_level, steps) and, when `plugin_keys`, the plugin
 * keys (plugin, plugin_name, config, config_file, vm_config, vm_config_file,
 * root_id, vm_id, plugins). Keys absent from the node leave f as it was (so
 * a test can start from its file's defaults). Other keys are not checked
 * here. */
int fixture_parse(fixture *f, ydoc *d, yaml_node_t *map, int plugin_keys, char *err,
                  size_t errlen);
/* A header map in fixture syntax: {k: v, k: [v1, v2]}, [[k, v], ...] or
 * [{k: v}, ...]; null is empty. Replaces h's pairs. */
int fixture_parse_map(ydoc *d, yaml_node_t *n, hlist *h, arena *a, const char *what, char *err,
                      size_t errlen);
/* Keys fixture_parse understands (for ycheck_keys lists). */
extern const char *const fixture_keys[];
/* Deep copy (for a test starting from its file's defaults). */
void fixture_copy(fixture *dst, const fixture *src);
/* Adds defaults: pseudo-headers of a request (:method GET, :path /,
 * :authority localhost, :scheme http) and :status 200 of a response that
 * are missing; a response side when none was given. */
void fixture_finish(fixture *f);
/* The fixture of exchange step s of `test` (a finished fixture): a copy
 * with the step's request and response in place of the test's, finished. */
void fixture_for_step(fixture *dst, const fixture *test, const step *s);
/* "2500ms", "2.5s", "1m", "100" (ms) into ms. Returns 0 or -1. */
int parse_duration_ms(const char *s, uint64_t *ms);

/* ------------------------------------------------------------ host.c */

/* Phases of one exchange, in order. */
enum phase {
    PH_START,  /* VM + root context: on_vm_start, on_configure */
    PH_CREATE, /* on_context_create of the stream */
    PH_REQ_HEADERS,
    PH_REQ_BODY,
    PH_REQ_TRAILERS,
    PH_RESP_HEADERS,
    PH_RESP_BODY,
    PH_RESP_TRAILERS,
    /* TCP connections, in pw_event order after the HTTP ones */
    PH_NEW_CONNECTION,
    PH_DOWNSTREAM_DATA,
    PH_UPSTREAM_DATA,
    PH_DOWNSTREAM_CLOSE,
    PH_UPSTREAM_CLOSE,
    PH_END,   /* on_log, on_done, on_delete (TCP: on_done, on_log, ...) */
    PH_TICK,  /* proxy_on_tick of one plugin */
    PH_QUEUE, /* proxy_on_queue_ready: queue deliveries of one VM */
    PH_CALLOUT, /* an answer of a callout: proxy_on_http_call_response,
                   proxy_on_grpc_* */
    PH_STEP,  /* not a callback: where a step of `steps:` begins */
    PH_COUNT
};

const char *phase_name(enum phase p); /* "request_headers", ... */
int phase_parse(const char *s);       /* -1 when unknown */

/* Something that happened during a callback. */
enum ev_kind { EV_LOG, EV_TRACE, EV_PROPERTY, EV_NOTE };

typedef struct event {
    enum ev_kind kind;
    int call;          /* index in exchange.calls, -1 before the first */
    int level;         /* EV_LOG: proxy_log_level_t */
    int unimplemented; /* EV_TRACE: returned Unimplemented */
    char *text;        /* arena */
    size_t len;
} event;

/* One callback the host made. */
typedef struct call {
    enum phase phase;
    pw_action action;
    size_t size; /* body or data size passed, number of headers/trailers,
                    or the peer type of a TCP close */
    int eos;
    int resumed; /* proxy_continue_* for this direction during it */
    int closed;  /* proxy_close_stream during it */
    uint32_t hostcalls;
    int has_map; /* map/body snapshot after the call */
    hlist map_after;
    pw_str body_after;
    pw_str data_before; /* TCP data callbacks: the buffer before the call */
    int lr;             /* the local response was requested here */
    const char *plugin; /* the plugin called, when the test has several */
    uint64_t at_ms;     /* PH_TICK, PH_STEP, PH_CALLOUT: virtual time since start */
    const char *detail; /* PH_CALLOUT: the callback and what it delivers */
} call;

struct hvm;

/* One call a plugin made (proxy_http_call, proxy_grpc_call / _stream):
 * what it sent, the entry of `callouts:` that answers it, and how far the
 * answer got. */
typedef struct callout {
    enum callout_kind kind;
    int stream; /* gRPC: proxy_grpc_stream */
    struct hvm *v;
    uint32_t token;
    const char *plugin;
    enum phase made_in;
    uint64_t made_ms;
    pw_str upstream, method, path, service;
    hlist headers; /* HTTP headers, or gRPC initial metadata */
    pw_str body;
    hlist trailers;
    uint32_t timeout_ms;
    pw_str *sent; /* gRPC: the unary message, or the messages sent */
    size_t nsent, capsent;
    int entry; /* index in fixture.callouts; -1: unexpected */
    /* the answer */
    uint64_t due_ms;     /* when it (or its failure) is delivered */
    const char *failure; /* NULL: the entry's answer; else delivered as this failure */
    uint32_t next_ev;    /* gRPC: events delivered so far */
    int half_closed;     /* gRPC stream: no more messages from the plugin */
    uint64_t half_ms;
    int cancelled; /* proxy_grpc_cancel / _close, or its context ended */
    int done;      /* answered: the token is spent */
} callout;

typedef struct local_resp {
    int present;
    uint32_t status;
    pw_str details, body;
    hlist headers;
    int32_t grpc_status;
    enum phase phase;
} local_resp;

enum outcome {
    OUT_COMPLETE,    /* every phase ran to the end */
    OUT_LOCAL,       /* answered with a local response (then complete) */
    OUT_PAUSED,      /* a callback paused and nothing resumed it */
    OUT_CLOSED,      /* proxy_close_stream */
    OUT_FAILED,      /* the plugin trapped (fail closed: 503) */
    OUT_START_FAILED /* the VM or the root context could not start */
};
const char *outcome_name(enum outcome o);

/* One direction of a TCP connection. */
typedef struct tcp_side {
    int paused;        /* a Pause holds what its buffer has */
    enum phase paused_in;
    int eos;           /* end_of_stream was delivered */
    int closed;        /* its close callback ran */
} tcp_side;

typedef struct exchange {
    arena mem;
    const fixture *fx;
    /* live state */
    hlist req_h, req_t, resp_h, resp_t;
    int req_t_on, resp_t_on; /* trailers map exists */
    int resp_h_on;           /* response headers arrived */
    buf req_body, resp_body; /* the buffer the plugin sees now */
    int req_body_on, resp_body_on;
    buf req_sent, resp_sent; /* body bytes passed on */
    /* A TCP connection (fx->conn): req_body / resp_body are the
     * DownstreamData / UpstreamData buffers (the chunk, or what is held),
     * req_sent / resp_sent the bytes forwarded to the upstream / to the
     * client. */
    int tcp;
    tcp_side ds, us;
    int plugin_closed;  /* the plugin closed the connection */
    uint64_t closed_ms; /* when */
    uint64_t conn_id;   /* connection.id: 1 for the test's first */
    props props;             /* fixture's + set by the plugin */
    /* record */
    call *calls;
    size_t ncalls, capcalls;
    event *events;
    size_t nevents, capevents;
    local_resp lr;
    enum outcome outcome;
    enum phase stopped_in; /* for PAUSED / CLOSED / FAILED */
    char error[PW_ERRLEN];
    uint32_t hostcalls; /* total of the exchange's stream callbacks */
    uint32_t start_hostcalls;
    uint32_t other_hostcalls; /* ticks and queue deliveries */
    int cur;                  /* index of the call in progress, -1 */
    int last_call;            /* index of the last stream callback */
    enum phase cur_phase;
    int record;           /* keep events and snapshots */
    int in_property_hook; /* get_property answered by the hook */
    /* the calls the plugins made during the test */
    callout *callouts;
    size_t ncallouts, capcallouts;
} exchange;

struct host;

/* One VM: the `host` pointer its hooks receive (hooks find the host and
 * the VM that called from it). */
typedef struct hvm {
    struct host *h;
    pw_vm *vm;
    pw_module *m;
    const char *vm_id;
    const char *vm_config;
    size_t vm_config_len;
    uint32_t worker; /* its store slot */
} hvm;

/* One plugin (root context) and its timer. */
typedef struct hplugin {
    const char *name;
    hvm *v;
    pw_plugin *plugin;
    uint32_t tick_ms;      /* period asked for; 0: no timer */
    uint64_t next_tick_ms; /* virtual time of its next proxy_on_tick */
} hplugin;

/* Heap memory the store lives in: every block, to free them at the end. */
typedef struct store_region {
    struct store_block *blocks;
} store_region;

/* The in-memory embedder: the plugins of a test (each on its VM, plugins
 * of one module and vm_id on one), one store they share, a virtual clock
 * for ticks, and one exchange at a time. */
typedef struct host {
    pw_host_ops ops;
    pw_vm *vm;         /* the first plugin's VM */
    pw_plugin *plugin; /* the plugin exchanges go through (the first one) */
    hvm *vms;
    size_t nvms;
    hplugin *plugins;
    size_t nplugins;
    hplugin *starting; /* the plugin being created (its ticks arrive first) */
    store_region region;
    pw_store *store; /* NULL when it could not be opened */
    int queues_due;  /* pw_host_shared_ops.queue_ready was called */
    int stopping;    /* host_stop is freeing the VMs */
    uint32_t worker; /* the store slot of the VM being called */
    uint64_t now_ms; /* virtual time since the start */
    uint64_t nconns; /* TCP connections so far (connection.id) */
    int fixed_clock; /* the fixture's clock, else the real one */
    uint64_t clock_base_ns;
    exchange *x;
    const fixture *fx; /* the test's: its callouts answer the calls */
    int level;         /* log level reported to the plugin */
    int trace; /* format every hostcall into an EV_TRACE event */
    int echo;  /* print events as they happen (run --trace) */
    FILE *echo_to;
} host;

/* Gives the module of a plugin path (loaded and kept by the caller), or
 * NULL with the reason in err. */
typedef pw_module *module_loader_fn(void *data, const char *path, char *err, size_t errlen);

typedef struct run_opts {
    int log_level; /* -1: fixture's, else default */
    int default_level;
    int trace;  /* record hostcalls (needed for counts too) */
    int record; /* keep events and snapshots */
    /* For plugins of `plugins:` with a path of their own; NULL: they must
     * be the first plugin's module. */
    module_loader_fn *load;
    void *load_data;
} run_opts;

/* Opens the store and creates the VMs and plugins of fixture fx (its
 * plugin spec on module m, then fx->plugins). Errors leave h->vm NULL and
 * x->outcome OUT_START_FAILED with the reason in x->error; returns -1. */
int host_start(host *h, pw_module *m, const fixture *fx, exchange *x, const run_opts *o);
/* Replays x->fx's exchange (or its connection) through h->plugin into x. */
void host_exchange(host *h, exchange *x);
/* Replays x->fx's TCP connection through h->plugin into x
 * (connection.c). */
void host_connection(host *h, exchange *x);
/* Runs step s of fx (a started host): its exchanges through its plugin,
 * each on x->fx = fixture_for_step, or the clock's advance. x's live
 * state is that of the last exchange afterwards; its record grows.
 * Returns -1 (with x->error) for a step naming an unknown plugin. */
int host_step(host *h, exchange *x, const fixture *fx, size_t index);
/* Moves the virtual clock on by ms: every plugin with a timer gets
 * proxy_on_tick once per period that elapses, and every callout its answer
 * when it is due, in time order. */
void host_advance(host *h, uint64_t ms);
/* "http_call \"auth\" GET /check" or "grpc_call \"svc\" pkg.Svc/Method"
 * (the arena's). */
const char *callout_title(arena *a, const callout *c);
/* What became of c: "answered 200", "failed (timeout)", "cancelled",
 * "waiting (due at 500 ms)". */
const char *callout_state(arena *a, const fixture *fx, const callout *c);
void host_stop(host *h);
void exchange_init(exchange *x, const fixture *fx, int record);
void exchange_reset(exchange *x);
/* Clears the live state of an exchange (maps, bodies, local response,
 * outcome) for the next one; keeps the record. */
void exchange_next(exchange *x);
void exchange_free(exchange *x);
/* Prints what happened, phase by phase (pwasm run); trace: every hostcall. */
void print_exchange(FILE *f, const exchange *x, int trace);
/* The calls [from, x->ncalls) and their events, without the result. */
void print_calls(FILE *f, const exchange *x, size_t from, int trace);
/* The result of the exchange x holds now (outcome, response, hostcalls). */
void print_result(FILE *f, const exchange *x);
/* Number of guest linear memory bytes of the VM. */
uint64_t host_guest_memory(host *h);

/* host.c's recording and delivery, for connection.c: a new call record
 * (x->cur), a note under x->cur, the deliveries after a plugin call
 * (queues, callout answers due), the time of the next callout answer
 * (UINT64_MAX: none to come), the snapshot of a call's map or buffer. */
call *host_begin_call(exchange *x, enum phase ph, size_t n, int eos);
/* Creates x's stream context (tcp: a connection's) on h->plugin into
 * link, recorded as PH_CREATE; -1 (outcome failed) when it cannot. */
int host_open_stream(host *h, exchange *x, pw_link *link, int tcp);
void host_note(exchange *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void host_deliver(host *h);
uint64_t host_next_answer(host *h);
void host_snapshot(exchange *x, call *c);

/* ----------------------------------------------------------- trace.c */

/* Renders one hostcall ("proxy_log(level=info, msg=\"hi\") -> Ok") reading
 * strings and returned values from guest memory. */
void trace_format(buf *out, pw_vm *vm, const char *module, const char *name, const uint64_t *args,
                  size_t nargs, uint64_t result);
/* The property path and, on Ok, the value a proxy_get_property call read. */
void trace_property(buf *out, pw_vm *vm, const uint64_t *args, uint64_t result);
/* Guest memory (base, size) of a VM (pw_vm_memory); NULL while it is dead. */
const uint8_t *guest_memory(pw_vm *vm, uint64_t *size);

/* ---------------------------------------------------------- plugin.c */

/* Loads PATH: a .wasm, or an artifact made by `pwasm compile`. name is the
 * module name (file stem when NULL). */
int plugin_load(pw_runtime *rt, const char *path, const char *name, pw_module **out, char *err,
                size_t errlen);
/* File stem: "build/examples/add_header.wasm" -> "add_header" (malloc'ed). */
char *file_stem(const char *path);
/* Restricts m to the capabilities of `rule` (NULL: all of them), reporting
 * each denied import on stderr when `report`. 0, or -1 with err (a bad
 * rule). */
int plugin_restrict(pw_module *m, const char *rule, int report, char *err, size_t errlen);

/* ------------------------------------------------------ subcommands */

int cmd_inspect(int argc, char **argv);
int cmd_compile(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_test(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Prints the usage of a subcommand (NULL: the tool) to f. */
void usage(FILE *f, const char *cmd);
/* 1 when argv holds -h or --help. */
int wants_help(int argc, char **argv);

/* What run and bench share: plugin options, fixture, runtime and module. */
typedef struct session {
    const char *cmd;
    const char *flags[5]; /* --config, --vm-config (STR or @FILE), --root-id, --vm-id, --name */
    int level;            /* --log-level, -1 unset */
    const char *plugin_path;
    fixture fx;
    int opened;
    pw_runtime *rt;
    pw_module *m;
} session;

#define SESSION_OPTIONS                                                                           \
    {"config", required_argument, 0, 'c'}, {"vm-config", required_argument, 0, 'v'},              \
        {"root-id", required_argument, 0, 'r'}, {"vm-id", required_argument, 0, 'i'},             \
        {"name", required_argument, 0, 'N'}, {"log-level", required_argument, 0, 'l'}, {          \
        "help", no_argument, 0, 'h'                                                               \
    }
#define SESSION_SHORT "c:v:r:i:l:h"

/* One option of SESSION_OPTIONS (getopt's c and optarg). Returns -1 when c
 * is none of them, -2 to go on, else the exit status (0 after --help). */
int session_option(session *s, int c);
/* After the options, PLUGIN [FIXTURE] at argv[optind]: reads the fixture
 * (NULL: the default exchange) with the flags over its plugin keys, and
 * loads the plugin. Returns 0 or the exit status (errors printed). */
int session_open(session *s, int argc, char **argv);
void session_close(session *s);

/* Shared by run/test/bench: a runtime with the default cache. */
pw_runtime *cli_runtime(char *err, size_t errlen);

/* Exit statuses, the same for every subcommand (docs/CLI.md "Exit
 * status", pwasm --help). */
enum {
    CLI_EXIT_OK = 0,    /* passed: every test, the plugin started, ... */
    CLI_EXIT_FAIL = 1,  /* a test failed, the plugin did not start, inspect found a problem */
    CLI_EXIT_USAGE = 2, /* a bad command line (option, argument, --junit path) */
    CLI_EXIT_LOAD = 3,  /* a plugin, fixture or test file could not be read, parsed or compiled */
};

/* ----------------------------------------------------------- report.c */

/* Machine-readable results of `pwasm test`: JUnit XML and TAP 13. */
enum test_result { RESULT_PASS, RESULT_FAIL, RESULT_ERROR, RESULT_SKIP };
typedef struct report report;
/* junit: the XML file to write at the end ("-": stdout), or NULL; tap:
 * print TAP 13 on stdout. NULL with err when the file cannot be opened. */
report *report_open(const char *junit, int tap, char *err, size_t errlen);
/* The test file whose tests follow (a JUnit testsuite). */
void report_file(report *r, const char *path);
/* One test: its name, the line of the test file it starts at (0: none),
 * message (the first failure, the skip reason, the load error), text (the
 * whole failure report), in seconds. */
void report_case(report *r, const char *name, size_t line, enum test_result result,
                 const char *message, const char *text, double seconds);
/* Writes the JUnit file and the TAP plan, frees r. -1 with err when the
 * file could not be written. */
int report_close(report *r, char *err, size_t errlen);

#endif
