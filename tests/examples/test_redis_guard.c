/*
 * test_redis_guard.c -- examples/c/redis_guard through the native fake host
 * (stream_host.c): commands split at every byte and pipelined, denied
 * commands at the start, middle and end with their errors in order among
 * the replies, inline commands with Redis's quoting, RESP3 replies, limits,
 * malformed input and the configuration.
 */
#include <stdlib.h>
#include <string.h>

#include "stream_host.h"

#define L(s) s, sizeof(s) - 1
#define ERR(cmd) "-ERR command '" cmd "' is not allowed by redis_guard\r\n"
#define PINGC "*1\r\n$4\r\nPING\r\n"

/* A Redis stand-in: the replies to the complete commands of s[0, n). */
static void fake_redis(const char *s, size_t n, sh_buf *replies) {
    for (size_t i = 0; i < n;) {
        char args[3][64] = {"", "", ""};
        int argc = 0;
        if (s[i] == '*') {
            int cnt = atoi(s + i + 1);
            i = (size_t)(strchr(s + i, '\n') - s) + 1;
            for (int a = 0; a < cnt; a++) {
                int len = atoi(s + i + 1);
                i = (size_t)(strchr(s + i, '\n') - s) + 1;
                if (a < 3)
                    snprintf(args[a], sizeof args[a], "%.*s", len, s + i);
                i += (size_t)len + 2;
            }
            argc = cnt;
        } else {
            const char *nl = memchr(s + i, '\n', n - i);
            char line[256];
            snprintf(line, sizeof line, "%.*s", (int)(nl - (s + i)), s + i);
            i = (size_t)(nl - s) + 1;
            for (char *tok = strtok(line, " \r"); tok && argc < 3; tok = strtok(NULL, " \r"))
                snprintf(args[argc++], sizeof args[0], "%s", tok);
        }
        if (!argc)
            continue;
        char r[128];
        if (!strcasecmp(args[0], "PING"))
            snprintf(r, sizeof r, "+PONG\r\n");
        else if (!strcasecmp(args[0], "SET"))
            snprintf(r, sizeof r, "+OK\r\n");
        else if (!strcasecmp(args[0], "GET"))
            snprintf(r, sizeof r, "$12\r\nv\r\n+PONG\r\n:1\r\n");
        else if (!strcasecmp(args[0], "ECHO"))
            snprintf(r, sizeof r, "$%zu\r\n%s\r\n", strlen(args[1]), args[1]);
        else if (!strcasecmp(args[0], "LRANGE"))
            snprintf(r, sizeof r, "*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n*0\r\n");
        else if (!strcasecmp(args[0], "HELLO"))
            snprintf(r, sizeof r, "%%2\r\n+proto\r\n:3\r\n+set\r\n~1\r\n,1.5\r\n");
        else
            snprintf(r, sizeof r, "-ERR unknown command '%s'\r\n", args[0]);
        sh_buf_add(replies, r, strlen(r));
    }
}

/* Runs one exchange: the client's bytes in segments of the sizes in
 * `cuts` (0-terminated; the rest in one), Redis's replies to what was
 * forwarded, in segments of `rcut` bytes; checks what Redis got and what
 * the client got. */
static void exchange(const char *in, size_t in_n, const size_t *cuts, size_t rcut,
                     const char *want_up, size_t want_up_n, const char *want_client,
                     size_t want_client_n) {
    sh_conn *c = sh_open();
    size_t at = 0;
    for (const size_t *k = cuts; *k && at < in_n; k++) {
        size_t n = *k < in_n - at ? *k : in_n - at;
        sh_send(c, SH_DOWN, in + at, n, 0);
        at += n;
    }
    if (at < in_n)
        sh_send(c, SH_DOWN, in + at, in_n - at, 0);
    CHECK(!c->closed);
    CHECK_BYTES(c->out[SH_DOWN], want_up, want_up_n);
    sh_buf replies = {0};
    fake_redis(c->out[SH_DOWN].d, c->out[SH_DOWN].n, &replies);
    for (size_t r = 0; r < replies.n; r += rcut)
        sh_send(c, SH_UP, replies.d + r, replies.n - r < rcut ? replies.n - r : rcut, 0);
    CHECK_BYTES(c->out[SH_UP], want_client, want_client_n);
    free(replies.d);
    sh_free(c);
}

