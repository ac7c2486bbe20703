/*
 * redis_guard: a network (TCP) filter in front of Redis that refuses the
 * commands of a deny list. It parses the client's RESP incrementally
 * (arrays of bulk strings "*N\r\n$len\r\narg\r\n..." and inline commands
 * "PING\r\n", split across segments at any byte, several per segment), and
 * for a denied command the client gets
 *
 *   -ERR command 'flushall' is not allowed by redis_guard\r\n
 *
 * in the place of that command's reply, in order with the replies of the
 * pipelined commands around it; the connection stays usable.
 *
 * How the order is kept: the denied command's bytes are replaced by
 * "*1\r\n$4\r\nPING\r\n" on the way up, so Redis answers it in its place;
 * the filter counts Redis's replies (RESP2 and RESP3) and replaces the
 * reply of that PING by the error. The error therefore reaches the client
 * even when nothing else is in flight.
 *
 * Plugin configuration, a JSON object (every key optional):
 *
 *   {"deny": ["FLUSHALL", "CONFIG SET"],   commands (case-insensitive), or
 *                                          "COMMAND SUBCOMMAND"; default
 *                                          FLUSHALL FLUSHDB CONFIG SHUTDOWN DEBUG
 *    "max_command_bytes": 1048576,         bytes held for one command; over
 *                                          it the connection is closed
 *    "on_malformed": "close"}              or "forward": stop inspecting
 *                                          the connection (insecure)
 */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

#include "../json_lite.h"

#define ARG_MAX 64                   /* bytes of a command or subcommand kept */
#define INLINE_MAX (64 * 1024)       /* Redis's PROTO_INLINE_MAX_SIZE */
#define BULK_MAX (512u * 1024 * 1024) /* Redis's default proto-max-bulk-len */
#define DEPTH_MAX 4096               /* nesting of replies */
#define NONE UINT64_MAX

static const char PING[] = "*1\r\n$4\r\nPING\r\n";

typedef struct {
    char cmd[ARG_MAX + 1], sub[ARG_MAX + 1]; /* upper case; sub "" for any */
    char label[2 * ARG_MAX + 2];             /* lower case, for the error */
} deny_t;

static struct {
    deny_t *deny;
    size_t ndeny;
    uint64_t max_command_bytes;
    int forward_malformed;
} cfg;

/* ------------------------------------------------------------ state */

enum { C_START, C_COUNT, C_COUNT_LF, C_DOLLAR, C_LEN, C_LEN_LF, C_DATA, C_DATA_CR, C_DATA_LF,
       C_INLINE };
enum { R_TYPE, R_LINE, R_LINE_LF, R_LEN, R_LEN_LF, R_BULK, R_BULK_CR, R_BULK_LF };
enum { TOP_REPLY, TOP_ATTRIBUTE, TOP_PUSH };

typedef struct {
    uint64_t index;     /* of the reply to replace */
    const deny_t *deny; /* what was denied */
} pending_t;

typedef struct {
    uint32_t start, len;
    const deny_t *deny; /* NULL: drop; else the error for it */
} edit_t;

typedef struct {
    /* client -> Redis */
    int cstate, neg, ndigits;
    uint64_t num, nargs, argi, left;
    char arg[2][ARG_MAX + 1];
    size_t arglen[2];
    char *line; /* an inline command so far */
    size_t line_len, line_cap;
    uint32_t held;      /* bytes at the front of the buffer already parsed */
    uint32_t cmd_start; /* where the command being parsed starts */
    uint32_t done;      /* end of the last complete command */
    char *carry;        /* an incomplete command kept while earlier ones went on */
    size_t carry_len;
    edit_t *denied; /* denied commands in the buffer: replaced by PING */
    size_t ndenied, denied_cap;
    uint64_t sent;           /* commands with a reply, parsed so far */
    uint64_t untracked_from; /* first command after which replies are not counted */
    int passthrough;
    const char *why; /* of a malformed command */
    /* Redis -> client */
    int rstate, rneg, rndigits, top, dropping, in_drop;
    char rtype;
    uint64_t rnum, rleft, replied;
    uint64_t *stack;
    size_t depth, stack_cap;
    pending_t *pend;
    size_t pend_head, npend, pend_cap;
} conn_t;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return 1;
    size_t n = *cap ? *cap * 2 : 8;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return 0;
    *p = q;
    *cap = n;
    return 1;
}

