/*
 * test.c -- `pwasm test FILE|DIR...`: YAML test files (format in
 * docs/CLI.md). Each test runs one exchange on a fresh VM and checks its
 * expectations; a failed expectation prints expected vs actual.
 */
#include <dirent.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"

static const char *const file_keys_extra[] = {"tests", "description"};
static const char *const test_keys_extra[] = {"name", "expect", "skip", "description"};
static const char *const expect_keys[] = {
    "start",      "start_error",    "outcome",     "error",      "actions",   "request",
    "response",   "local_response", "log",         "log_absent", "hostcalls", "hostcalls_absent",
    "properties", "metrics",        "shared_data", "forwarded", "held",      "closed_by_plugin",
    NULL};
static const char *const side_expect_keys[] = {
    "status",       "headers",  "headers_present",  "headers_absent",  "all_headers",  "body",
    "body_matches", "trailers", "trailers_present", "trailers_absent", "all_trailers", NULL};
static const char *const lr_keys[] = {"status",      "body", "body_matches", "headers", "details",
                                      "grpc_status", NULL};

/* Keys of a mapping: the fixture's plus extras. */
static const char **keys_with(const char *const *extra, size_t n) {
    size_t k = 0;
    while (fixture_keys[k])
        k++;
    const char **all = xmalloc((k + n + 1) * sizeof *all);
    memcpy(all, fixture_keys, k * sizeof *all);
    memcpy(all + k, extra, n * sizeof *all);
    all[k + n] = NULL;
    return all;
}

/* ------------------------------------------------------------ checking */

typedef struct checker {
    ydoc *d;
    exchange *x;
    host *h;           /* for the store: shared_data, metrics */
    const char *vm_id; /* the first plugin's: shared_data keys */
    size_t ev_from;    /* a step's expect sees its own events and calls */
    size_t call_from;
    buf out; /* failure report */
    int failures;
    int bad; /* the expectation itself is malformed */
    char err[PW_ERRLEN];
} checker;

