/* fixture.c -- the exchange a plugin is run on, read from YAML. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"

/* ------------------------------------------------------ header lists */

void hlist_add(hlist *h, arena *a, pw_str k, pw_str v) {
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->kv = xrealloc(h->kv, h->cap * sizeof *h->kv);
    }
    h->kv[h->n++] = (pw_kv){arena_dup(a, k.data, k.len), arena_dup(a, v.data, v.len)};
}

void hlist_copy(hlist *dst, arena *a, const hlist *src) {
    dst->n = 0;
    for (size_t i = 0; i < src->n; i++)
        hlist_add(dst, a, src->kv[i].key, src->kv[i].value);
}

const pw_str *hlist_get(const hlist *h, const char *k, size_t klen) {
    for (size_t i = 0; i < h->n; i++)
        if (h->kv[i].key.len == klen && !strncasecmp(h->kv[i].key.data, k, klen))
            return &h->kv[i].value;
    return NULL;
}

void hlist_free(hlist *h) {
    free(h->kv);
    *h = (hlist){0};
}

/* ---------------------------------------------------------- properties */

void props_set(props *p, arena *a, const char *path, size_t plen, pw_str value) {
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->v[i].path) == plen && !memcmp(p->v[i].path, path, plen)) {
            p->v[i].value = arena_dup(a, value.data, value.len);
            return;
        }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->v = xrealloc(p->v, p->cap * sizeof *p->v);
    }
    p->v[p->n].path = (char *)arena_dup(a, path, plen).data;
    p->v[p->n].value = arena_dup(a, value.data, value.len);
    p->n++;
}

const prop *props_get(const props *p, const char *path, size_t plen) {
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->v[i].path) == plen && !memcmp(p->v[i].path, path, plen))
            return &p->v[i];
    return NULL;
}

/* ------------------------------------------------------------ fixture */

const char *const fixture_keys[] = {
    "request", "response",    "properties", "clock",          "log_level", "plugin", "plugin_name",
    "config",  "config_file", "vm_config",  "vm_config_file", "root_id",   "vm_id",  "plugins",
    "steps",   "worker",      "callouts",   "connection",     "limits",    "capabilities",
    NULL};

/* Keys of one item of `plugins:`. */
static const char *const plugin_item_keys[] = {
    "plugin",         "plugin_name", "config", "config_file", "vm_config",
    "vm_config_file", "root_id",     "vm_id",  "worker",      NULL};

/* Keys of one item of `steps:`. */
static const char *const step_keys[] = {"name",    "request", "response",   "through", "repeat",
                                        "advance", "expect",  "connection", NULL};

/* Keys of one item of `callouts:`. */
static const char *const callout_keys[] = {
    "upstream", "kind",     "method",           "path",         "service",
    "times",    "delay",    "fail",             "status",       "headers",
    "body",     "trailers", "initial_metadata", "messages",     "trailing_metadata",
    "grpc_status", "grpc_message", "expect",    NULL};

void fixture_init(fixture *f) {
    memset(f, 0, sizeof *f);
    f->log_level = -1;
}

static void spec_free(plugin_spec *s) {
    free(s->path);
    free(s->name);
    free(s->config);
    free(s->vm_config);
    free(s->root_id);
    free(s->vm_id);
    free(s->capabilities);
    memset(s, 0, sizeof *s);
}

static void side_free(side *s) {
    hlist_free(&s->headers);
    hlist_free(&s->trailers);
    free(s->chunks);
    memset(s, 0, sizeof *s);
}

static void conn_free(connection *c) {
    free(c->ev);
    memset(c, 0, sizeof *c);
}

/* The events' bytes live in arena a. */
static void conn_copy(connection *dst, arena *a, const connection *src) {
    dst->present = src->present;
    dst->n = src->n;
    dst->ev = xmalloc((src->n + 1) * sizeof *dst->ev);
    for (size_t i = 0; i < src->n; i++) {
        dst->ev[i] = src->ev[i];
        dst->ev[i].data = arena_dup(a, src->ev[i].data.data, src->ev[i].data.len);
    }
}

static void steps_free(fixture *f) {
    for (size_t i = 0; i < f->nsteps; i++) {
        side_free(&f->steps[i].req);
        side_free(&f->steps[i].resp);
        conn_free(&f->steps[i].conn);
        free(f->steps[i].through);
        free(f->steps[i].name);
    }
    free(f->steps);
    f->steps = NULL;
    f->nsteps = 0;
}

static void callouts_free(fixture *f) {
    for (size_t i = 0; i < f->ncallouts; i++) {
        callout_spec *c = &f->callouts[i];
        hlist_free(&c->headers);
        hlist_free(&c->trailers);
        hlist_free(&c->initial);
        hlist_free(&c->trailing);
        free(c->messages);
    }
    free(f->callouts);
    f->callouts = NULL;
    f->ncallouts = 0;
}

static void plugins_free(fixture *f) {
    for (size_t i = 0; i < f->nplugins; i++)
        spec_free(&f->plugins[i]);
    free(f->plugins);
    f->plugins = NULL;
    f->nplugins = 0;
}

void fixture_free(fixture *f) {
    side_free(&f->req);
    side_free(&f->resp);
    conn_free(&f->conn);
    free(f->props.v);
    spec_free(&f->plugin);
    plugins_free(f);
    steps_free(f);
    callouts_free(f);
    arena_free(&f->mem);
    fixture_init(f);
}

static char *dup_or_null(const char *s) {
    return s ? xstrdup(s) : NULL;
}

static char *dup_bytes(const char *s, size_t len) {
    if (!s)
        return NULL;
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = 0;
    return p;
}