static char upper(char c) {
    return c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
}

/* s[0, len) equals the upper-case word w, ignoring case. */
static int word_is(const char *s, size_t len, const char *w) {
    if (len != strlen(w))
        return 0;
    for (size_t i = 0; i < len; i++)
        if (upper(s[i]) != w[i])
            return 0;
    return 1;
}

/* ------------------------------------------------ commands from the client */

/* The reason a command is malformed; -1 for the parser. */
static int malformed(conn_t *c, const char *why) {
    c->why = why;
    return -1;
}

static void keep_arg(conn_t *c, const char *d, size_t n) {
    if (c->argi > 1)
        return;
    size_t *len = &c->arglen[c->argi];
    for (size_t i = 0; i < n && *len <= ARG_MAX; i++)
        c->arg[c->argi][(*len)++] = d[i]; /* ARG_MAX + 1 bytes: too long to match */
}

/* Redis's sdssplitargs on an inline command (NUL-free), keeping the first two
 * arguments: the argument count, or -1 for unbalanced quotes. */
static int split_inline(conn_t *c, const char *p, const char *end) {
    int argc = 0;
    c->arglen[0] = c->arglen[1] = 0;
    for (;;) {
        while (p < end && (*p == ' ' || (*p >= '\t' && *p <= '\r')))
            p++;
        if (p == end)
            return argc;
        c->argi = (uint64_t)argc;
        int inq = 0, insq = 0;
        for (int done = 0; !done;) {
            char ch = p < end ? *p : 0, next = p + 1 < end ? p[1] : 0, out;
            int isspace_next = next == ' ' || (next >= '\t' && next <= '\r');
            if (inq) {
                if (ch == '\\' && next == 'x' && p + 3 < end && strchr("0123456789abcdefABCDEF", p[2]) &&
                    strchr("0123456789abcdefABCDEF", p[3])) {
                    char h[3] = {p[2], p[3], 0};
                    out = (char)strtol(h, NULL, 16);
                    keep_arg(c, &out, 1);
                    p += 3;
                } else if (ch == '\\' && next) {
                    p++;
                    out = next == 'n' ? '\n' : next == 'r' ? '\r' : next == 't' ? '\t'
                        : next == 'b' ? '\b' : next == 'a' ? '\a' : next;
                    keep_arg(c, &out, 1);
                } else if (ch == '"') {
                    if (next && !isspace_next)
                        return -1;
                    done = 1;
                } else if (!ch) {
                    return -1;
                } else {
                    keep_arg(c, &ch, 1);
                }
            } else if (insq) {
                if (ch == '\\' && next == '\'') {
                    p++;
                    keep_arg(c, "'", 1);
                } else if (ch == '\'') {
                    if (next && !isspace_next)
                        return -1;
                    done = 1;
                } else if (!ch) {
                    return -1;
                } else {
                    keep_arg(c, &ch, 1);
                }
            } else if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t' || !ch) {
                done = 1;
            } else if (ch == '"') {
                inq = 1;
            } else if (ch == '\'') {
                insq = 1;
            } else {
                keep_arg(c, &ch, 1);
            }
            if (p < end)
                p++;
        }
        argc++;
    }
}

static int is_denied(const deny_t *d, conn_t *c) {
    if (!word_is(c->arg[0], c->arglen[0], d->cmd))
        return 0;
    return !d->sub[0] || (c->nargs > 1 && word_is(c->arg[1], c->arglen[1], d->sub));
}

/* After these, replies no longer answer commands one for one. */
static int stops_counting(conn_t *c) {
    static const char *const cmds[] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR",
                                       "SYNC",      "PSYNC"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (word_is(c->arg[0], c->arglen[0], cmds[i]))
            return 1;
    return word_is(c->arg[0], c->arglen[0], "CLIENT") && c->nargs > 1 &&
           word_is(c->arg[1], c->arglen[1], "REPLY");
}