static void fail_head(checker *ck, yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_head(checker *ck, yaml_node_t *n, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ck->failures++;
    buf_printf(&ck->out, "    %s", msg);
    if (n)
        buf_printf(&ck->out, " (line %zu)", n->start_mark.line + 1);
    buf_puts(&ck->out, ":\n");
}

/* One-line values: "- expected" and "+ actual". */
static void fail_values(checker *ck, yaml_node_t *n, const char *what, const char *exp,
                        const char *act) {
    fail_head(ck, n, "%s", what);
    buf_printf(&ck->out, "      - expected: %s\n      + actual:   %s\n", exp, act);
}

static void quoted(buf *b, const char *s, size_t len) {
    buf_puts(b, "\"");
    buf_escape(b, s, len, 300);
    buf_puts(b, "\"");
}

static int malformed(checker *ck, yaml_node_t *n, const char *fmt, const char *arg) {
    ck->bad = 1;
    char msg[sizeof ck->err];
    snprintf(msg, sizeof msg, fmt, arg);
    size_t pl = strlen(ck->d->path);
    /* A message from the YAML readers already says where: one location. */
    if (!strncmp(msg, ck->d->path, pl) && msg[pl] == ':')
        memcpy(ck->err, msg, sizeof msg);
    else
        yerr(ck->d, n, ck->err, sizeof ck->err, "%s", msg);
    ck->failures++;
    buf_printf(&ck->out, "    %s\n", ck->err);
    return -1;
}

/* Scalar text of n, or a malformed-expectation failure. */
static const char *text_of(checker *ck, yaml_node_t *n, size_t *len, const char *what) {
    const char *s = yscalar(n, len);
    if (!s)
        malformed(ck, n, "%s: expected a string", what);
    return s;
}

/* The list a node holds: a sequence, or one scalar. */
static size_t items(ydoc *d, yaml_node_t *n, yaml_node_t ***out) {
    if (n->type == YAML_SEQUENCE_NODE) {
        size_t c = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
        *out = xmalloc((c + 1) * sizeof **out);
        for (size_t i = 0; i < c; i++)
            (*out)[i] = ynode(d, n->data.sequence.items.start[i]);
        return c;
    }
    *out = xmalloc(sizeof **out);
    (*out)[0] = n;
    return 1;
}

static void map_text(buf *b, const hlist *h) {
    for (size_t i = 0; i < h->n; i++) {
        buf_escape(b, h->kv[i].key.data, h->kv[i].key.len, 0);
        buf_puts(b, ": ");
        buf_escape(b, h->kv[i].value.data, h->kv[i].value.len, 0);
        buf_puts(b, "\n");
    }
}

static void check_header_value(checker *ck, const char *what, const char *name, yaml_node_t *v,
                               const hlist *h) {
    size_t nl = strlen(name);
    const pw_str *first = hlist_get(h, name, nl);
    buf e = {0}, a = {0};
    char title[300];
    snprintf(title, sizeof title, "%s %s", what, name);
    if (first)
        quoted(&a, first->data, first->len);
    else
        buf_puts(&a, "(absent)");
    if (ynull(v)) {
        if (first)
            fail_values(ck, v, title, "(absent)", a.p);
    } else if (v->type == YAML_MAPPING_NODE) {
        static const char *const keys[] = {"matches", "present", NULL};
        if (ycheck_keys(ck->d, v, keys, title, ck->err, sizeof ck->err)) {
            ck->bad = 1;
            ck->failures++;
            buf_printf(&ck->out, "    %s\n", ck->err);
        } else if (ymap_get(ck->d, v, "present")) {
            if (!first)
                fail_values(ck, v, title, "(present)", "(absent)");
        } else {
            const char *re = text_of(ck, ymap_get(ck->d, v, "matches"), NULL, "matches");
            if (re) {
                int m =
                    first ? regex_find(re, first->data, first->len, ck->err, sizeof ck->err) : 0;
                if (m < 0) {
                    malformed(ck, v, "%s", ck->err);
                } else if (!m) {
                    buf_printf(&e, "matching /%s/", re);
                    fail_values(ck, v, title, e.p, a.p);
                }
            }
        }
    } else if (v->type == YAML_SEQUENCE_NODE) {
        /* Every value of the header, in order. */
        buf want = {0}, got = {0};
        yaml_node_t **it;
        size_t n = items(ck->d, v, &it);
        for (size_t i = 0; i < n; i++) {
            size_t l;
            const char *s = text_of(ck, it[i], &l, title);
            if (!s)
                break;
            buf_printf(&want, "%s", i ? ", " : "");
            quoted(&want, s, l);
        }
        free(it);
        for (size_t i = 0; i < h->n; i++)
            if (h->kv[i].key.len == nl && !strncasecmp(h->kv[i].key.data, name, nl)) {
                buf_printf(&got, "%s", got.len ? ", " : "");
                quoted(&got, h->kv[i].value.data, h->kv[i].value.len);
            }
        if (strcmp(want.p ? want.p : "", got.p ? got.p : ""))
            fail_values(ck, v, title, want.p ? want.p : "(none)", got.p ? got.p : "(absent)");
        buf_free(&want);
        buf_free(&got);
    } else {
        arena tmp = {0};
        pw_str want;
        if (yvalue_bytes(ck->d, v, &tmp, &want, ck->err, sizeof ck->err)) {
            malformed(ck, v, "%s", ck->err);
        } else if (!first || first->len != want.len || memcmp(first->data, want.data, want.len)) {
            quoted(&e, want.data, want.len);
            fail_values(ck, v, title, e.p, a.p);
        }
        arena_free(&tmp);
    }
    buf_free(&e);
    buf_free(&a);
}

/* headers / trailers: name: value | null | [values] | {matches: RE}. */
static void check_map(checker *ck, yaml_node_t *n, const char *what, const hlist *h) {
    if (n->type != YAML_MAPPING_NODE) {
        malformed(ck, n, "%s: expected a mapping of name: expected value", what);
        return;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *name = text_of(ck, ynode(ck->d, p->key), NULL, what);
        if (name)
            check_header_value(ck, what, name, ynode(ck->d, p->value), h);
    }
}

static void check_names(checker *ck, yaml_node_t *n, const char *what, const hlist *h,
                        int want_present) {
    yaml_node_t **it;
    size_t cnt = items(ck->d, n, &it);
    for (size_t i = 0; i < cnt; i++) {
        size_t l;
        const char *name = text_of(ck, it[i], &l, what);
        if (!name)
            break;
        const pw_str *v = hlist_get(h, name, l);
        if (!!v != want_present) {
            char title[300];
            snprintf(title, sizeof title, "%s %s", what, name);
            buf a = {0};
            if (v)
                quoted(&a, v->data, v->len);
            fail_values(ck, it[i], title, want_present ? "(present)" : "(absent)",
                        v ? a.p : "(absent)");
            buf_free(&a);
        }
    }
    free(it);
}

/* all_headers / all_trailers: the whole map, in order (fixture syntax). */
static void check_all(checker *ck, yaml_node_t *n, const char *what, const hlist *h) {
    arena tmp = {0};
    hlist want = {0};
    buf e = {0}, a = {0};
    if (fixture_parse_map(ck->d, n, &want, &tmp, what, ck->err, sizeof ck->err)) {
        malformed(ck, n, "%s", ck->err);
    } else {
        map_text(&e, &want);
        map_text(&a, h);
        if (strcmp(e.p ? e.p : "", a.p ? a.p : "")) {
            fail_head(ck, n, "%s", what);
            diff_lines(&ck->out, "      ", e.p ? e.p : "", e.len, a.p ? a.p : "", a.len);
        }
    }
    hlist_free(&want);
    arena_free(&tmp);
    buf_free(&e);
    buf_free(&a);
}

static void check_body(checker *ck, yaml_node_t *n, const char *what, const char *p, size_t len,
                       int regex) {
    if (regex) {
        const char *re = text_of(ck, n, NULL, what);
        if (!re)
            return;
        int m = regex_find(re, p ? p : "", len, ck->err, sizeof ck->err);
        if (m < 0) {
            malformed(ck, n, "%s", ck->err);
        } else if (!m) {
            buf e = {0}, a = {0};
            buf_printf(&e, "matching /%s/", re);
            quoted(&a, p ? p : "", len);
            fail_values(ck, n, what, e.p, a.p);
            buf_free(&e);
            buf_free(&a);
        }
        return;
    }
    arena tmp = {0};
    pw_str want;
    if (yvalue_bytes(ck->d, n, &tmp, &want, ck->err, sizeof ck->err)) {
        malformed(ck, n, "%s", ck->err);
    } else if (want.len != len || (len && memcmp(want.data, p, len))) {
        fail_head(ck, n, "%s (expected %zu bytes, got %zu)", what, want.len, len);
        diff_lines(&ck->out, "      ", want.data, want.len, p ? p : "", len);
    }
    arena_free(&tmp);
}

static void check_status(checker *ck, yaml_node_t *n, const char *what, const char *actual,
                         size_t alen) {
    size_t l;
    const char *s = text_of(ck, n, &l, what);
    if (s && (l != alen || memcmp(s, actual, l))) {
        buf a = {0};
        buf_put(&a, alen ? actual : "(none)", alen ? alen : 6);
        fail_values(ck, n, what, s, a.p);
        buf_free(&a);
    }
}

static void check_side(checker *ck, yaml_node_t *n, int resp) {
    exchange *x = ck->x;
    const char *w = resp ? "response" : "request";
    if (ycheck_keys(ck->d, n, side_expect_keys, w, ck->err, sizeof ck->err)) {
        malformed(ck, n, "%s", ck->err);
        return;
    }
    const hlist *h = resp ? &x->resp_h : &x->req_h;
    const hlist *t = resp ? &x->resp_t : &x->req_t;
    const buf *body = resp ? &x->resp_sent : &x->req_sent;
    char what[64];
    yaml_node_t *v;
    if ((v = ymap_get(ck->d, n, "status"))) {
        const pw_str *st = hlist_get(h, resp ? ":status" : ":method", 7);
        snprintf(what, sizeof what, "%s status", w);
        check_status(ck, v, what, st ? st->data : "", st ? st->len : 0);
    }
#define SUB(key, fn, ...)                                                                         \
    if ((v = ymap_get(ck->d, n, key))) {                                                          \
        snprintf(what, sizeof what, "%s.%s", w, key);                                             \
        fn(ck, v, what, __VA_ARGS__);                                                             \
    }
    SUB("headers", check_map, h)
    SUB("headers_present", check_names, h, 1)
    SUB("headers_absent", check_names, h, 0)
    SUB("all_headers", check_all, h)
    SUB("trailers", check_map, t)
    SUB("trailers_present", check_names, t, 1)
    SUB("trailers_absent", check_names, t, 0)
    SUB("all_trailers", check_all, t)
    SUB("body", check_body, body->p, body->len, 0)
    SUB("body_matches", check_body, body->p, body->len, 1)
#undef SUB
}

/* forwarded / held: {upstream: BYTES, downstream: BYTES} and their
 * _matches forms. forwarded.upstream is what went to the server (the
 * client's bytes that passed), forwarded.downstream what went to the
 * client; held.downstream / held.upstream what a Pause still holds of
 * the client's / the server's bytes at the end. */
static void check_bytes(checker *ck, yaml_node_t *n, const char *what) {
    static const char *const keys[] = {"upstream", "downstream", "upstream_matches",
                                       "downstream_matches", NULL};
    exchange *x = ck->x;
    int held = !strcmp(what, "held");
    if (n->type != YAML_MAPPING_NODE ||
        ycheck_keys(ck->d, n, keys, what, ck->err, sizeof ck->err)) {
        if (n->type != YAML_MAPPING_NODE)
            snprintf(ck->err, sizeof ck->err,
                     "%s: expected {upstream: BYTES, downstream: BYTES} (or *_matches: RE)", what);
        malformed(ck, n, "%s", ck->err);
        return;
    }
    if (!x->tcp) {
        fail_values(ck, n, what, "a TCP connection", "an HTTP exchange (no connection: given)");
        return;
    }
    for (const char *const *k = keys; *k; k++) {
        yaml_node_t *v = ymap_get(ck->d, n, *k);
        if (!v)
            continue;
        int up = !strncmp(*k, "upstream", 8), re = strstr(*k, "_matches") != NULL;
        /* forwarded: upstream is what went to the server; held: upstream
         * is the server's bytes */
        const buf *b = held ? (up ? &x->resp_body : &x->req_body)
                            : (up ? &x->req_sent : &x->resp_sent);
        char title[128];
        snprintf(title, sizeof title, "%s.%s (%s)", what, *k,
                 held ? (up ? "bytes from the server still held" : "bytes from the client still held")
                      : (up ? "bytes sent to the server" : "bytes sent to the client"));
        if (re) {
            check_body(ck, v, title, b->p, b->len, 1);
            continue;
        }
        arena tmp = {0};
        pw_str want;
        if (yvalue_bytes(ck->d, v, &tmp, &want, ck->err, sizeof ck->err)) {
            malformed(ck, v, "%s", ck->err);
        } else if (want.len != b->len || (b->len && memcmp(want.data, b->p, b->len))) {
            buf e = {0}, a = {0};
            quoted(&e, want.data, want.len);
            quoted(&a, b->p ? b->p : "", b->len);
            buf_printf(&e, " (%zu bytes)", want.len);
            buf_printf(&a, " (%zu bytes)", b->len);
            fail_values(ck, v, title, e.p, a.p);
            buf_free(&e);
            buf_free(&a);
        }
        arena_free(&tmp);
    }
}

static void check_closed(checker *ck, yaml_node_t *n) {
    const char *s = yscalar(n, NULL);
    if (!s || (strcmp(s, "true") && strcmp(s, "false"))) {
        malformed(ck, n, "%s: expected true or false", "closed_by_plugin");
        return;
    }
    exchange *x = ck->x;
    int want = !strcmp(s, "true");
    if (want == x->plugin_closed)
        return;
    char a[128];
    if (x->plugin_closed)
        snprintf(a, sizeof a, "true (in %s at %llu ms)", phase_name(x->stopped_in),
                 (unsigned long long)x->closed_ms);
    else
        snprintf(a, sizeof a, "false");
    fail_values(ck, n, "closed_by_plugin", s, a);
}

static void check_local(checker *ck, yaml_node_t *n) {
    local_resp *l = &ck->x->lr;
    size_t len;
    const char *s = yscalar(n, &len);
    int none = ynull(n) || (s && (!strcmp(s, "false") || !strcmp(s, "none")));
    if (none) {
        if (l->present) {
            char a[64];
            snprintf(a, sizeof a, "%u from %s", l->status, phase_name(l->phase));
            fail_values(ck, n, "local_response", "(none)", a);
        }
        return;
    }
    if (ycheck_keys(ck->d, n, lr_keys, "local_response", ck->err, sizeof ck->err)) {
        malformed(ck, n, "%s", ck->err);
        return;
    }
    if (!l->present) {
        fail_values(ck, n, "local_response", "a local response", "(none)");
        return;
    }
    yaml_node_t *v;
    char num[16];
    if ((v = ymap_get(ck->d, n, "status"))) {
        snprintf(num, sizeof num, "%u", l->status);
        check_status(ck, v, "local_response.status", num, strlen(num));
    }
    if ((v = ymap_get(ck->d, n, "grpc_status"))) {
        snprintf(num, sizeof num, "%d", l->grpc_status);
        check_status(ck, v, "local_response.grpc_status", num, strlen(num));
    }
    if ((v = ymap_get(ck->d, n, "details")))
        check_body(ck, v, "local_response.details", l->details.data, l->details.len, 0);
    if ((v = ymap_get(ck->d, n, "body")))
        check_body(ck, v, "local_response.body", l->body.data, l->body.len, 0);
    if ((v = ymap_get(ck->d, n, "body_matches")))
        check_body(ck, v, "local_response.body", l->body.data, l->body.len, 1);
    if ((v = ymap_get(ck->d, n, "headers")))
        check_map(ck, v, "local_response.headers", &l->headers);
}

static void check_actions(checker *ck, yaml_node_t *n) {
    exchange *x = ck->x;
    if (n->type != YAML_MAPPING_NODE) {
        malformed(ck, n, "%s: expected a mapping of phase: action", "actions");
        return;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = ynode(ck->d, p->key), *v = ynode(ck->d, p->value);
        const char *ph = text_of(ck, k, NULL, "actions");
        if (!ph)
            return;
        int phase = phase_parse(ph);
        if (phase < PH_REQ_HEADERS || phase > PH_UPSTREAM_CLOSE) {
            malformed(ck, k,
                      "actions: unknown phase \"%s\" (request_headers, request_body, "
                      "request_trailers, response_headers, response_body, response_trailers, "
                      "new_connection, downstream_data, upstream_data, downstream_close, "
                      "upstream_close)",
                      ph);
            return;
        }
        buf got = {0}, want = {0};
        size_t ncalls = 0;
        const char *last = "not_called";
        for (size_t i = ck->call_from; i < x->ncalls; i++)
            if ((int)x->calls[i].phase == phase) {
                last = action_name(x->calls[i].action);
                buf_printf(&got, "%s%s", ncalls++ ? ", " : "", last);
            }
        if (v->type == YAML_SEQUENCE_NODE) {
            yaml_node_t **it;
            size_t cnt = items(ck->d, v, &it);
            for (size_t i = 0; i < cnt; i++) {
                const char *a = text_of(ck, it[i], NULL, "actions");
                if (!a)
                    break;
                buf_printf(&want, "%s%s", i ? ", " : "", a);
            }
            free(it);
            if (strcmp(want.p ? want.p : "", got.p ? got.p : ""))
                fail_values(ck, v, ph, want.p ? want.p : "(no calls)",
                            got.p ? got.p : "(not called)");
        } else {
            const char *a = text_of(ck, v, NULL, "actions");
            if (a && action_parse(a) < 0 && strcmp(a, "not_called"))
                malformed(ck, v,
                          "unknown action \"%s\" (continue, pause, pause_no_buffer, "
                          "local_response, error, not_called)",
                          a);
            else if (a && strcmp(a, last))
                fail_values(ck, v, ph, a, ncalls > 1 ? got.p : last);
        }
        buf_free(&got);
        buf_free(&want);
    }
}

/* log / hostcalls: each pattern must match at least one line (absent: none). */
static void check_lines(checker *ck, yaml_node_t *n, const char *what, enum ev_kind kind,
                        int absent) {
    exchange *x = ck->x;
    yaml_node_t **it;
    size_t cnt = items(ck->d, n, &it);
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *pn = it[i], *lv = NULL;
        int level = -1;
        if (pn->type == YAML_MAPPING_NODE && kind == EV_LOG) {
            static const char *const keys[] = {"level", "matches", NULL};
            if (ycheck_keys(ck->d, pn, keys, what, ck->err, sizeof ck->err)) {
                malformed(ck, pn, "%s", ck->err);
                break;
            }
            lv = ymap_get(ck->d, pn, "level");
            const char *ls = lv ? yscalar(lv, NULL) : NULL;
            if (lv && (!ls || (level = log_level_parse(ls)) < 0)) {
                malformed(ck, lv, "%s: unknown level", what);
                break;
            }
            pn = ymap_get(ck->d, pn, "matches");
            if (!pn) {
                malformed(ck, it[i], "%s: give matches", what);
                break;
            }
        }
        const char *re = text_of(ck, pn, NULL, what);
        if (!re)
            break;
        int found = 0;
        for (size_t j = ck->ev_from; j < x->nevents && !found; j++) {
            const event *e = &x->events[j];
            if (e->kind != kind || (level >= 0 && e->level != level))
                continue;
            int m = regex_find(re, e->text, e->len, ck->err, sizeof ck->err);
            if (m < 0) {
                malformed(ck, pn, "%s", ck->err);
                free(it);
                return;
            }
            found = m;
        }
        if (found == !absent)
            continue;
        fail_head(ck, pn, "%s", what);
        buf_printf(&ck->out, "      - expected: %s line matching /%s/%s%s\n", absent ? "no" : "a",
                   re, level >= 0 ? " at level " : "", level >= 0 ? log_level_name(level) : "");
        buf_printf(&ck->out, "      + actual:   %s\n",
                   absent ? "these lines match:" : "these lines (none matches):");
        int shown = 0;
        for (size_t j = ck->ev_from; j < x->nevents; j++) {
            const event *e = &x->events[j];
            if (e->kind != kind)
                continue;
            if (absent && regex_find(re, e->text, e->len, ck->err, sizeof ck->err) != 1)
                continue;
            if (++shown > 40) {
                buf_puts(&ck->out, "          ...\n");
                break;
            }
            buf_puts(&ck->out, "          ");
            if (kind == EV_LOG)
                buf_printf(&ck->out, "%s: ", log_level_name(e->level));
            buf_escape_ctl(&ck->out, e->text, e->len, 300);
            buf_puts(&ck->out, "\n");
        }
        if (!shown)
            buf_puts(&ck->out, "          (no lines)\n");
    }
    free(it);
}