static const char BURST[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
                            "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                            "*1\r\n$8\r\nFlushAll\r\n" /* denied, in the middle */
                            "PING\r\n"                 /* inline */
                            "\r\n"                     /* blank: no reply */
                            "*0\r\n"                   /* empty: no reply */
                            "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"
                            "*4\r\n$6\r\nLRANGE\r\n$1\r\nl\r\n$1\r\n0\r\n$2\r\n-1\r\n"
                            "flushdb\r\n"; /* denied, inline, at the end */
static const char BURST_UP[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
                               "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" PINGC "PING\r\n\r\n*0\r\n"
                               "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"
                               "*4\r\n$6\r\nLRANGE\r\n$1\r\nl\r\n$1\r\n0\r\n$2\r\n-1\r\n" PINGC;
static const char BURST_CLIENT[] = "+OK\r\n$12\r\nv\r\n+PONG\r\n:1\r\n" ERR("flushall") "+PONG\r\n"
                                   "$0\r\n\r\n*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n*0\r\n" ERR("flushdb");

static void pipelined_burst_split_everywhere(void) {
    CHECK(sh_configure("") == 1);
    size_t n = sizeof BURST - 1;
    size_t one[] = {0};
    exchange(BURST, n, one, 1 << 20, L(BURST_UP), L(BURST_CLIENT));
    int before = t_failed;
    /* two segments, cut at every byte; replies cut at every byte too */
    for (size_t k = 1; k < n && t_failed == before; k++) {
        size_t cuts[] = {k, 0};
        exchange(BURST, n, cuts, k % 37 + 1, L(BURST_UP), L(BURST_CLIENT));
    }
    /* three segments at every pair of cuts */
    for (size_t a = 1; a < n && t_failed == before; a += 3)
        for (size_t b = 1; a + b < n && t_failed == before; b++) {
            size_t cuts[] = {a, b, 0};
            exchange(BURST, n, cuts, b, L(BURST_UP), L(BURST_CLIENT));
        }
    /* a byte at a time, both ways */
    size_t ones[sizeof BURST];
    for (size_t i = 0; i < n; i++)
        ones[i] = 1;
    ones[n] = 0;
    exchange(BURST, n, ones, 1, L(BURST_UP), L(BURST_CLIENT));
    CHECK(sh_logged("info redis_guard: context"));
    CHECK(sh_logged("denied 'flushall'"));
    CHECK(sh_logged("denied 'flushdb'"));
}

/* Pause holds an incomplete command; complete ones before it go on at once. */
static void holding(void) {
    CHECK(sh_configure("") == 1);
    sh_conn *c = sh_open();
    CHECK(sh_send(c, SH_DOWN, L("*2\r\n$4\r\nECHO\r\n$3\r\nab"), 0) == 1 /* Pause */);
    CHECK(c->out[SH_DOWN].n == 0);
    CHECK(sh_send(c, SH_DOWN, L("c\r\n*1\r\n$4\r\nPI"), 0) == 0);
    CHECK_BYTES(c->out[SH_DOWN], L("*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n"));
    CHECK(sh_send(c, SH_DOWN, L("NG\r\n"), 0) == 0);
    CHECK_BYTES(c->out[SH_DOWN], L("*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n*1\r\n$4\r\nPING\r\n"));
    /* the client half-closes in the middle of a command: it goes as it is */
    CHECK(sh_send(c, SH_DOWN, L("*1\r\n$4\r\nPI"), 1) == 0);
    CHECK_BYTES(c->out[SH_DOWN], L("*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI"));
    sh_free(c);
}

/* The only command is denied: the error still reaches the client, through
 * the reply to the PING sent in its place. */
static void denied_alone_and_connection_usable(void) {
    CHECK(sh_configure("") == 1);
    sh_conn *c = sh_open();
    sh_send(c, SH_DOWN, L("*1\r\n$8\r\nSHUTDOWN\r\n"), 0);
    CHECK_BYTES(c->out[SH_DOWN], L(PINGC));
    sh_send(c, SH_UP, L("+PO"), 0);
    CHECK(c->out[SH_UP].n == 0);
    sh_send(c, SH_UP, L("NG\r\n"), 0);
    CHECK_BYTES(c->out[SH_UP], L(ERR("shutdown")));
    /* and the next command is answered as usual */
    sh_send(c, SH_DOWN, L("*2\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\nPING\r\n"), 0);
    sh_send(c, SH_UP, L("-NOAUTH Authentication required.\r\n+PONG\r\n"), 0);
    CHECK_BYTES(c->out[SH_UP], L(ERR("shutdown") ERR("config") "+PONG\r\n"));
    CHECK(!c->closed);
    sh_free(c);
}

/* Inline commands are split as Redis splits them (sdssplitargs). */
static void inline_quoting(void) {
    CHECK(sh_configure("") == 1);
    static const char *const denied[] = {"\"FLUSHALL\"\r\n", "FLUSH\"ALL\"\n",
                                         "'flushall'\r\n",   "\"flush\\x61ll\" x\r\n",
                                         "\t  flushall  \r\n"};
    for (size_t i = 0; i < sizeof denied / sizeof *denied; i++) {
        sh_conn *c = sh_open();
        sh_send(c, SH_DOWN, denied[i], strlen(denied[i]), 0);
        CHECK_BYTES(c->out[SH_DOWN], L(PINGC));
        sh_free(c);
    }
    static const char *const allowed[] = {"flushallx\r\n", "\"flushall \"\r\n", "echo flushall\r\n"};
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) {
        sh_conn *c = sh_open();
        sh_send(c, SH_DOWN, allowed[i], strlen(allowed[i]), 0);
        CHECK_BYTES(c->out[SH_DOWN], allowed[i], strlen(allowed[i]));
        sh_free(c);
    }
    /* unbalanced quotes and NUL bytes: malformed */
    static const char *const bad[] = {"\"flushall\r\n", "\"a\"b\r\n", "ping\0\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sh_conn *c = sh_open();
        sh_send(c, SH_DOWN, bad[i], i == 2 ? 7 : strlen(bad[i]), 0);
        CHECK(c->closed);
        CHECK(c->out[SH_DOWN].n == 0);
        sh_free(c);
    }
}

static void malformed_and_limits(void) {
    CHECK(sh_configure("") == 1);
    static const char *const bad[] = {"*1\r\n+PING\r\n", "*1\r\n$4\r\nPINGxx", "*x\r\n",
                                      "*1\r\n$-1\r\n", "*1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sh_conn *c = sh_open();
        sh_send(c, SH_DOWN, L("PING\r\n"), 0);
        sh_send(c, SH_DOWN, bad[i], strlen(bad[i]), 0);
        CHECK(c->closed);
        CHECK_BYTES(c->out[SH_DOWN], L("PING\r\n"));
        sh_free(c);
    }
    CHECK(sh_logged("warn redis_guard: context"));
    CHECK(sh_logged("malformed RESP from the client (expected '$'): closing the connection"));

    /* on_malformed forward: the rest goes uninspected */
    CHECK(sh_configure("{\"on_malformed\": \"forward\"}") == 1);
    sh_conn *c = sh_open();
    sh_send(c, SH_DOWN, L("FLUSHALL\r\n*1\r\n+x\r\nFLUSHALL\r\n"), 0);
    CHECK(!c->closed);
    CHECK_BYTES(c->out[SH_DOWN], L(PINGC "*1\r\n+x\r\nFLUSHALL\r\n"));
    sh_send(c, SH_UP, L("+PONG\r\n-ERR Protocol error\r\n+OK\r\n"), 0);
    CHECK_BYTES(c->out[SH_UP], L(ERR("flushall") "-ERR Protocol error\r\n+OK\r\n"));
    sh_free(c);

    /* max_command_bytes: one command over it closes; many small ones pass */
    CHECK(sh_configure("{\"max_command_bytes\": 40}") == 1);
    c = sh_open();
    char big[200];
    int n = snprintf(big, sizeof big, "*2\r\n$4\r\nECHO\r\n$19\r\n%019d\r\n", 0); /* 40 */
    sh_send(c, SH_DOWN, big, (size_t)n - 3, 0);
    CHECK(!c->closed);
    sh_send(c, SH_DOWN, big + n - 3, 3, 0);
    CHECK(c->out[SH_DOWN].n == (size_t)n);
    n = snprintf(big, sizeof big, "*2\r\n$4\r\nECHO\r\n$20\r\n%020d\r\n", 0); /* 41 */
    sh_send(c, SH_DOWN, big, (size_t)n - 1, 0); /* 40 held: not yet */
    CHECK(!c->closed);
    sh_send(c, SH_DOWN, "\n", 1, 0); /* complete, and over */
    CHECK(c->closed);
    CHECK(c->out[SH_DOWN].n == 40);
    sh_free(c);
    c = sh_open();
    sh_send(c, SH_DOWN, big, (size_t)n, 0); /* in one piece */
    CHECK(c->closed && c->out[SH_DOWN].n == 0);
    CHECK(sh_logged("a command over max_command_bytes (40): closing the connection"));
    sh_free(c);
    c = sh_open();
    for (int i = 0; i < 50; i++) /* held across calls: an incomplete command each time */
        sh_send(c, SH_DOWN, L("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI"), 0), sh_send(c, SH_DOWN, L("NG\r\n"), 0);
    CHECK(!c->closed && c->out[SH_DOWN].n == 50 * 28);
    sh_free(c);
}

/* RESP3 replies, attributes, pushes, and bulk strings that look like replies. */
static void resp3_replies(void) {
    CHECK(sh_configure("{\"deny\": [\"flushall\", \"config set\"]}") == 1);
    CHECK(sh_logged("denies FLUSHALL, CONFIG SET ("));
    sh_conn *c = sh_open();
    sh_send(c, SH_DOWN,
            L("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$1\r\nx\r\n"
              "*4\r\n$6\r\nconfig\r\n$3\r\nset\r\n$1\r\nx\r\n$1\r\ny\r\nGET k\r\nflushdb\r\n"),
            0);
    CHECK_BYTES(c->out[SH_DOWN], L("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n"
                                   "$1\r\nx\r\n" PINGC "GET k\r\nflushdb\r\n"));
    static const char replies[] =
        "%2\r\n+proto\r\n:3\r\n$6\r\nserver\r\n=9\r\ntxt:redis\r\n" /* HELLO */
        ">2\r\n$7\r\nmessage\r\n+x\r\n"                            /* a push: no reply */
        "|1\r\n+ttl\r\n:3\r\n~2\r\n_\r\n#t\r\n"                     /* CONFIG GET, attributed */
        "|1\r\n+a\r\n(12345678901234567890\r\n+PONG\r\n"            /* the PING, attributed */
        "!5\r\nERR x\r\n"                                           /* GET */
        ":0\r\n";                                                   /* FLUSHDB */
    static const char want[] =
        "%2\r\n+proto\r\n:3\r\n$6\r\nserver\r\n=9\r\ntxt:redis\r\n>2\r\n$7\r\nmessage\r\n+x\r\n"
        "|1\r\n+ttl\r\n:3\r\n~2\r\n_\r\n#t\r\n" ERR("config set") "!5\r\nERR x\r\n:0\r\n";
    for (size_t i = 0; i < sizeof replies - 1; i++)
        sh_send(c, SH_UP, replies + i, 1, 0);
    CHECK_BYTES(c->out[SH_UP], L(want));
    sh_free(c);
}

/* After SUBSCRIBE replies are no longer counted: a later denied command
 * closes the connection; one before it still gets its error. */
static void untracked(void) {
    CHECK(sh_configure("") == 1);
    sh_conn *c = sh_open();
    sh_send(c, SH_DOWN, L("FLUSHALL\r\nSUBSCRIBE ch\r\n"), 0);
    CHECK(!c->closed);
    sh_send(c, SH_UP, L("+PONG\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n+PONG\r\n"), 0);
    CHECK_BYTES(c->out[SH_UP], L(ERR("flushall") "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n+PONG\r\n"));
    sh_send(c, SH_DOWN, L("flushall\r\n"), 0);
    CHECK(c->closed);
    CHECK(sh_logged("denied 'flushall' after SUBSCRIBE, MONITOR or CLIENT REPLY"));
    sh_free(c);
}

static void configuration(void) {
    CHECK(sh_configure("") == 1);
    CHECK(sh_logged("denies FLUSHALL, FLUSHDB, CONFIG, SHUTDOWN, DEBUG (max_command_bytes 1048576, "
                    "on_malformed close)"));
    CHECK(sh_configure("{\"deny\": []}") == 1);
    CHECK(sh_logged("denies nothing"));
    CHECK(sh_configure("{\"deny\": [\"a b c\"]}") == 0);
    CHECK(sh_configure("{\"deny\": \"FLUSHALL\"}") == 0);
    CHECK(sh_configure("{\"on_malformed\": \"ignore\"}") == 0);
    CHECK(sh_configure("{\"max_command_bytes\": -1}") == 0);
    CHECK(sh_configure("{\"denied\": []}") == 0);
    CHECK(sh_logged("error redis_guard: bad configuration: unknown key"));
    CHECK(sh_configure("[]") == 0);
}

int main(void) {
    configuration();
    pipelined_burst_split_everywhere();
    holding();
    denied_alone_and_connection_usable();
    inline_quoting();
    malformed_and_limits();
    resp3_replies();
    untracked();
    printf("redis_guard: %d checks, %d failed\n", t_run, t_failed);
    return t_failed != 0;
}