static void side_copy(side *dst, arena *a, const side *src) {
    dst->present = src->present;
    hlist_copy(&dst->headers, a, &src->headers);
    dst->has_trailers = src->has_trailers;
    hlist_copy(&dst->trailers, a, &src->trailers);
    dst->nchunks = src->nchunks;
    dst->chunks = xmalloc((src->nchunks + 1) * sizeof *dst->chunks);
    for (size_t i = 0; i < src->nchunks; i++)
        dst->chunks[i] = arena_dup(a, src->chunks[i].data, src->chunks[i].len);
}

static void spec_copy(plugin_spec *d, const plugin_spec *s) {
    d->path = dup_or_null(s->path);
    d->name = dup_or_null(s->name);
    d->config = dup_bytes(s->config, s->config_len);
    d->config_len = s->config_len;
    d->has_config = s->has_config;
    d->vm_config = dup_bytes(s->vm_config, s->vm_config_len);
    d->vm_config_len = s->vm_config_len;
    d->has_vm_config = s->has_vm_config;
    d->root_id = dup_or_null(s->root_id);
    d->vm_id = dup_or_null(s->vm_id);
    d->worker = s->worker;
    d->capabilities = dup_or_null(s->capabilities);
}

static void copy_plugins(fixture *dst, const fixture *src) {
    plugins_free(dst);
    dst->plugins = xmalloc((src->nplugins + 1) * sizeof *dst->plugins);
    memset(dst->plugins, 0, (src->nplugins + 1) * sizeof *dst->plugins);
    for (size_t i = 0; i < src->nplugins; i++)
        spec_copy(&dst->plugins[i], &src->plugins[i]);
    dst->nplugins = src->nplugins;
}

static void copy_steps(fixture *dst, const fixture *src) {
    steps_free(dst);
    dst->steps = xmalloc((src->nsteps + 1) * sizeof *dst->steps);
    memset(dst->steps, 0, (src->nsteps + 1) * sizeof *dst->steps);
    for (size_t i = 0; i < src->nsteps; i++) {
        const step *s = &src->steps[i];
        step *d = &dst->steps[i];
        *d = *s;
        memset(&d->req, 0, sizeof d->req);
        memset(&d->resp, 0, sizeof d->resp);
        side_copy(&d->req, &dst->mem, &s->req);
        side_copy(&d->resp, &dst->mem, &s->resp);
        memset(&d->conn, 0, sizeof d->conn);
        conn_copy(&d->conn, &dst->mem, &s->conn);
        d->through = dup_or_null(s->through);
        d->name = dup_or_null(s->name);
    }
    dst->nsteps = src->nsteps;
}

static char *arena_str_or_null(arena *a, const char *s) {
    return s ? arena_strdup(a, s) : NULL;
}

static void copy_callouts(fixture *dst, const fixture *src) {
    callouts_free(dst);
    dst->callouts = xmalloc((src->ncallouts + 1) * sizeof *dst->callouts);
    memset(dst->callouts, 0, (src->ncallouts + 1) * sizeof *dst->callouts);
    arena *a = &dst->mem;
    for (size_t i = 0; i < src->ncallouts; i++) {
        const callout_spec *s = &src->callouts[i];
        callout_spec *d = &dst->callouts[i];
        *d = *s;
        d->upstream = arena_str_or_null(a, s->upstream);
        d->method = arena_str_or_null(a, s->method);
        d->path = arena_str_or_null(a, s->path);
        d->service = arena_str_or_null(a, s->service);
        d->fail = arena_str_or_null(a, s->fail);
        memset(&d->headers, 0, sizeof d->headers);
        memset(&d->trailers, 0, sizeof d->trailers);
        memset(&d->initial, 0, sizeof d->initial);
        memset(&d->trailing, 0, sizeof d->trailing);
        hlist_copy(&d->headers, a, &s->headers);
        hlist_copy(&d->trailers, a, &s->trailers);
        hlist_copy(&d->initial, a, &s->initial);
        hlist_copy(&d->trailing, a, &s->trailing);
        d->body = arena_dup(a, s->body.data, s->body.len);
        d->grpc_message = arena_dup(a, s->grpc_message.data, s->grpc_message.len);
        d->messages = xmalloc((s->nmessages + 1) * sizeof *d->messages);
        for (size_t j = 0; j < s->nmessages; j++)
            d->messages[j] = arena_dup(a, s->messages[j].data, s->messages[j].len);
    }
    dst->ncallouts = src->ncallouts;
}

void fixture_copy(fixture *dst, const fixture *src) {
    fixture_init(dst);
    side_copy(&dst->req, &dst->mem, &src->req);
    side_copy(&dst->resp, &dst->mem, &src->resp);
    conn_copy(&dst->conn, &dst->mem, &src->conn);
    for (size_t i = 0; i < src->props.n; i++)
        props_set(&dst->props, &dst->mem, src->props.v[i].path, strlen(src->props.v[i].path),
                  src->props.v[i].value);
    dst->has_clock = src->has_clock;
    dst->clock_ns = src->clock_ns;
    dst->log_level = src->log_level;
    dst->limits = src->limits;
    dst->shm_quota = src->shm_quota;
    dst->shm_lru = src->shm_lru;
    spec_copy(&dst->plugin, &src->plugin);
    copy_plugins(dst, src);
    copy_steps(dst, src);
    copy_callouts(dst, src);
}