static void check_props(checker *ck, yaml_node_t *n) {
    if (n->type != YAML_MAPPING_NODE) {
        malformed(ck, n, "%s: expected a mapping of path: value", "properties");
        return;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        size_t pl;
        const char *path = text_of(ck, ynode(ck->d, p->key), &pl, "properties");
        yaml_node_t *v = ynode(ck->d, p->value);
        if (!path)
            return;
        const prop *got = props_get(&ck->x->props, path, pl);
        char title[300];
        snprintf(title, sizeof title, "property %s", path);
        buf a = {0}, e = {0};
        if (got)
            quoted(&a, got->value.data, got->value.len);
        if (ynull(v)) {
            if (got)
                fail_values(ck, v, title, "(absent)", a.p);
        } else {
            arena tmp = {0};
            pw_str want;
            if (yvalue_bytes(ck->d, v, &tmp, &want, ck->err, sizeof ck->err)) {
                malformed(ck, v, "%s", ck->err);
            } else if (!got || got->value.len != want.len ||
                       memcmp(got->value.data, want.data, want.len)) {
                quoted(&e, want.data, want.len);
                fail_values(ck, v, title, e.p, got ? a.p : "(absent)");
            }
            arena_free(&tmp);
        }
        buf_free(&a);
        buf_free(&e);
    }
}