/* A command ended at `end`: 0, or -2 to close the connection. */
static int command_done(uint32_t ctx, conn_t *c, uint32_t end) {
    c->cstate = C_START;
    uint32_t start = c->cmd_start;
    c->cmd_start = c->done = end;
    if (end - start > cfg.max_command_bytes) {
        pw_logf(PROXY_LOG_WARN,
                "redis_guard: context %u: a command over max_command_bytes (%llu): closing the "
                "connection",
                ctx, (unsigned long long)cfg.max_command_bytes);
        return -2;
    }
    if (!c->nargs) /* "*0", "*-1", a blank line: Redis answers nothing */
        return 0;
    for (size_t i = 0; i < cfg.ndeny; i++) {
        const deny_t *d = &cfg.deny[i];
        if (!is_denied(d, c))
            continue;
        if (c->untracked_from != NONE) {
            pw_logf(PROXY_LOG_WARN,
                    "redis_guard: context %u: denied '%s' after SUBSCRIBE, MONITOR or CLIENT "
                    "REPLY (replies no longer counted): closing the connection",
                    ctx, d->label);
            return -2;
        }
        if (!grow((void **)&c->denied, &c->denied_cap, c->ndenied + 1, sizeof(edit_t)) ||
            !grow((void **)&c->pend, &c->pend_cap, c->npend + 1, sizeof(pending_t)))
            return -2;
        c->denied[c->ndenied++] = (edit_t){start, end - start, d};
        c->pend[c->npend++] = (pending_t){c->sent++, d};
        pw_logf(PROXY_LOG_INFO, "redis_guard: context %u: denied '%s'", ctx, d->label);
        return 0;
    }
    if (c->untracked_from == NONE && stops_counting(c)) {
        c->untracked_from = c->sent;
        pw_logf(PROXY_LOG_DEBUG, "redis_guard: context %u: %.*s: replies no longer counted", ctx,
                (int)c->arglen[0], c->arg[0]);
    }
    c->sent++;
    return 0;
}

/* Feeds d[0, n) (at offset `base` of the buffer) to the command parser: 0,
 * -1 malformed (c->why), -2 close. */
static int feed_commands(uint32_t ctx, conn_t *c, const char *d, size_t n, uint32_t base) {
    for (size_t i = 0; i < n;) {
        char ch = d[i];
        switch (c->cstate) {
        case C_START:
            c->cmd_start = base + (uint32_t)i;
            c->arglen[0] = c->arglen[1] = 0;
            c->nargs = c->argi = c->num = 0;
            c->neg = c->ndigits = 0;
            c->line_len = 0;
            c->cstate = ch == '*' ? C_COUNT : C_INLINE;
            i += ch == '*';
            break;
        case C_COUNT:
        case C_LEN:
            i++;
            if (ch == '\r') {
                if (!c->ndigits)
                    return malformed(c, "a length without digits");
                c->cstate++;
            } else if (ch == '-' && c->cstate == C_COUNT && !c->neg && !c->ndigits) {
                c->neg = 1;
            } else if (ch >= '0' && ch <= '9' && c->ndigits < 10) {
                c->num = c->num * 10 + (uint64_t)(ch - '0');
                c->ndigits++;
            } else {
                return malformed(c, "a bad length");
            }
            break;
        case C_COUNT_LF:
            if (ch != '\n')
                return malformed(c, "expected \\n after the argument count");
            i++;
            if (c->neg || !c->num) {
                c->nargs = 0;
                if (command_done(ctx, c, base + (uint32_t)i))
                    return -2;
            } else if (c->num > INT32_MAX) {
                return malformed(c, "too many arguments");
            } else {
                c->nargs = c->num;
                c->cstate = C_DOLLAR;
            }
            break;
        case C_DOLLAR:
            if (ch != '$')
                return malformed(c, "expected '$'");
            i++;
            c->num = 0;
            c->ndigits = c->neg = 0;
            c->cstate = C_LEN;
            break;
        case C_LEN_LF:
            if (ch != '\n')
                return malformed(c, "expected \\n after a bulk length");
            if (c->num > BULK_MAX)
                return malformed(c, "a bulk string over 512 MiB");
            i++;
            c->left = c->num;
            c->cstate = C_DATA;
            break;
        case C_DATA: {
            size_t take = n - i < c->left ? n - i : (size_t)c->left;
            keep_arg(c, d + i, take);
            i += take;
            c->left -= take;
            if (!c->left)
                c->cstate = C_DATA_CR;
            break;
        }
        case C_DATA_CR:
            if (ch != '\r')
                return malformed(c, "expected \\r\\n after a bulk string");
            i++;
            c->cstate = C_DATA_LF;
            break;
        case C_DATA_LF:
            if (ch != '\n')
                return malformed(c, "expected \\r\\n after a bulk string");
            i++;
            if (++c->argi < c->nargs)
                c->cstate = C_DOLLAR;
            else if (command_done(ctx, c, base + (uint32_t)i))
                return -2;
            break;
        case C_INLINE: {
            const char *nl = memchr(d + i, '\n', n - i);
            size_t take = nl ? (size_t)(nl - (d + i)) : n - i;
            if (memchr(d + i, 0, take))
                return malformed(c, "a NUL byte in an inline command");
            if (c->line_len + take > INLINE_MAX)
                return malformed(c, "an inline command over 64 KiB");
            if (!grow((void **)&c->line, &c->line_cap, c->line_len + take + 1, 1))
                return -2;
            memcpy(c->line + c->line_len, d + i, take);
            c->line_len += take;
            i += take;
            if (!nl)
                break;
            i++;
            int argc = split_inline(c, c->line, c->line + c->line_len);
            if (argc < 0)
                return malformed(c, "unbalanced quotes in an inline command");
            c->nargs = (uint64_t)argc;
            if (command_done(ctx, c, base + (uint32_t)i))
                return -2;
            break;
        }
        }
    }
    return 0;
}

