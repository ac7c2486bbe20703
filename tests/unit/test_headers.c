/*
 * test_headers.c -- the header syntax rule of include/pwasm.h
 * (pw_header_name_ok, pw_header_value_ok), byte by byte against RFC 9110's
 * list of token characters.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "pwasm.h"

void run_header_tests(void);

static int rfc9110_tchar(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

TEST(header_name_every_byte) {
    int wrong = 0;
    for (int c = 0; c < 256; c++) {
        char one[1] = {(char)c}, two[3] = {'x', (char)c, 'y'}, pseudo[2] = {':', (char)c};
        int want = rfc9110_tchar(c);
        /* alone, inside a name, after a pseudo-header's ':' */
        if (pw_header_name_ok((pw_str){one, 1}) != want ||
            pw_header_name_ok((pw_str){two, 3}) != want ||
            pw_header_name_ok((pw_str){pseudo, 2}) != want) {
            printf("  byte 0x%02x: want %d\n", c, want);
            wrong++;
        }
    }
    CHECK(wrong == 0);
    CHECK(!pw_header_name_ok((pw_str){"", 0}));
    CHECK(!pw_header_name_ok((pw_str){":", 1}));
    CHECK(!pw_header_name_ok((pw_str){"a:b", 3}));
    CHECK(!pw_header_name_ok((pw_str){"::path", 6}));
    CHECK(pw_header_name_ok((pw_str){":path", 5}));
    CHECK(pw_header_name_ok((pw_str){"X-Bench", 7}));
}

TEST(header_value_every_byte) {
    int wrong = 0;
    for (int c = 0; c < 256; c++) {
        char v[3] = {'a', (char)c, 'b'};
        int want = c != '\r' && c != '\n' && c != 0;
        if (pw_header_value_ok((pw_str){v, 3}) != want) {
            printf("  byte 0x%02x: want %d\n", c, want);
            wrong++;
        }
    }
    CHECK(wrong == 0);
    CHECK(pw_header_value_ok((pw_str){"", 0}));
}

void run_header_tests(void) {
    RUN(header_name_every_byte);
    RUN(header_value_every_byte);
}