/* metrics: {NAME: VALUE | ~}: the store's value of the first metric of
 * that name, counter, gauge or histogram (its count of samples), or that
 * there is none. */
static void check_metrics(checker *ck, yaml_node_t *n) {
    if (n->type != YAML_MAPPING_NODE) {
        malformed(ck, n, "%s: expected a mapping of metric name: value", "metrics");
        return;
    }
    static const char *const types[] = {"counter", "gauge", "histogram"};
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        size_t nl;
        const char *name = text_of(ck, ynode(ck->d, p->key), &nl, "metrics");
        yaml_node_t *v = ynode(ck->d, p->value);
        if (!name)
            return;
        char title[300], want[64], got[96];
        snprintf(title, sizeof title, "metric %s", name);
        long long expected = 0;
        if (!ynull(v)) {
            const char *t = yscalar(v, NULL);
            char *end = NULL;
            if (t)
                expected = strtoll(t, &end, 0);
            if (!t || !*t || *end) {
                malformed(ck, v, "metrics: expected an integer or ~, got \"%s\"", t ? t : "?");
                return;
            }
        }
        if (!ck->h || !ck->h->store) {
            fail_values(ck, v, title, ynull(v) ? "(absent)" : yscalar(v, NULL),
                        "(no store: the library could not open one)");
            continue;
        }
        int64_t value = 0;
        int type = -1;
        for (int t = 0; t < 3 && type < 0; t++)
            if (pw_store_metric(ck->h->store, (pw_str){name, nl}, (uint32_t)t, &value) ==
                PROXY_RESULT_OK)
                type = t;
        if (type < 0)
            snprintf(got, sizeof got, "(absent)");
        else
            snprintf(got, sizeof got, "%lld (%s)", (long long)value, types[type]);
        if (ynull(v)) {
            if (type >= 0)
                fail_values(ck, v, title, "(absent)", got);
        } else if (type < 0 || value != expected) {
            snprintf(want, sizeof want, "%lld", expected);
            fail_values(ck, v, title, want, got);
        }
    }
}

/* shared_data: {KEY: VALUE | ~}: the value the store holds for the key in
 * the first plugin's vm_id (bytes; tags as in fixtures), or that there is
 * none. */