/* Ends the connection; the bytes held on that side are not forwarded. */
static void close_connection(proxy_stream_type_t side) {
    pw_replace_buffer(side == PROXY_STREAM_DOWNSTREAM ? PROXY_BUFFER_DOWNSTREAM_DATA
                                                      : PROXY_BUFFER_UPSTREAM_DATA,
                      NULL, 0);
    pw_close_stream(side);
}

static proxy_action_t on_downstream_data(uint32_t ctx, size_t size, int eos) {
    conn_t *c = pw_get_context_data(ctx);
    if (!c || c->passthrough)
        return PROXY_ACTION_CONTINUE;
    if (c->carry_len) {
        /* the incomplete command kept last time goes back in front */
        pw_prepend_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, c->carry, c->carry_len);
        size += c->carry_len;
        c->held = (uint32_t)c->carry_len;
        free(c->carry);
        c->carry = NULL;
        c->carry_len = 0;
    }
    if (size > c->held) {
        char *d = NULL;
        size_t n = 0;
        if (pw_get_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, c->held, (uint32_t)(size - c->held), &d,
                          &n) != PROXY_RESULT_OK) {
            pw_logf(PROXY_LOG_ERROR, "redis_guard: context %u: cannot read the data", ctx);
            close_connection(PROXY_STREAM_DOWNSTREAM);
            return PROXY_ACTION_CONTINUE;
        }
        int rc = feed_commands(ctx, c, d, n, c->held);
        free(d);
        if (rc == -2) {
            close_connection(PROXY_STREAM_DOWNSTREAM);
            return PROXY_ACTION_CONTINUE;
        }
        if (rc == -1) {
            pw_logf(PROXY_LOG_WARN, "redis_guard: context %u: malformed RESP from the client (%s)%s",
                    ctx, c->why,
                    cfg.forward_malformed ? ": forwarding the rest uninspected"
                                          : ": closing the connection");
            if (!cfg.forward_malformed) {
                close_connection(PROXY_STREAM_DOWNSTREAM);
                return PROXY_ACTION_CONTINUE;
            }
            c->passthrough = 1;
            if (c->untracked_from == NONE)
                c->untracked_from = c->sent;
        }
    }
    c->held = (uint32_t)size;
    if (!c->passthrough && size - c->done > cfg.max_command_bytes) {
        pw_logf(PROXY_LOG_WARN,
                "redis_guard: context %u: a command over max_command_bytes (%llu): closing the "
                "connection",
                ctx, (unsigned long long)cfg.max_command_bytes);
        close_connection(PROXY_STREAM_DOWNSTREAM);
        return PROXY_ACTION_CONTINUE;
    }
    if (!c->done && size && !eos && !c->passthrough)
        return PROXY_ACTION_PAUSE; /* no complete command yet: hold it all */
    /* Forward the complete commands; keep the incomplete one, if any. */
    size_t keep = eos || c->passthrough ? 0 : size - c->done;
    if (keep) {
        pw_get_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, c->done, (uint32_t)keep, &c->carry,
                      &c->carry_len);
        pw_set_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, c->done, PW_BUFFER_END, NULL, 0);
    }
    while (c->ndenied) {
        edit_t *e = &c->denied[--c->ndenied];
        pw_set_buffer(PROXY_BUFFER_DOWNSTREAM_DATA, e->start, e->len, PING, sizeof PING - 1);
    }
    c->held = c->done = c->cmd_start = 0;
    return PROXY_ACTION_CONTINUE;
}