void fixture_for_step(fixture *dst, const fixture *test, const step *s) {
    fixture_copy(dst, test);
    if (s->has_req) {
        side_free(&dst->req);
        side_copy(&dst->req, &dst->mem, &s->req);
    }
    if (s->has_resp) {
        side_free(&dst->resp);
        side_copy(&dst->resp, &dst->mem, &s->resp);
    }
    /* A step is an HTTP exchange when it gives request or response, a
     * connection when it gives one, else the test's. */
    if (s->has_req || s->has_resp || s->has_conn)
        conn_free(&dst->conn);
    if (s->has_conn)
        conn_copy(&dst->conn, &dst->mem, &s->conn);
    fixture_finish(dst);
}

int parse_duration_ms(const char *s, uint64_t *ms) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0)
        return -1;
    while (*end == ' ')
        end++;
    double scale = !*end || !strcmp(end, "ms") ? 1
                   : !strcmp(end, "s")         ? 1000
                   : !strcmp(end, "m")         ? 60000
                   : !strcmp(end, "h")         ? 3600000
                                               : -1;
    if (scale < 0 || v * scale > 1e15)
        return -1;
    *ms = (uint64_t)(v * scale + 0.5);
    return 0;
}

static int hexval(int c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static int tag_is(const char *tag, const char *name) {
    if (!tag)
        return 0;
    if (tag[0] == '!' && !strcmp(tag + 1, name))
        return 1;
    return !strncmp(tag, "tag:yaml.org,2002:", 18) && !strcmp(tag + 18, name);
}

/* A scalar as bytes: its text, or per its tag !hex, !int, !uint, !bool,
 * !float (§6.3 encodings, little-endian). */
int yvalue_bytes(ydoc *d, yaml_node_t *n, arena *a, pw_str *out, char *err, size_t errlen) {
    size_t len;
    const char *s = yscalar(n, &len);
    if (!s)
        return yerr(d, n, err, errlen, "expected a string");
    const char *tag = ytag(n);
    if (!tag || tag_is(tag, "str")) {
        *out = arena_dup(a, s, len);
        return 0;
    }
    uint8_t b[8];
    char *end;
    errno = 0;
    if (tag_is(tag, "hex")) {
        char *p = arena_alloc(a, len / 2 + 1);
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
            if (s[i] == ' ' || s[i] == ':')
                continue;
            int h = hexval(s[i]), l = i + 1 < len ? hexval(s[i + 1]) : -1;
            if (h < 0 || l < 0)
                return yerr(d, n, err, errlen, "!hex: \"%s\" is not hexadecimal bytes", s);
            p[o++] = (char)(h << 4 | l);
            i++;
        }
        *out = (pw_str){p, o};
        return 0;
    }
    uint64_t v;
    size_t blen = 8;
    if (tag_is(tag, "int")) {
        v = (uint64_t)strtoll(s, &end, 0);
    } else if (tag_is(tag, "uint")) {
        v = strtoull(s, &end, 0);
    } else if (tag_is(tag, "float")) {
        double dv = strtod(s, &end);
        memcpy(&v, &dv, 8);
    } else if (tag_is(tag, "bool")) {
        int t = !strcmp(s, "true"), f = !strcmp(s, "false");
        if (!t && !f)
            return yerr(d, n, err, errlen, "!bool: expected true or false, got \"%s\"", s);
        v = (uint64_t)t;
        blen = 1;
        end = "";
    } else {
        return yerr(d, n, err, errlen,
                    "unknown tag %s (use !int, !uint, !bool, !float, !hex or none)", tag);
    }
    if (*end || errno)
        return yerr(d, n, err, errlen, "%s: cannot read \"%s\"", tag, s);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    *out = arena_dup(a, (const char *)b, blen);
    return 0;
}

/* headers: {k: v, k: [v1, v2]} or [[k, v], ...] or [{k: v}, ...]. */
int fixture_parse_map(ydoc *d, yaml_node_t *n, hlist *h, arena *a, const char *what, char *err,
                      size_t errlen) {
    h->n = 0;
    if (ynull(n))
        return 0;
    if (n->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = ynode(d, p->key), *v = ynode(d, p->value);
            size_t kl;
            const char *ks = yscalar(k, &kl);
            if (!ks)
                return yerr(d, k, err, errlen, "%s: header names must be strings", what);
            if (v->type == YAML_SEQUENCE_NODE) {
                for (yaml_node_item_t *i = v->data.sequence.items.start;
                     i < v->data.sequence.items.top; i++) {
                    pw_str val;
                    if (yvalue_bytes(d, ynode(d, *i), a, &val, err, errlen))
                        return -1;
                    hlist_add(h, a, (pw_str){ks, kl}, val);
                }
                continue;
            }
            pw_str val = {"", 0};
            if (!ynull(v) && yvalue_bytes(d, v, a, &val, err, errlen))
                return -1;
            hlist_add(h, a, (pw_str){ks, kl}, val);
        }
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return yerr(d, n, err, errlen, "%s: expected a mapping or a list of pairs", what);
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
        yaml_node_t *e = ynode(d, *i);
        yaml_node_t *k = NULL, *v = NULL;
        if (e->type == YAML_SEQUENCE_NODE &&
            e->data.sequence.items.top - e->data.sequence.items.start == 2) {
            k = ynode(d, e->data.sequence.items.start[0]);
            v = ynode(d, e->data.sequence.items.start[1]);
        } else if (e->type == YAML_MAPPING_NODE &&
                   e->data.mapping.pairs.top - e->data.mapping.pairs.start == 1) {
            k = ynode(d, e->data.mapping.pairs.start[0].key);
            v = ynode(d, e->data.mapping.pairs.start[0].value);
        }
        size_t kl;
        const char *ks = k ? yscalar(k, &kl) : NULL;
        if (!ks)
            return yerr(d, e, err, errlen, "%s: each item must be [name, value] or {name: value}",
                        what);
        pw_str val = {"", 0};
        if (!ynull(v) && yvalue_bytes(d, v, a, &val, err, errlen))
            return -1;
        hlist_add(h, a, (pw_str){ks, kl}, val);
    }
    return 0;
}