static void check_shared(checker *ck, yaml_node_t *n) {
    if (n->type != YAML_MAPPING_NODE) {
        malformed(ck, n, "%s: expected a mapping of key: value", "shared_data");
        return;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        size_t kl;
        const char *key = text_of(ck, ynode(ck->d, p->key), &kl, "shared_data");
        yaml_node_t *v = ynode(ck->d, p->value);
        if (!key)
            return;
        char title[300];
        snprintf(title, sizeof title, "shared_data %s", key);
        arena tmp = {0};
        pw_str want = {NULL, 0};
        if (!ynull(v) && yvalue_bytes(ck->d, v, &tmp, &want, ck->err, sizeof ck->err)) {
            malformed(ck, v, "%s", ck->err);
            arena_free(&tmp);
            return;
        }
        buf e = {0}, a = {0};
        if (ynull(v))
            buf_puts(&e, "(absent)");
        else
            quoted(&e, want.data, want.len);
        if (!ck->h || !ck->h->store) {
            fail_values(ck, v, title, e.p, "(no store: the library could not open one)");
        } else {
            char *value = NULL;
            size_t len = 0;
            uint32_t cas = 0;
            const char *vm = ck->vm_id ? ck->vm_id : "";
            proxy_status_t st = pw_store_get(ck->h->store, (pw_str){vm, strlen(vm)},
                                             (pw_str){key, kl}, &value, &len, &cas);
            if (st == PROXY_RESULT_OK) {
                quoted(&a, value ? value : "", len);
                buf_printf(&a, " (cas %u)", cas);
            } else {
                buf_puts(&a, st == PROXY_RESULT_NOT_FOUND ? "(absent)" : "(error)");
            }
            int same = ynull(v) ? st == PROXY_RESULT_NOT_FOUND
                                : st == PROXY_RESULT_OK && len == want.len &&
                                      (!len || !memcmp(value, want.data, len));
            if (!same)
                fail_values(ck, v, title, e.p, a.p);
            free(value);
        }
        buf_free(&e);
        buf_free(&a);
        arena_free(&tmp);
    }
}

/* messages: the gRPC messages the plugin sent, in order (bytes). */
static void check_messages(checker *ck, yaml_node_t *n, const char *what, const callout *c) {
    yaml_node_t **it;
    size_t cnt = items(ck->d, n, &it);
    arena tmp = {0};
    buf e = {0}, a = {0};
    int same = cnt == c->nsent;
    for (size_t i = 0; i < cnt; i++) {
        pw_str want;
        if (yvalue_bytes(ck->d, it[i], &tmp, &want, ck->err, sizeof ck->err)) {
            malformed(ck, it[i], "%s", ck->err);
            same = 1;
            break;
        }
        buf_puts(&e, i ? ", " : "");
        quoted(&e, want.data, want.len);
        same = same && want.len == c->sent[i].len &&
               (!want.len || !memcmp(want.data, c->sent[i].data, want.len));
    }
    for (size_t i = 0; i < c->nsent; i++) {
        buf_puts(&a, i ? ", " : "");
        quoted(&a, c->sent[i].data, c->sent[i].len);
    }
    if (!same)
        fail_values(ck, n, what, e.p ? e.p : "(none)", a.p ? a.p : "(none)");
    free(it);
    arena_free(&tmp);
    buf_free(&e);
    buf_free(&a);
}

static const char *const callout_expect_keys[] = {
    "headers",  "headers_present", "headers_absent", "all_headers", "body",
    "body_matches", "trailers", "metadata", "messages", "timeout_ms", "half_closed",
    "cancelled", NULL};

/* The `expect` of entry i of callouts: on what each call it answered sent. */
static void check_callout_expect(checker *ck, const fixture *fx, size_t i) {
    const callout_spec *e = &fx->callouts[i];
    yaml_node_t *ex = ynode(ck->d, e->expect), *v;
    if (!ex || ex->type != YAML_MAPPING_NODE ||
        ycheck_keys(ck->d, ex, callout_expect_keys, "a callout's expect", ck->err,
                    sizeof ck->err)) {
        malformed(ck, ex, "%s", ex ? ck->err : "expect: expected a mapping");
        return;
    }
    for (size_t j = 0; j < ck->x->ncallouts; j++) {
        const callout *c = &ck->x->callouts[j];
        if (c->entry != (int)i)
            continue;
        char what[96], num[32];
#define SUB(key, fn, ...)                                                                         \
    if ((v = ymap_get(ck->d, ex, key))) {                                                         \
        snprintf(what, sizeof what, "callouts[%zu] (token %u) %s", i, c->token, key);           \
        fn(ck, v, what, __VA_ARGS__);                                                             \
    }
        SUB("headers", check_map, &c->headers)
        SUB("metadata", check_map, &c->headers)
        SUB("headers_present", check_names, &c->headers, 1)
        SUB("headers_absent", check_names, &c->headers, 0)
        SUB("all_headers", check_all, &c->headers)
        SUB("trailers", check_map, &c->trailers)
        SUB("body", check_body, c->body.data, c->body.len, 0)
        SUB("body_matches", check_body, c->body.data, c->body.len, 1)
        SUB("messages", check_messages, c)
        snprintf(num, sizeof num, "%u", c->timeout_ms);
        SUB("timeout_ms", check_status, num, strlen(num))
        SUB("half_closed", check_status, c->half_closed ? "true" : "false",
            strlen(c->half_closed ? "true" : "false"))
        SUB("cancelled", check_status, c->cancelled ? "true" : "false",
            strlen(c->cancelled ? "true" : "false"))
#undef SUB
    }
}

/* The calls the plugins made against the fixture's callouts: a call no
 * entry answered, an entry no call (or fewer calls than its `times`) used,
 * and each entry's expect on what was sent. */
static void check_callouts(checker *ck, const fixture *fx) {
    exchange *x = ck->x;
    arena tmp = {0};
    for (size_t j = 0; j < x->ncallouts; j++) {
        const callout *c = &x->callouts[j];
        if (c->entry >= 0)
            continue;
        fail_head(ck, NULL, "unexpected callout: %s (token %u) from %s of %s at %llu ms",
                  callout_title(&tmp, c), c->token, phase_name(c->made_in), c->plugin,
                  (unsigned long long)c->made_ms);
        buf_puts(&ck->out, "      - expected: an entry of callouts: that matches it\n");
        buf_puts(&ck->out, "      + actual:   none (answered with a failure); it sent ");
        buf_puts(&ck->out, c->kind == CO_HTTP ? "headers {" : "metadata {");
        for (size_t k = 0; k < c->headers.n; k++) {
            buf_puts(&ck->out, k ? ", " : "");
            quoted(&ck->out, c->headers.kv[k].key.data, c->headers.kv[k].key.len);
            buf_puts(&ck->out, ": ");
            quoted(&ck->out, c->headers.kv[k].value.data, c->headers.kv[k].value.len);
        }
        buf_puts(&ck->out, "}\n");
    }
    for (size_t i = 0; fx && i < fx->ncallouts; i++) {
        const callout_spec *e = &fx->callouts[i];
        uint32_t used = 0;
        for (size_t j = 0; j < x->ncallouts; j++)
            used += x->callouts[j].entry == (int)i;
        if (used < e->times) {
            char want[96], got[32];
            snprintf(want, sizeof want, "%u call%s%s%s%s", e->times, e->times == 1 ? "" : "s",
                     e->upstream ? " to \"" : "", e->upstream ? e->upstream : "",
                     e->upstream ? "\"" : "");
            snprintf(got, sizeof got, "%u", used);
            fail_head(ck, NULL, "callouts[%zu] (line %zu): expected calls never made", i, e->line);
            buf_printf(&ck->out, "      - expected: %s\n      + actual:   %s\n", want, got);
        }
        if (e->expect)
            check_callout_expect(ck, fx, i);
    }
    arena_free(&tmp);
}