/* --------------------------------------------------- replies from Redis */

static int push_edit(edit_t **v, size_t *n, size_t *cap, edit_t e) {
    if (!grow((void **)v, cap, *n + 1, sizeof **v))
        return 0;
    (*v)[(*n)++] = e;
    return 1;
}

/* A value ended: 1 if it completed a top-level item. */
static int value_done(conn_t *c) {
    while (c->depth) {
        if (--c->stack[c->depth - 1])
            return 0;
        c->depth--;
    }
    return 1;
}

/* Feeds d[0, n) to the reply parser, collecting edits: 0, or -1 on a
 * protocol error (c->why). */
static int feed_replies(conn_t *c, const char *d, size_t n, edit_t **edits, size_t *nedits,
                        size_t *cap) {
    uint32_t drop_from = 0;
    for (size_t i = 0; i < n;) {
        char ch = d[i];
        int ended = 0;
        switch (c->rstate) {
        case R_TYPE:
            if (!c->depth) {
                if (c->untracked_from != NONE && c->replied >= c->untracked_from) {
                    c->rstate = -1; /* from here on nothing is counted */
                    i = n;
                    continue;
                }
                c->top = ch == '|' ? TOP_ATTRIBUTE : ch == '>' ? TOP_PUSH : TOP_REPLY;
                c->dropping = c->top != TOP_PUSH && c->npend &&
                              c->pend[c->pend_head].index == c->replied;
                if (c->dropping && !c->in_drop) {
                    c->in_drop = 1;
                    drop_from = (uint32_t)i;
                }
            }
            c->rtype = ch;
            c->rnum = 0;
            c->rneg = c->rndigits = 0;
            if (strchr("+-:_,#(", ch))
                c->rstate = R_LINE;
            else if (strchr("$!=*~>%|", ch))
                c->rstate = R_LEN;
            else
                return malformed(c, "an unknown reply type");
            i++;
            break;
        case R_LINE: {
            const char *cr = memchr(d + i, '\r', n - i);
            i = cr ? (size_t)(cr - d) + 1 : n;
            if (cr)
                c->rstate = R_LINE_LF;
            break;
        }
        case R_LINE_LF:
        case R_LEN_LF:
        case R_BULK_LF:
            if (ch != '\n')
                return malformed(c, "expected \\n");
            i++;
            if (c->rstate == R_LEN_LF && strchr("$!=", c->rtype) && !c->rneg) {
                c->rleft = c->rnum;
                c->rstate = R_BULK;
            } else if (c->rstate == R_LEN_LF && !strchr("$!=", c->rtype) && !c->rneg &&
                       c->rnum) {
                if (c->depth == DEPTH_MAX ||
                    !grow((void **)&c->stack, &c->stack_cap, c->depth + 1, sizeof *c->stack))
                    return malformed(c, "replies nested too deep");
                c->stack[c->depth++] = strchr("%|", c->rtype) ? 2 * c->rnum : c->rnum;
                c->rstate = R_TYPE;
            } else {
                c->rstate = R_TYPE;
                ended = value_done(c);
            }
            break;
        case R_LEN:
            i++;
            if (ch == '\r' && c->rndigits)
                c->rstate = R_LEN_LF;
            else if (ch == '-' && !c->rneg && !c->rndigits)
                c->rneg = 1;
            else if (ch >= '0' && ch <= '9' && c->rndigits < 12)
                c->rnum = c->rnum * 10 + (uint64_t)(ch - '0'), c->rndigits++;
            else
                return malformed(c, "a bad length (streamed RESP3 is not supported)");
            break;
        case R_BULK: {
            size_t take = n - i < c->rleft ? n - i : (size_t)c->rleft;
            i += take;
            c->rleft -= take;
            if (!c->rleft)
                c->rstate = R_BULK_CR;
            break;
        }
        case R_BULK_CR:
            if (ch != '\r')
                return malformed(c, "expected \\r\\n after a bulk string");
            i++;
            c->rstate = R_BULK_LF;
            break;
        }
        if (!ended || c->top != TOP_REPLY)
            continue;
        if (c->dropping) {
            const pending_t *p = &c->pend[c->pend_head++];
            if (!push_edit(edits, nedits, cap, (edit_t){drop_from, (uint32_t)i - drop_from, p->deny}))
                return malformed(c, "out of memory");
            if (--c->npend == 0)
                c->pend_head = 0;
            else if (c->pend_head > 64 && c->pend_head * 2 > c->npend) {
                memmove(c->pend, c->pend + c->pend_head, c->npend * sizeof *c->pend);
                c->pend_head = 0;
            }
            c->dropping = c->in_drop = 0;
        }
        c->replied++;
    }
    if (c->in_drop) { /* the reply goes on in the next chunk */
        if (!push_edit(edits, nedits, cap, (edit_t){drop_from, (uint32_t)n - drop_from, NULL}))
            return malformed(c, "out of memory");
    }
    return 0;
}

