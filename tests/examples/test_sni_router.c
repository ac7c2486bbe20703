/*
 * test_sni_router.c -- examples/c/sni_router through the native fake host
 * (stream_host.c): ClientHellos with and without SNI, split at every byte
 * and over two TLS records, not TLS, malformed, routes and the default.
 */
#include <stdlib.h>
#include <string.h>

#include "stream_host.h"

static size_t put16(unsigned char *p, size_t v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return 2;
}

/* A ClientHello with server name `sni` (NULL: no server_name extension) in
 * records of at most `frag` bytes of handshake each, followed by "APP". */
static size_t hello(unsigned char *out, const char *sni, size_t frag) {
    unsigned char hs[1024], *b = hs + 4;
    size_t n = 0;
    n += put16(b + n, 0x0303);
    memset(b + n, 7, 32), n += 32;            /* random */
    b[n++] = 32, memset(b + n, 1, 32), n += 32; /* session id */
    n += put16(b + n, 4), n += put16(b + n, 0x1301), n += put16(b + n, 0x1302);
    b[n++] = 1, b[n++] = 0; /* compression: null */
    size_t ext_at = n;
    n += 2;
    n += put16(b + n, 0x000a), n += put16(b + n, 4), n += put16(b + n, 2), n += put16(b + n, 0x1d);
    if (sni) {
        size_t l = strlen(sni);
        n += put16(b + n, 0), n += put16(b + n, l + 5), n += put16(b + n, l + 3);
        b[n++] = 0, n += put16(b + n, l), memcpy(b + n, sni, l), n += l;
    }
    n += put16(b + n, 0x002b), n += put16(b + n, 3), b[n++] = 2, n += put16(b + n, 0x0304);
    put16(b + ext_at, n - ext_at - 2);
    hs[0] = 1, hs[1] = 0, put16(hs + 2, n);
    n += 4;
    size_t o = 0;
    for (size_t at = 0; at < n; at += frag) {
        size_t len = n - at < frag ? n - at : frag;
        out[o++] = 0x16, out[o++] = 3, out[o++] = 1;
        o += put16(out + o, len);
        memcpy(out + o, hs + at, len), o += len;
    }
    memcpy(out + o, "APP", 3);
    return o + 3;
}

/* Sends d in two pieces cut at `cut` (0: one piece): the cluster chosen. */
static sh_conn *route(const unsigned char *d, size_t n, size_t cut) {
    sh_conn *c = sh_open();
    if (cut) {
        CHECK(sh_send(c, SH_DOWN, (const char *)d, cut, 0) == 1); /* Pause */
        CHECK(c->cluster[0] == 0 && c->out[SH_DOWN].n == 0);
    }
    CHECK(sh_send(c, SH_DOWN, (const char *)d + cut, n - cut, 0) == 0);
    return c;
}

static void expect_route(const char *sni, size_t frag, const char *cluster) {
    unsigned char d[2048];
    size_t n = hello(d, sni, frag);
    int before = t_failed;
    for (size_t cut = 0; cut < n - 3 && t_failed == before; cut++) {
        sh_conn *c = route(d, n, cut);
        CHECK(!strcmp(c->cluster, cluster));
        CHECK(!c->closed);
        CHECK_BYTES(c->out[SH_DOWN], (const char *)d, n); /* unchanged */
        sh_send(c, SH_DOWN, "more", 4, 0);                 /* then everything passes */
        CHECK(c->out[SH_DOWN].n == n + 4);
        sh_free(c);
    }
}