/* Expectations on the store: checked while the plugins still run. */
static int check_store(checker *ck, yaml_node_t *ex) {
    yaml_node_t *v;
    if (!ex || ex->type != YAML_MAPPING_NODE)
        return ck->failures;
    if ((v = ymap_get(ck->d, ex, "shared_data")))
        check_shared(ck, v);
    if ((v = ymap_get(ck->d, ex, "metrics")))
        check_metrics(ck, v);
    return ck->failures;
}

/* Checks every expectation; returns the number of failures. */
static int check(checker *ck, yaml_node_t *ex) {
    exchange *x = ck->x;
    if (!ex)
        ex = NULL;
    if (ex && ycheck_keys(ck->d, ex, expect_keys, "expect", ck->err, sizeof ck->err))
        return malformed(ck, ex, "%s", ck->err), ck->failures;
    yaml_node_t *v = ex ? ymap_get(ck->d, ex, "start") : NULL;
    const char *want_start = v ? yscalar(v, NULL) : "ok";
    if (!want_start || (strcmp(want_start, "ok") && strcmp(want_start, "failed")))
        return malformed(ck, v, "%s: expected ok or failed", "start"), ck->failures;
    int started = x->outcome != OUT_START_FAILED;
    if (started != !strcmp(want_start, "ok")) {
        fail_values(ck, v, "start", want_start, started ? "ok" : "failed");
        if (!started)
            buf_printf(&ck->out, "      (%s)\n", x->error);
    }
    if (ex && (v = ymap_get(ck->d, ex, "start_error")))
        check_body(ck, v, "start_error", x->error, strlen(x->error), 1);
    if (ex && (v = ymap_get(ck->d, ex, "log")))
        check_lines(ck, v, "log", EV_LOG, 0);
    if (ex && (v = ymap_get(ck->d, ex, "log_absent")))
        check_lines(ck, v, "log_absent", EV_LOG, 1);
    if (ex && (v = ymap_get(ck->d, ex, "hostcalls")))
        check_lines(ck, v, "hostcalls", EV_TRACE, 0);
    if (ex && (v = ymap_get(ck->d, ex, "hostcalls_absent")))
        check_lines(ck, v, "hostcalls_absent", EV_TRACE, 1);
    if (!started || !ex)
        return ck->failures;
    if ((v = ymap_get(ck->d, ex, "outcome"))) {
        size_t l;
        const char *o = text_of(ck, v, &l, "outcome");
        if (o && strcmp(o, outcome_name(x->outcome))) {
            char a[PW_ERRLEN + 64];
            snprintf(a, sizeof a, "%s%s%s%s%s", outcome_name(x->outcome),
                     x->outcome >= OUT_PAUSED ? " in " : "",
                     x->outcome >= OUT_PAUSED ? phase_name(x->stopped_in) : "",
                     x->error[0] ? ": " : "", x->error);
            fail_values(ck, v, "outcome", o, a);
        }
    }
    if ((v = ymap_get(ck->d, ex, "error")))
        check_body(ck, v, "error", x->error, strlen(x->error), 1);
    if ((v = ymap_get(ck->d, ex, "actions")))
        check_actions(ck, v);
    if ((v = ymap_get(ck->d, ex, "request")))
        check_side(ck, v, 0);
    if ((v = ymap_get(ck->d, ex, "response")))
        check_side(ck, v, 1);
    if ((v = ymap_get(ck->d, ex, "local_response")))
        check_local(ck, v);
    if ((v = ymap_get(ck->d, ex, "properties")))
        check_props(ck, v);
    if ((v = ymap_get(ck->d, ex, "forwarded")))
        check_bytes(ck, v, "forwarded");
    if ((v = ymap_get(ck->d, ex, "held")))
        check_bytes(ck, v, "held");
    if ((v = ymap_get(ck->d, ex, "closed_by_plugin")))
        check_closed(ck, v);
    return ck->failures;
}

/* ------------------------------------------------------------ running */

typedef struct modcache {
    char **paths;
    pw_module **mods;
    size_t n;
    pw_runtime *rt;
    int load_failures; /* modules asked for that could not be loaded */
} modcache;

static pw_module *module_for(modcache *mc, const char *path, char *err, size_t errlen) {
    for (size_t i = 0; i < mc->n; i++)
        if (!strcmp(mc->paths[i], path)) {
            if (!mc->mods[i]) {
                snprintf(err, errlen, "%s: could not be loaded (see above)", path);
                mc->load_failures++;
            }
            return mc->mods[i];
        }
    pw_module *m = NULL;
    if (plugin_load(mc->rt, path, NULL, &m, err, errlen)) {
        m = NULL;
        mc->load_failures++;
    }
    mc->paths = xrealloc(mc->paths, (mc->n + 1) * sizeof *mc->paths);
    mc->mods = xrealloc(mc->mods, (mc->n + 1) * sizeof *mc->mods);
    mc->paths[mc->n] = xstrdup(path);
    mc->mods[mc->n++] = m;
    return m;
}

static pw_module *load_module(void *data, const char *path, char *err, size_t errlen) {
    return module_for(data, path, err, errlen);
}

/* The steps of a test, each step's expect checked on what it did (its
 * events and calls; the exchange it ended with; the store). */
static void run_steps(checker *ck, host *h, const fixture *fx) {
    exchange *x = ck->x;
    for (size_t i = 0; i < fx->nsteps; i++) {
        const step *s = &fx->steps[i];
        ck->ev_from = x->nevents;
        ck->call_from = x->ncalls;
        if (host_step(h, x, fx, i)) {
            ck->failures++;
            buf_printf(&ck->out, "    %s\n", x->error);
            return;
        }
        if (!s->expect)
            continue;
        yaml_node_t *ex = ynode(ck->d, s->expect);
        /* The step's failures go under a heading of their own, indented
         * one more level. */
        buf all = ck->out;
        ck->out = (buf){0};
        int before = ck->failures;
        check_store(ck, ex);
        check(ck, ex);
        if (ck->failures != before) {
            buf_printf(&all, "    step %zu%s%s%s (line %zu):\n", i + 1, s->name ? " \"" : "",
                       s->name ? s->name : "", s->name ? "\"" : "", s->line);
            for (const char *l = ck->out.p; l && *l;) {
                const char *nl = strchr(l, '\n');
                size_t n = nl ? (size_t)(nl - l) + 1 : strlen(l);
                buf_puts(&all, "  ");
                buf_put(&all, l, n);
                l += n;
            }
        }
        buf_free(&ck->out);
        ck->out = all;
    }
}