static proxy_action_t on_upstream_data(uint32_t ctx, size_t size, int eos) {
    (void)eos;
    conn_t *c = pw_get_context_data(ctx);
    if (!c || c->rstate < 0 || !size)
        return PROXY_ACTION_CONTINUE;
    char *d = NULL;
    size_t n = 0;
    edit_t *edits = NULL;
    size_t nedits = 0, cap = 0;
    pw_get_buffer(PROXY_BUFFER_UPSTREAM_DATA, 0, (uint32_t)size, &d, &n);
    int rc = feed_replies(c, d, n, &edits, &nedits, &cap);
    free(d);
    if (rc) {
        free(edits);
        pw_logf(PROXY_LOG_WARN,
                "redis_guard: context %u: malformed reply from Redis (%s): closing the "
                "connection",
                ctx, c->why);
        close_connection(PROXY_STREAM_UPSTREAM);
        return PROXY_ACTION_CONTINUE;
    }
    while (nedits) {
        const edit_t *e = &edits[--nedits];
        char msg[sizeof((deny_t *)0)->label + 64];
        int len = e->deny ? pw_snprintf(msg, sizeof msg,
                                        "-ERR command '%s' is not allowed by redis_guard\r\n",
                                        e->deny->label)
                          : 0;
        pw_set_buffer(PROXY_BUFFER_UPSTREAM_DATA, e->start, e->len, msg, (size_t)len);
    }
    free(edits);
    return PROXY_ACTION_CONTINUE;
}

/* ------------------------------------------------------------ contexts */

static void on_context_create(uint32_t ctx, uint32_t root_id) {
    (void)root_id;
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->untracked_from = NONE;
    pw_set_context_data(ctx, c);
}

static void on_delete(uint32_t ctx) {
    conn_t *c = pw_get_context_data(ctx);
    if (!c)
        return;
    if (c->npend)
        pw_logf(PROXY_LOG_DEBUG, "redis_guard: context %u: %zu errors not delivered", ctx,
                c->npend);
    free(c->line);
    free(c->carry);
    free(c->denied);
    free(c->stack);
    free(c->pend);
    free(c);
    pw_set_context_data(ctx, NULL);
}

/* ------------------------------------------------------- configuration */