static void routing(void) {
    CHECK(sh_configure("{\"routes\": {\"a.example\": \"backend_a\", \"*.b.example\": \"backend_b\","
                       " \"*.x.b.example\": \"backend_x\", \"B.example\": \"backend_b0\"},"
                       " \"default\": \"backend_d\"}") == 1);
    CHECK(sh_logged("info sni_router: root 1: 4 routes, default backend_d"));
    expect_route("a.example", 1000, "backend_a");
    CHECK(sh_logged("sni_router: context"));
    CHECK(sh_logged("sni a.example -> backend_a (route)"));
    expect_route("A.Example.", 1000, "backend_a");
    expect_route("a.example", 40, "backend_a"); /* over several records */
    expect_route("www.b.example", 1000, "backend_b");
    expect_route("b.example", 1000, "backend_b0");
    expect_route("w.x.b.example", 1000, "backend_x"); /* the longest wildcard */
    expect_route("c.example", 1000, "backend_d");
    CHECK(sh_logged("sni c.example -> backend_d (default)"));
    expect_route(NULL, 1000, "backend_d");
    CHECK(sh_logged("no server_name -> backend_d (default)"));

    /* not TLS: at once, to the default */
    sh_conn *c = sh_open();
    CHECK(sh_send(c, SH_DOWN, "GET / HTTP/1.1\r\n", 16, 0) == 0);
    CHECK(!strcmp(c->cluster, "backend_d") && c->out[SH_DOWN].n == 16);
    CHECK(sh_logged("not TLS -> backend_d (default)"));
    sh_free(c);

    /* malformed: a handshake that is not a ClientHello, a bad length */
    unsigned char d[2048];
    size_t n = hello(d, "a.example", 1000);
    d[5] = 2;
    c = route(d, n, 0);
    CHECK(!strcmp(c->cluster, "backend_d"));
    CHECK(sh_logged("the first handshake message is not a ClientHello -> backend_d"));
    sh_free(c);
    n = hello(d, "a.example", 1000);
    d[5 + 4 + 2 + 32] = 200; /* session id length past the end */
    c = route(d, n, 0);
    CHECK(!strcmp(c->cluster, "backend_d"));
    CHECK(sh_logged("a malformed ClientHello -> backend_d"));
    sh_free(c);
    n = hello(d, "bad name!", 1000);
    c = route(d, n, 0);
    CHECK(!strcmp(c->cluster, "backend_d"));
    sh_free(c);

    /* the client closes before the ClientHello is whole */
    n = hello(d, "a.example", 1000);
    c = sh_open();
    CHECK(sh_send(c, SH_DOWN, (const char *)d, 20, 1) == 0);
    CHECK(!strcmp(c->cluster, "backend_d"));
    sh_free(c);
}

static void without_default(void) {
    CHECK(sh_configure("{\"routes\": {\"a.example\": \"backend_a\"}, \"max_hello_bytes\": 100}") == 1);
    CHECK(sh_logged("default none (close)"));
    unsigned char d[2048];
    size_t n = hello(d, "a.example", 1000);
    sh_conn *c = sh_open();
    CHECK(sh_send(c, SH_DOWN, (const char *)d, 100, 0) == 1); /* not whole, at the limit */
    sh_free(c);
    c = sh_open();
    CHECK(n > 101);
    sh_send(c, SH_DOWN, (const char *)d, 101, 0);
    CHECK(c->closed && c->out[SH_DOWN].n == 0); /* over max_hello_bytes, no default */
    CHECK(sh_logged("a ClientHello over max_hello_bytes: no route and no default: closing"));
    sh_free(c);
    CHECK(sh_configure("{\"routes\": {\"a.example\": \"backend_a\"}}") == 1);
    expect_route("a.example", 1000, "backend_a");
    n = hello(d, "z.example", 1000);
    c = sh_open();
    sh_send(c, SH_DOWN, (const char *)d, n, 0);
    CHECK(c->closed && !c->cluster[0]);
    CHECK(sh_logged("sni z.example: no route and no default: closing"));
    sh_free(c);
}

static void configuration(void) {
    CHECK(sh_configure("") == 0);
    CHECK(sh_configure("{}") == 0);
    CHECK(sh_logged("sni_router: bad configuration: routes or default: required"));
    CHECK(sh_configure("{\"routes\": {\"*a.example\": \"x\"}}") == 0);
    CHECK(sh_configure("{\"routes\": [\"a\"]}") == 0);
    CHECK(sh_configure("{\"default\": \"\"}") == 0);
    CHECK(sh_configure("{\"default\": \"d\", \"other\": 1}") == 0);
    CHECK(sh_configure("{\"default\": \"d\"}") == 1);
}

int main(void) {
    configuration();
    routing();
    without_default();
    printf("sni_router: %d checks, %d failed\n", t_run, t_failed);
    return t_failed != 0;
}