typedef struct totals {
    int passed, failed, skipped;
    int errors; /* of failed: a test file or plugin that could not be loaded */
    int verbose, trace;
    FILE *out;          /* the report for people: stdout, stderr under --tap */
    report *rep;        /* JUnit and TAP */
    const char *filter; /* --filter: only the tests whose name matches */
    int selected;       /* tests the filter selected */
} totals;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A test that could not run (its file, its plugin): counted as failed,
 * an error in the reports, exit status 3. */
static void test_error(totals *tot, const char *name, size_t line, const char *err, double t0) {
    fprintf(tot->out, "  FAIL  %s\n    %s\n", name, err);
    tot->failed++;
    tot->errors++;
    report_case(tot->rep, name, line, RESULT_ERROR, err, NULL, now_s() - t0);
}

/* The first line of a failure report, without its indent and colon, and
 * how many more failures follow: the JUnit and TAP message. */
static char *failure_message(const char *text, int failures) {
    buf m = {0};
    while (*text == ' ')
        text++;
    size_t n = strcspn(text, "\n");
    if (n && text[n - 1] == ':')
        n--;
    buf_put(&m, text, n);
    if (failures > 1)
        buf_printf(&m, " (and %d more failure%s)", failures - 1, failures > 2 ? "s" : "");
    return m.p;
}

static void run_test(modcache *mc, ydoc *d, const fixture *base, yaml_node_t *t, int index,
                     totals *tot) {
    char err[PW_ERRLEN];
    const char **keys = keys_with(test_keys_extra, 4);
    yaml_node_t *nn = ymap_get(d, t, "name");
    const char *name = nn ? yscalar(nn, NULL) : NULL;
    char fallback[32];
    snprintf(fallback, sizeof fallback, "test %d", index + 1);
    if (!name)
        name = fallback;
    size_t line = t->start_mark.line + 1;
    double t0 = now_s();
    if (tot->filter && regex_find(tot->filter, name, strlen(name), err, sizeof err) != 1) {
        free(keys);
        return;
    }
    tot->selected++;
    yaml_node_t *skip = ymap_get(d, t, "skip");
    if (skip && !ynull(skip)) {
        const char *why = yscalar(skip, NULL);
        fprintf(tot->out, "  skip  %s%s%s\n", name, why ? ": " : "", why ? why : "");
        tot->skipped++;
        report_case(tot->rep, name, line, RESULT_SKIP, why, NULL, 0);
        free(keys);
        return;
    }
    fixture fx;
    fixture_copy(&fx, base);
    if (ycheck_keys(d, t, keys, "a test", err, sizeof err) ||
        fixture_parse(&fx, d, t, 1, err, sizeof err)) {
        test_error(tot, name, line, err, t0);
        fixture_free(&fx);
        free(keys);
        return;
    }
    free(keys);
    fixture_finish(&fx);
    if (!fx.plugin.path) {
        yerr(d, t, err, sizeof err, "no plugin: give `plugin:` in the file or the test");
        test_error(tot, name, line, err, t0);
        fixture_free(&fx);
        return;
    }
    pw_module *m = module_for(mc, fx.plugin.path, err, sizeof err);
    if (m && plugin_restrict(m, fx.plugin.capabilities, 0, err, sizeof err))
        m = NULL;
    if (!m) {
        test_error(tot, name, line, err, t0);
        fixture_free(&fx);
        return;
    }
    host h;
    exchange x;
    exchange_init(&x, &fx, 1);
    run_opts o = {.log_level = -1,
                  .default_level = PROXY_LOG_TRACE,
                  .trace = 2,
                  .record = 1,
                  .load = load_module,
                  .load_data = mc};
    checker ck = {.d = d, .x = &x, .h = &h, .vm_id = fx.plugin.vm_id};
    yaml_node_t *ex = ymap_get(d, t, "expect");
    if (ex && ex->type != YAML_MAPPING_NODE)
        ex = NULL;
    int loads_failed_before = mc->load_failures;
    if (host_start(&h, m, &fx, &x, &o) == 0) {
        if (fx.nsteps)
            run_steps(&ck, &h, &fx);
        else
            host_exchange(&h, &x);
        ck.ev_from = ck.call_from = 0;
        check_store(&ck, ex);
        host_stop(&h);
    }
    ck.h = NULL;
    if (x.outcome != OUT_START_FAILED || x.ncallouts)
        check_callouts(&ck, &fx);
    int failures = check(&ck, ymap_get(d, t, "expect"));
    if (failures) {
        const char *text = ck.out.p ? ck.out.p : "";
        fprintf(tot->out, "  FAIL  %s\n%s", name, text);
        /* The reports carry what the person reads, "what happened" too. */
        char *all = NULL;
        size_t all_len = 0;
        FILE *mem = tot->verbose ? open_memstream(&all, &all_len) : NULL;
        if (mem) {
            fprintf(mem, "%s    what happened:\n", text);
            print_exchange(mem, &x, tot->trace);
            fclose(mem);
            fputs(all + strlen(text), tot->out);
        } else if (tot->verbose) {
            fprintf(tot->out, "    what happened:\n");
            print_exchange(tot->out, &x, tot->trace);
        }
        char *msg = failure_message(text, failures);
        /* A malformed expectation, or a module of `plugins:` that could not
         * be loaded, is the test file's error, not the plugin's. */
        int error = ck.bad || mc->load_failures != loads_failed_before;
        report_case(tot->rep, name, line, error ? RESULT_ERROR : RESULT_FAIL, msg,
                    all ? all : text, now_s() - t0);
        free(msg);
        free(all);
        tot->failed++;
        tot->errors += error;
    } else {
        fprintf(tot->out, "  ok    %s\n", name);
        tot->passed++;
        report_case(tot->rep, name, line, RESULT_PASS, NULL, NULL, now_s() - t0);
    }
    buf_free(&ck.out);
    exchange_free(&x);
    fixture_free(&fx);
}

/* A test file that could not be read or parsed: one error, named after
 * the file, in the reports. */
static void file_error(totals *tot, const char *path, const char *err, double t0) {
    fprintf(tot->out, "  FAIL  %s\n", err);
    tot->failed++;
    tot->errors++;
    const char *base = strrchr(path, '/');
    report_case(tot->rep, base ? base + 1 : path, 0, RESULT_ERROR, err, NULL, now_s() - t0);
}