/* "CMD" or "CMD SUB" into *d; 0 if it is not that. */
static int deny_entry(deny_t *d, const char *s) {
    memset(d, 0, sizeof *d);
    char *w = d->cmd;
    size_t len = 0, l = 0;
    for (; *s; s++) {
        if (*s == ' ' && w == d->cmd && len) {
            w = d->sub;
            len = 0;
            d->label[l++] = ' ';
            continue;
        }
        if (*s <= ' ' || *s > '~' || *s == '\'' || *s == '"' || len == ARG_MAX)
            return 0;
        w[len++] = upper(*s);
        d->label[l++] = *s >= 'A' && *s <= 'Z' ? (char)(*s + 32) : *s;
    }
    return len > 0;
}

static const char *parse_config(const char *text) {
    jl_t j = jl_start(text);
    for (int first = 1; jl_more(&j, '}', &first);) {
        char *key = jl_key(&j);
        if (!key)
            break;
        if (!strcmp(key, "deny")) {
            cfg.ndeny = 0;
            jl_expect(&j, '[', "deny: expected a list of commands");
            for (int f = 1; jl_more(&j, ']', &f);) {
                char *s = jl_string(&j);
                deny_t *n = s ? realloc(cfg.deny, (cfg.ndeny + 1) * sizeof *n) : NULL;
                if (n)
                    cfg.deny = n;
                if (s && (!n || !deny_entry(&cfg.deny[cfg.ndeny++], s)))
                    jl_fail(&j, "deny: expected \"COMMAND\" or \"COMMAND SUBCOMMAND\"");
                free(s);
            }
        } else if (!strcmp(key, "max_command_bytes")) {
            jl_uint(&j, UINT32_MAX / 2, &cfg.max_command_bytes);
        } else if (!strcmp(key, "on_malformed")) {
            char *s = jl_string(&j);
            if (s && strcmp(s, "close") && strcmp(s, "forward"))
                jl_fail(&j, "on_malformed: expected \"close\" or \"forward\"");
            cfg.forward_malformed = s && !strcmp(s, "forward");
            free(s);
        } else {
            jl_fail(&j, "unknown key");
        }
        free(key);
    }
    jl_end(&j);
    return j.err;
}

static int on_configure(uint32_t root_id, size_t size) {
    static const char *const defaults[] = {"FLUSHALL", "FLUSHDB", "CONFIG", "SHUTDOWN", "DEBUG"};
    char *text = NULL;
    size_t len = 0;
    if (size)
        pw_get_plugin_config(&text, &len);
    free(cfg.deny);
    cfg.deny = malloc(sizeof defaults / sizeof *defaults * sizeof *cfg.deny);
    cfg.ndeny = 0;
    for (size_t i = 0; cfg.deny && i < sizeof defaults / sizeof *defaults; i++)
        deny_entry(&cfg.deny[cfg.ndeny++], defaults[i]);
    cfg.max_command_bytes = 1024 * 1024;
    cfg.forward_malformed = 0;
    const char *why = text && len && strlen(text) == len ? parse_config(text) : NULL;
    if (text && strlen(text) != len)
        why = "a NUL byte in the configuration";
    free(text);
    if (why) {
        pw_logf(PROXY_LOG_ERROR, "redis_guard: bad configuration: %s", why);
        return 0;
    }
    char list[512];
    size_t at = 0;
    list[0] = 0;
    for (size_t i = 0; i < cfg.ndeny && at < sizeof list; i++)
        at += (size_t)pw_snprintf(list + at, sizeof list - at, "%s%s%s%s", i ? ", " : "",
                                  cfg.deny[i].cmd, cfg.deny[i].sub[0] ? " " : "", cfg.deny[i].sub);
    pw_logf(PROXY_LOG_INFO,
            "redis_guard: root %u denies %s (max_command_bytes %llu, on_malformed %s)", root_id,
            cfg.ndeny ? list : "nothing", (unsigned long long)cfg.max_command_bytes,
            cfg.forward_malformed ? "forward" : "close");
    return 1;
}

const pw_plugin_t pw_plugin = {
    .on_configure = on_configure,
    .on_context_create = on_context_create,
    .on_downstream_data = on_downstream_data,
    .on_upstream_data = on_upstream_data,
    .on_delete = on_delete,
};