static int parse_body(ydoc *d, yaml_node_t *n, side *s, arena *a, char *err, size_t errlen) {
    free(s->chunks);
    s->chunks = NULL;
    s->nchunks = 0;
    if (ynull(n))
        return 0;
    if (n->type == YAML_SCALAR_NODE) {
        s->chunks = xmalloc(sizeof *s->chunks);
        s->nchunks = 1;
        return yvalue_bytes(d, n, a, &s->chunks[0], err, errlen);
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return yerr(d, n, err, errlen, "body: expected a string or a list of chunks");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    s->chunks = xmalloc((cnt + 1) * sizeof *s->chunks);
    for (size_t i = 0; i < cnt; i++)
        if (yvalue_bytes(d, ynode(d, n->data.sequence.items.start[i]), a, &s->chunks[i], err,
                         errlen))
            return -1;
    s->nchunks = cnt;
    return 0;
}

static int parse_side(ydoc *d, yaml_node_t *n, side *s, arena *a, const char *what, char *err,
                      size_t errlen) {
    static const char *const keys[] = {"headers", "body", "trailers", NULL};
    if (ycheck_keys(d, n, keys, what, err, errlen))
        return -1;
    /* A side given again replaces the one inherited. */
    s->present = 1;
    s->headers.n = 0;
    s->trailers.n = 0;
    s->has_trailers = 0;
    free(s->chunks);
    s->chunks = NULL;
    s->nchunks = 0;
    yaml_node_t *v;
    if ((v = ymap_get(d, n, "headers")) &&
        fixture_parse_map(d, v, &s->headers, a, "headers", err, errlen))
        return -1;
    if ((v = ymap_get(d, n, "body")) && parse_body(d, v, s, a, err, errlen))
        return -1;
    if ((v = ymap_get(d, n, "trailers"))) {
        s->has_trailers = 1;
        if (fixture_parse_map(d, v, &s->trailers, a, "trailers", err, errlen))
            return -1;
    }
    return 0;
}

static int parse_props(ydoc *d, yaml_node_t *n, props *p, arena *a, buf *prefix, char *err,
                       size_t errlen) {
    if (n->type != YAML_MAPPING_NODE)
        return yerr(d, n, err, errlen, "properties: expected a mapping of path: value");
    for (yaml_node_pair_t *pp = n->data.mapping.pairs.start; pp < n->data.mapping.pairs.top;
         pp++) {
        yaml_node_t *k = ynode(d, pp->key), *v = ynode(d, pp->value);
        const char *ks = yscalar(k, NULL);
        if (!ks)
            return yerr(d, k, err, errlen, "properties: names must be strings");
        size_t mark = prefix->len;
        buf_printf(prefix, "%s%s", mark ? "." : "", ks);
        int rc;
        if (v->type == YAML_MAPPING_NODE) {
            rc = parse_props(d, v, p, a, prefix, err, errlen);
        } else {
            pw_str val = {"", 0};
            rc = ynull(v) ? 0 : yvalue_bytes(d, v, a, &val, err, errlen);
            if (!rc)
                props_set(p, a, prefix->p, prefix->len, val);
        }
        prefix->len = mark;
        prefix->p[mark] = 0;
        if (rc)
            return -1;
    }
    return 0;
}

/* "2024-01-02T03:04:05Z", optionally with a fraction, or ns as an integer. */
static int parse_clock(ydoc *d, yaml_node_t *n, uint64_t *ns, char *err, size_t errlen) {
    const char *s = yscalar(n, NULL);
    if (!s)
        return yerr(d, n, err, errlen, "clock: expected ns since the epoch or a UTC time");
    if (strspn(s, "0123456789") == strlen(s))
        return yuint(d, n, ns, err, errlen);
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    uint64_t frac = 0;
    if (rest && *rest == '.') {
        uint64_t scale = 100000000;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
            frac += (uint64_t)(*rest - '0') * scale;
    }
    if (!rest || strcmp(rest, "Z"))
        return yerr(d, n, err, errlen,
                    "clock: \"%s\" is neither ns nor a UTC time like 2024-01-02T03:04:05Z", s);
    time_t t = timegm(&tm);
    *ns = (uint64_t)t * 1000000000u + frac;
    return 0;
}

static int set_text(ydoc *d, yaml_node_t *n, char **dst, char *err, size_t errlen) {
    const char *s = yscalar(n, NULL);
    if (!s)
        return yerr(d, n, err, errlen, "expected a string");
    free(*dst);
    *dst = xstrdup(ynull(n) ? "" : s);
    return 0;
}

/* config / config_file (and the vm_ pair): at most one of the two. */
static int parse_config(ydoc *d, yaml_node_t *map, const char *key, char **out, size_t *len,
                        int *has, char *err, size_t errlen) {
    char fkey[64];
    snprintf(fkey, sizeof fkey, "%s_file", key);
    yaml_node_t *v = ymap_get(d, map, key), *f = ymap_get(d, map, fkey);
    if (v && f)
        return yerr(d, f, err, errlen, "give %s or %s, not both", key, fkey);
    if (v) {
        free(*out);
        *out = NULL;
        *has = 1;
        return yconfig(d, v, out, len, err, errlen);
    }
    if (f) {
        const char *s = yscalar(f, NULL);
        if (!s)
            return yerr(d, f, err, errlen, "%s: expected a file name", fkey);
        char *path = ypath(d, s);
        uint8_t *data;
        if (read_file(path, &data, len) != 0) {
            yerr(d, f, err, errlen, "cannot read %s: %s", path, strerror(errno));
            free(path);
            return -1;
        }
        free(path);
        free(*out);
        *out = (char *)data;
        *has = 1;
    }
    return 0;
}

static int parse_spec(ydoc *d, yaml_node_t *map, plugin_spec *p, char *err, size_t errlen);

/* The store's keys of limits: shm_quota: BYTES (per vm_id), shm_eviction:
 * lru|none. */
static int parse_shm_limits(ydoc *d, yaml_node_t *map, fixture *f, char *err, size_t errlen) {
    yaml_node_t *v = ymap_get(d, map, "shm_quota");
    const char *s = v ? yscalar(v, NULL) : NULL;
    char *end = NULL;
    if (v && (!s || !(f->shm_quota = strtoull(s, &end, 10)) || *end))
        return yerr(d, v, err, errlen, "limits: shm_quota: expected a positive number of bytes");
    v = ymap_get(d, map, "shm_eviction");
    s = v ? yscalar(v, NULL) : NULL;
    if (v && (!s || (strcmp(s, "lru") && strcmp(s, "none"))))
        return yerr(d, v, err, errlen, "limits: shm_eviction: expected lru or none");
    if (v)
        f->shm_lru = !strcmp(s, "lru");
    return 0;
}

/* limits: {max_callouts: N, brake_traps: N, brake_window: DURATION,
 * brake_backoff: DURATION, brake_max_backoff: DURATION, max_map_pairs: N,
 * max_map_bytes: BYTES, max_buffer_bytes: BYTES} (pw_limits; a count or
 * size may be `off`: no limit), and the store's (parse_shm_limits). */
static int parse_limits(ydoc *d, yaml_node_t *map, fixture *f, char *err, size_t errlen) {
    static const char *const keys[] = {
        "max_callouts",      "brake_traps",   "brake_window",  "brake_backoff",
        "brake_max_backoff", "max_map_pairs", "max_map_bytes", "max_buffer_bytes",
        "shm_quota",         "shm_eviction",  NULL};
    pw_limits *l = &f->limits;
    if (map->type != YAML_MAPPING_NODE)
        return yerr(d, map, err, errlen, "limits: expected a mapping (%s, ...)", keys[0]);
    if (ycheck_keys(d, map, keys, "limits", err, errlen))
        return -1;
    uint32_t *field[] = {&l->max_callouts,     &l->brake_traps,          &l->brake_window_ms,
                         &l->brake_backoff_ms, &l->brake_max_backoff_ms, &l->max_map_pairs,
                         &l->max_map_bytes,    &l->max_buffer_bytes};
    if (parse_shm_limits(d, map, f, err, errlen))
        return -1;
    for (int i = 0; i < 8; i++) {
        yaml_node_t *v = ymap_get(d, map, keys[i]);
        const char *s = v ? yscalar(v, NULL) : NULL;
        if (!v)
            continue;
        int count = i < 2 || i > 4; /* else a duration */
        char *end = NULL;
        uint64_t n = 0;
        if (s && count && !strcmp(s, "off"))
            n = UINT32_MAX;
        else if (s && count)
            n = strtoull(s, &end, 10);
        int bad = !s || (count ? (n != UINT32_MAX && (!end || *end || !n || n >= UINT32_MAX))
                               : parse_duration_ms(s, &n) || !n || n >= UINT32_MAX);
        if (bad)
            return yerr(d, v, err, errlen, "limits: %s: expected %s", keys[i],
                        count ? "a positive count or off" : "a duration (500ms, 2s)");
        *field[i] = (uint32_t)n;
    }
    return 0;
}

/* advance: DURATION (of a step or a connection event). */
static int parse_advance(ydoc *d, yaml_node_t *v, uint64_t *ms, char *err, size_t errlen) {
    const char *t = yscalar(v, NULL);
    if (!t || parse_duration_ms(t, ms))
        return yerr(d, v, err, errlen,
                    "advance: expected a duration (2500ms, 2.5s, 1m; a number is ms)");
    return 0;
}

/* connection: a list of events, each a mapping of one key: downstream:
 * BYTES, upstream: BYTES, downstream_close / upstream_close: true |
 * remote | local, advance: DURATION. ~ is no connection (an HTTP
 * exchange). */
static int parse_conn(ydoc *d, yaml_node_t *n, connection *c, arena *a, char *err, size_t errlen) {
    static const char *const keys[] = {"downstream",     "upstream", "downstream_close",
                                       "upstream_close", "advance",  NULL};
    conn_free(c);
    if (ynull(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return yerr(d, n, err, errlen,
                    "connection: expected a list of events ({downstream: BYTES}, {upstream: "
                    "BYTES}, {downstream_close: true}, {upstream_close: true}, {advance: 1s})");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    c->present = 1;
    c->ev = xmalloc((cnt + 1) * sizeof *c->ev);
    memset(c->ev, 0, (cnt + 1) * sizeof *c->ev);
    int closed[2] = {0, 0};
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *it = ynode(d, n->data.sequence.items.start[i]);
        conn_event *e = &c->ev[i];
        if (it->type != YAML_MAPPING_NODE ||
            it->data.mapping.pairs.top - it->data.mapping.pairs.start != 1)
            return yerr(d, it, err, errlen,
                        "connection: each event is a mapping of one key (downstream, upstream, "
                        "downstream_close, upstream_close, advance)");
        if (ycheck_keys(d, it, keys, "a connection event", err, errlen))
            return -1;
        c->n = i + 1;
        e->line = it->start_mark.line + 1;
        yaml_node_t *k = ynode(d, it->data.mapping.pairs.start[0].key);
        yaml_node_t *v = ynode(d, it->data.mapping.pairs.start[0].value);
        const char *key = yscalar(k, NULL);
        if (!strcmp(key, "advance")) {
            e->kind = CONN_ADVANCE;
            if (parse_advance(d, v, &e->advance_ms, err, errlen))
                return -1;
            continue;
        }
        int up = !strncmp(key, "upstream", 8);
        if (closed[up])
            return yerr(d, it, err, errlen, "%s: that side was closed before (line %zu)", key,
                        (size_t)closed[up]);
        if (!strchr(key, '_')) {
            e->kind = up ? CONN_UPSTREAM : CONN_DOWNSTREAM;
            if (!ynull(v) && yvalue_bytes(d, v, a, &e->data, err, errlen))
                return -1;
            if (!e->data.data)
                e->data = (pw_str){"", 0};
            continue;
        }
        e->kind = up ? CONN_UPSTREAM_CLOSE : CONN_DOWNSTREAM_CLOSE;
        const char *t = yscalar(v, NULL);
        if (t && (!strcmp(t, "true") || !strcmp(t, "remote")))
            e->peer = PROXY_PEER_REMOTE;
        else if (t && !strcmp(t, "local"))
            e->peer = PROXY_PEER_LOCAL;
        else
            return yerr(d, v, err, errlen,
                        "%s: expected true (the peer closes it: remote), remote or local (the "
                        "proxy closes it)",
                        key);
        closed[up] = (int)e->line;
    }
    return 0;
}

/* steps: a list of {advance: DURATION} or {request, response, through,
 * repeat} (an exchange), each with an optional name and expect. */
static int parse_steps(fixture *f, ydoc *d, yaml_node_t *n, char *err, size_t errlen) {
    steps_free(f);
    if (ynull(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return yerr(d, n, err, errlen, "steps: expected a list of steps");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    f->steps = xmalloc((cnt + 1) * sizeof *f->steps);
    memset(f->steps, 0, (cnt + 1) * sizeof *f->steps);
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *it = ynode(d, n->data.sequence.items.start[i]), *v;
        step *s = &f->steps[i];
        f->nsteps = i + 1;
        s->repeat = 1;
        if (it->type != YAML_MAPPING_NODE)
            return yerr(d, it, err, errlen,
                        "steps: each step must be a mapping ({advance: 1s} or an exchange)");
        if (ycheck_keys(d, it, step_keys, "a step", err, errlen))
            return -1;
        s->line = it->start_mark.line + 1;
        if ((v = ymap_get(d, it, "name")) && set_text(d, v, &s->name, err, errlen))
            return -1;
        if ((v = ymap_get(d, it, "expect")))
            s->expect = (int)(v - d->doc.nodes.start) + 1;
        if ((v = ymap_get(d, it, "advance"))) {
            static const char *const exchange_only[] = {"request", "response", "through",
                                                        "repeat",  "connection", NULL};
            for (const char *const *k = exchange_only; *k; k++)
                if (ymap_get(d, it, *k))
                    return yerr(d, it, err, errlen, "a step: give advance or %s, not both", *k);
            s->kind = STEP_ADVANCE;
            if (parse_advance(d, v, &s->advance_ms, err, errlen))
                return -1;
            continue;
        }
        s->kind = STEP_EXCHANGE;
        if ((v = ymap_get(d, it, "request"))) {
            s->has_req = 1;
            if (parse_side(d, v, &s->req, &f->mem, "request", err, errlen))
                return -1;
        }
        if ((v = ymap_get(d, it, "response"))) {
            s->has_resp = 1;
            if (parse_side(d, v, &s->resp, &f->mem, "response", err, errlen))
                return -1;
        }
        if ((v = ymap_get(d, it, "connection"))) {
            if (s->has_req || s->has_resp)
                return yerr(d, v, err, errlen,
                            "a step: give connection or request/response, not both");
            s->has_conn = 1;
            if (parse_conn(d, v, &s->conn, &f->mem, err, errlen))
                return -1;
        }
        if ((v = ymap_get(d, it, "through")) && set_text(d, v, &s->through, err, errlen))
            return -1;
        if ((v = ymap_get(d, it, "repeat"))) {
            uint64_t r;
            if (yuint(d, v, &r, err, errlen))
                return -1;
            if (r < 1 || r > 100000)
                return yerr(d, v, err, errlen, "repeat: expected 1 to 100000 exchanges");
            s->repeat = (uint32_t)r;
        }
    }
    return 0;
}

/* A match field of a callout: text, or NULL when absent. */
static int callout_text(ydoc *d, yaml_node_t *it, const char *key, arena *a, char **out,
                        char *err, size_t errlen) {
    yaml_node_t *v = ymap_get(d, it, key);
    *out = NULL;
    if (!v)
        return 0;
    const char *s = yscalar(v, NULL);
    if (!s || ynull(v))
        return yerr(d, v, err, errlen, "%s: expected a string", key);
    *out = arena_strdup(a, s);
    return 0;
}

/* One item of `callouts:`. */
static int parse_callout(fixture *f, ydoc *d, yaml_node_t *it, callout_spec *c, char *err,
                         size_t errlen) {
    static const char *const http_only[] = {"path", "status", "headers", "body", "trailers", NULL};
    static const char *const grpc_only[] = {"service",      "initial_metadata",
                                            "messages",     "trailing_metadata",
                                            "grpc_status",  "grpc_message",
                                            NULL};
    arena *a = &f->mem;
    yaml_node_t *v;
    if (it->type != YAML_MAPPING_NODE)
        return yerr(d, it, err, errlen,
                    "callouts: each item must be a mapping ({upstream: NAME, status: 200, ...})");
    if (ycheck_keys(d, it, callout_keys, "a callout", err, errlen))
        return -1;
    c->line = it->start_mark.line + 1;
    c->times = 1;
    c->kind = CO_HTTP;
    for (const char *const *k = grpc_only; *k; k++)
        if (ymap_get(d, it, *k))
            c->kind = CO_GRPC;
    if ((v = ymap_get(d, it, "kind"))) {
        const char *s = yscalar(v, NULL);
        if (!s || (strcmp(s, "http") && strcmp(s, "grpc")))
            return yerr(d, v, err, errlen, "kind: expected http or grpc");
        c->kind = strcmp(s, "http") ? CO_GRPC : CO_HTTP;
    }
    const char *const *other = c->kind == CO_GRPC ? http_only : grpc_only;
    for (; *other; other++)
        if ((v = ymap_get(d, it, *other)))
            return yerr(d, v, err, errlen, "%s: not a key of %s callouts", *other,
                        c->kind == CO_GRPC ? "gRPC" : "HTTP");
    if (callout_text(d, it, "upstream", a, &c->upstream, err, errlen) ||
        callout_text(d, it, "method", a, &c->method, err, errlen) ||
        callout_text(d, it, "path", a, &c->path, err, errlen) ||
        callout_text(d, it, "service", a, &c->service, err, errlen) ||
        callout_text(d, it, "fail", a, &c->fail, err, errlen))
        return -1;
    if ((v = ymap_get(d, it, "times"))) {
        uint64_t n;
        if (yuint(d, v, &n, err, errlen))
            return -1;
        if (n < 1 || n > 1000000)
            return yerr(d, v, err, errlen, "times: expected 1 to 1000000 calls");
        c->times = (uint32_t)n;
    }
    if ((v = ymap_get(d, it, "delay"))) {
        const char *t = yscalar(v, NULL);
        if (!t || parse_duration_ms(t, &c->delay_ms))
            return yerr(d, v, err, errlen,
                        "delay: expected a duration (250ms, 1.5s; a number is ms)");
    }
    if ((v = ymap_get(d, it, "expect")))
        c->expect = (int)(v - d->doc.nodes.start) + 1;
    if (c->kind == CO_HTTP) {
        const char *status = "200";
        if ((v = ymap_get(d, it, "status")) && !(status = yscalar(v, NULL)))
            return yerr(d, v, err, errlen, "status: expected an HTTP status");
        hlist_add(&c->headers, a, (pw_str){":status", 7}, (pw_str){status, strlen(status)});
        if ((v = ymap_get(d, it, "headers"))) {
            hlist h = {0};
            int rc = fixture_parse_map(d, v, &h, a, "headers", err, errlen);
            for (size_t i = 0; i < h.n; i++)
                hlist_add(&c->headers, a, h.kv[i].key, h.kv[i].value);
            hlist_free(&h);
            if (rc)
                return -1;
        }
        if ((v = ymap_get(d, it, "body")) && !ynull(v) &&
            yvalue_bytes(d, v, a, &c->body, err, errlen))
            return -1;
        if ((v = ymap_get(d, it, "trailers"))) {
            c->has_trailers = 1;
            if (fixture_parse_map(d, v, &c->trailers, a, "trailers", err, errlen))
                return -1;
        }
        return 0;
    }
    if ((v = ymap_get(d, it, "initial_metadata"))) {
        c->has_initial = 1;
        if (fixture_parse_map(d, v, &c->initial, a, "initial_metadata", err, errlen))
            return -1;
    }
    if ((v = ymap_get(d, it, "trailing_metadata"))) {
        c->has_trailing = 1;
        if (fixture_parse_map(d, v, &c->trailing, a, "trailing_metadata", err, errlen))
            return -1;
    }
    if ((v = ymap_get(d, it, "messages")) && !ynull(v)) {
        side tmp = {0};
        if (parse_body(d, v, &tmp, a, err, errlen)) {
            free(tmp.chunks);
            return -1;
        }
        c->messages = tmp.chunks;
        c->nmessages = tmp.nchunks;
    }
    if ((v = ymap_get(d, it, "grpc_status"))) {
        uint64_t n;
        if (yuint(d, v, &n, err, errlen))
            return -1;
        if (n > 16)
            return yerr(d, v, err, errlen, "grpc_status: expected 0 to 16");
        c->grpc_status = (uint32_t)n;
    }
    if ((v = ymap_get(d, it, "grpc_message")) && !ynull(v) &&
        yvalue_bytes(d, v, a, &c->grpc_message, err, errlen))
        return -1;
    return 0;
}

static int parse_callouts(fixture *f, ydoc *d, yaml_node_t *n, char *err, size_t errlen) {
    callouts_free(f);
    if (ynull(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE)
        return yerr(d, n, err, errlen, "callouts: expected a list of expected calls");
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    f->callouts = xmalloc((cnt + 1) * sizeof *f->callouts);
    memset(f->callouts, 0, (cnt + 1) * sizeof *f->callouts);
    for (size_t i = 0; i < cnt; i++) {
        f->ncallouts = i + 1;
        if (parse_callout(f, d, ynode(d, n->data.sequence.items.start[i]), &f->callouts[i], err,
                          errlen))
            return -1;
    }
    return 0;
}

int fixture_parse(fixture *f, ydoc *d, yaml_node_t *map, int plugin_keys, char *err,
                  size_t errlen) {
    yaml_node_t *v;
    if ((v = ymap_get(d, map, "callouts")) && parse_callouts(f, d, v, err, errlen))
        return -1;
    if ((v = ymap_get(d, map, "request")) &&
        parse_side(d, v, &f->req, &f->mem, "request", err, errlen))
        return -1;
    if ((v = ymap_get(d, map, "response")) &&
        parse_side(d, v, &f->resp, &f->mem, "response", err, errlen))
        return -1;
    if ((v = ymap_get(d, map, "connection"))) {
        if (ymap_get(d, map, "request") || ymap_get(d, map, "response"))
            return yerr(d, v, err, errlen, "give connection or request/response, not both");
        if (parse_conn(d, v, &f->conn, &f->mem, err, errlen))
            return -1;
    } else if (ymap_get(d, map, "request") || ymap_get(d, map, "response")) {
        conn_free(&f->conn); /* a test's HTTP exchange over its file's connection */
    }
    if ((v = ymap_get(d, map, "properties")) && !ynull(v)) {
        buf prefix = {0};
        buf_puts(&prefix, "");
        int rc = parse_props(d, v, &f->props, &f->mem, &prefix, err, errlen);
        buf_free(&prefix);
        if (rc)
            return -1;
    }
    if ((v = ymap_get(d, map, "clock"))) {
        if (parse_clock(d, v, &f->clock_ns, err, errlen))
            return -1;
        f->has_clock = 1;
    }
    if ((v = ymap_get(d, map, "log_level"))) {
        const char *s = yscalar(v, NULL);
        if (!s || (f->log_level = log_level_parse(s)) < 0)
            return yerr(d, v, err, errlen,
                        "log_level: expected trace, debug, info, warn, error or critical");
    }
    if ((v = ymap_get(d, map, "steps")) && parse_steps(f, d, v, err, errlen))
        return -1;
    if ((v = ymap_get(d, map, "limits")) && parse_limits(d, v, f, err, errlen))
        return -1;
    if (!plugin_keys)
        return 0;
    if ((v = ymap_get(d, map, "plugins"))) {
        plugins_free(f);
        if (!ynull(v) && v->type != YAML_SEQUENCE_NODE)
            return yerr(d, v, err, errlen, "plugins: expected a list of plugins");
        size_t n =
            ynull(v) ? 0 : (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        f->plugins = xmalloc((n + 1) * sizeof *f->plugins);
        memset(f->plugins, 0, (n + 1) * sizeof *f->plugins);
        for (size_t i = 0; i < n; i++) {
            yaml_node_t *it = ynode(d, v->data.sequence.items.start[i]);
            f->nplugins = i + 1;
            if (it->type != YAML_MAPPING_NODE)
                return yerr(d, it, err, errlen, "plugins: each item must be a mapping");
            if (ycheck_keys(d, it, plugin_item_keys, "plugins", err, errlen) ||
                parse_spec(d, it, &f->plugins[i], err, errlen))
                return -1;
        }
    }
    return parse_spec(d, map, &f->plugin, err, errlen);
}

/* The plugin keys of a mapping into p (absent keys leave p as it was). */
static int parse_spec(ydoc *d, yaml_node_t *map, plugin_spec *p, char *err, size_t errlen) {
    yaml_node_t *v;
    if ((v = ymap_get(d, map, "plugin"))) {
        const char *s = yscalar(v, NULL);
        if (!s || ynull(v))
            return yerr(d, v, err, errlen, "plugin: expected the path of a .wasm file");
        free(p->path);
        p->path = ypath(d, s);
    }
    if ((v = ymap_get(d, map, "plugin_name")) && set_text(d, v, &p->name, err, errlen))
        return -1;
    if ((v = ymap_get(d, map, "root_id")) && set_text(d, v, &p->root_id, err, errlen))
        return -1;
    if ((v = ymap_get(d, map, "vm_id")) && set_text(d, v, &p->vm_id, err, errlen))
        return -1;
    if ((v = ymap_get(d, map, "capabilities"))) {
        char cerr[256];
        uint32_t allowed;
        if (set_text(d, v, &p->capabilities, err, errlen))
            return -1;
        if (pw_capability_parse(p->capabilities, strlen(p->capabilities), &allowed, cerr,
                                sizeof cerr) != PW_OK)
            return yerr(d, v, err, errlen, "capabilities: %s", cerr);
    }
    if ((v = ymap_get(d, map, "worker"))) {
        uint64_t w;
        if (yuint(d, v, &w, err, errlen))
            return -1;
        if (w > 63)
            return yerr(d, v, err, errlen, "worker: expected 0 to 63");
        p->worker = (uint32_t)w;
    }
    if (parse_config(d, map, "config", &p->config, &p->config_len, &p->has_config, err, errlen))
        return -1;
    if (parse_config(d, map, "vm_config", &p->vm_config, &p->vm_config_len, &p->has_vm_config, err,
                     errlen))
        return -1;
    return 0;
}

/* Puts the missing pseudo-headers first, in the order given. */
static void add_pseudo(hlist *h, arena *a, const char *const *kv) {
    hlist missing = {0};
    for (; kv[0]; kv += 2)
        if (!hlist_get(h, kv[0], strlen(kv[0])))
            hlist_add(&missing, a, (pw_str){kv[0], strlen(kv[0])}, (pw_str){kv[1], strlen(kv[1])});
    if (!missing.n) {
        hlist_free(&missing);
        return;
    }
    for (size_t i = 0; i < h->n; i++)
        hlist_add(&missing, a, h->kv[i].key, h->kv[i].value);
    hlist_free(h);
    *h = missing;
}

void fixture_finish(fixture *f) {
    static const char *const req[] = {":method",   "GET",     ":path", "/", ":authority",
                                      "localhost", ":scheme", "http",  NULL};
    static const char *const resp[] = {":status", "200", NULL};
    add_pseudo(&f->req.headers, &f->mem, req);
    f->resp.present = 1;
    add_pseudo(&f->resp.headers, &f->mem, resp);
}