static void run_file(modcache *mc, const char *path, totals *tot) {
    char err[PW_ERRLEN];
    ydoc d;
    double t0 = now_s();
    fprintf(tot->out, "%s\n", path);
    report_file(tot->rep, path);
    const char **keys = keys_with(file_keys_extra, 2);
    fixture base;
    fixture_init(&base);
    yaml_node_t *tests = NULL;
    if (ydoc_load(&d, path, err, sizeof err) ||
        ycheck_keys(&d, yroot(&d), keys, "a test file", err, sizeof err) ||
        fixture_parse(&base, &d, yroot(&d), 1, err, sizeof err)) {
        file_error(tot, path, err, t0);
        goto out;
    }
    tests = ymap_get(&d, yroot(&d), "tests");
    if (!tests || tests->type != YAML_SEQUENCE_NODE) {
        yerr(&d, tests ? tests : yroot(&d), err, sizeof err, "expected `tests:`, a list of tests");
        file_error(tot, path, err, t0);
        goto out;
    }
    int i = 0;
    for (yaml_node_item_t *it = tests->data.sequence.items.start;
         it < tests->data.sequence.items.top; it++, i++) {
        yaml_node_t *t = ynode(&d, *it);
        if (t->type != YAML_MAPPING_NODE) {
            yerr(&d, t, err, sizeof err, "each test must be a mapping");
            file_error(tot, path, err, now_s());
            continue;
        }
        run_test(mc, &d, &base, t, i, tot);
    }
out:
    free(keys);
    fixture_free(&base);
    ydoc_free(&d);
}

static int is_yaml(const char *name) {
    size_t n = strlen(name);
    return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml"));
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.yaml / *.yml below dir, sorted, appended to *files. */
static void collect(const char *dir, char ***files, size_t *n) {
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    char **names = NULL;
    size_t cnt = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.')
            continue;
        names = xrealloc(names, (cnt + 1) * sizeof *names);
        names[cnt++] = xstrdup(e->d_name);
    }
    closedir(dp);
    if (cnt) /* names is NULL in an empty directory */
        qsort(names, cnt, sizeof *names, cmp_str);
    for (size_t i = 0; i < cnt; i++) {
        buf p = {0};
        buf_printf(&p, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(p.p, &st) == 0 && S_ISDIR(st.st_mode)) {
            collect(p.p, files, n);
            buf_free(&p);
        } else if (is_yaml(names[i])) {
            *files = xrealloc(*files, (*n + 1) * sizeof **files);
            (*files)[(*n)++] = p.p;
        } else {
            buf_free(&p);
        }
        free(names[i]);
    }
    free(names);
}

int cmd_test(int argc, char **argv) {
    static const struct option opts[] = {{"verbose", no_argument, 0, 'v'},
                                         {"trace", no_argument, 0, 't'},
                                         {"junit", required_argument, 0, 'j'},
                                         {"tap", no_argument, 0, 'T'},
                                         {"filter", required_argument, 0, 'k'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    totals tot = {.out = stdout};
    const char *junit = NULL;
    int tap = 0, c;
    char err[PW_ERRLEN];
    optind = 1;
    while ((c = getopt_long(argc, argv, "vtj:k:h", opts, NULL)) != -1) {
        switch (c) {
        case 'v':
            tot.verbose = 1;
            break;
        case 't':
            tot.verbose = tot.trace = 1;
            break;
        case 'j':
            junit = optarg;
            break;
        case 'T':
            tap = 1;
            break;
        case 'k':
            tot.filter = optarg;
            if (regex_find(optarg, "", 0, err, sizeof err) < 0) {
                fprintf(stderr, "pwasm test: --filter \"%s\": %s\n", optarg, err);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'h':
            usage(stdout, "test");
            return CLI_EXIT_OK;
        default:
            usage(stderr, "test");
            return CLI_EXIT_USAGE;
        }
    }
    if (optind == argc) {
        fputs("pwasm test: missing FILE or DIR (YAML test files, or directories of them)\n\n",
              stderr);
        usage(stderr, "test");
        return CLI_EXIT_USAGE;
    }
    if (tap && junit && !strcmp(junit, "-")) {
        fputs("pwasm test: --tap and --junit - both want stdout: give --junit a FILE\n", stderr);
        return CLI_EXIT_USAGE;
    }
    /* stdout carries the TAP stream or the XML: the report for people goes
     * to stderr then. */
    if (tap || (junit && !strcmp(junit, "-")))
        tot.out = stderr;
    tot.rep = report_open(junit, tap, err, sizeof err);
    if (!tot.rep) {
        fprintf(stderr, "pwasm test: %s\n", err);
        return CLI_EXIT_USAGE;
    }
    char **files = NULL;
    size_t nfiles = 0;
    for (int i = optind; i < argc; i++) {
        struct stat st;
        const char *why = NULL;
        if (stat(argv[i], &st) != 0) {
            why = "no such file or directory";
        } else if (S_ISDIR(st.st_mode)) {
            size_t before = nfiles;
            collect(argv[i], &files, &nfiles);
            if (before == nfiles)
                why = "no .yaml or .yml files below it";
        } else {
            files = xrealloc(files, (nfiles + 1) * sizeof *files);
            files[nfiles++] = xstrdup(argv[i]);
        }
        /* Nothing to run there: an error of its own (a CI job that tests
         * nothing must not pass). */
        if (why) {
            snprintf(err, sizeof err, "%s: %s", argv[i], why);
            fprintf(stderr, "pwasm test: %s\n", err);
            report_file(tot.rep, argv[i]);
            report_case(tot.rep, argv[i], 0, RESULT_ERROR, err, NULL, 0);
            tot.failed++;
            tot.errors++;
        }
    }
    modcache mc = {0};
    mc.rt = cli_runtime(err, sizeof err);
    if (!mc.rt) {
        fprintf(stderr, "pwasm: %s\n", err);
        report_close(tot.rep, err, sizeof err);
        for (size_t i = 0; i < nfiles; i++)
            free(files[i]);
        free(files);
        return CLI_EXIT_LOAD;
    }
    for (size_t i = 0; i < nfiles; i++) {
        run_file(&mc, files[i], &tot);
        free(files[i]);
    }
    free(files);
    for (size_t i = 0; i < mc.n; i++) {
        if (mc.mods[i])
            pw_module_free(mc.mods[i]);
        free(mc.paths[i]);
    }
    free(mc.paths);
    free(mc.mods);
    pw_runtime_free(mc.rt);
    fprintf(tot.out, "%d passed, %d failed", tot.passed, tot.failed);
    if (tot.skipped)
        fprintf(tot.out, ", %d skipped", tot.skipped);
    fprintf(tot.out, "\n");
    int rc = tot.errors ? CLI_EXIT_LOAD : tot.failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
    if (report_close(tot.rep, err, sizeof err)) {
        fprintf(stderr, "pwasm test: %s\n", err);
        rc = CLI_EXIT_USAGE;
    }
    if (tot.filter && !tot.selected && !tot.errors) {
        fprintf(stderr, "pwasm test: --filter \"%s\" selected no test\n", tot.filter);
        rc = CLI_EXIT_USAGE;
    }
    return rc;
}
