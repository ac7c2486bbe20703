/* harness.h -- a minimal test harness: CHECK records a failure with its
 * location and goes on; main() prints "N passed, N failed" last. */
#ifndef PW_TEST_HARNESS_H
#define PW_TEST_HARNESS_H
#include <stdio.h>
#include <string.h>

extern int t_passed, t_failed;
extern const char *t_current;

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (cond) {                                                                               \
            t_passed++;                                                                           \
        } else {                                                                                  \
            t_failed++;                                                                           \
            printf("FAIL %s: %s:%d: %s\n", t_current, __FILE__, __LINE__, #cond);                 \
        }                                                                                         \
    } while (0)

#define CHECK_STR(got, want)                                                                      \
    do {                                                                                          \
        const char *g_ = (got), *w_ = (want);                                                     \
        if (g_ && w_ && strcmp(g_, w_) == 0) {                                                    \
            t_passed++;                                                                           \
        } else {                                                                                  \
            t_failed++;                                                                           \
            printf("FAIL %s: %s:%d: got \"%s\", want \"%s\"\n", t_current, __FILE__, __LINE__,    \
                   g_ ? g_ : "(null)", w_ ? w_ : "");                                             \
        }                                                                                         \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                               \
    do {                                                                                          \
        const char *h_ = (hay), *n_ = (needle);                                                   \
        if (h_ && strstr(h_, n_)) {                                                               \
            t_passed++;                                                                           \
        } else {                                                                                  \
            t_failed++;                                                                           \
            printf("FAIL %s: %s:%d: \"%s\" does not contain \"%s\"\n", t_current, __FILE__,       \
                   __LINE__, h_ ? h_ : "(null)", n_);                                             \
        }                                                                                         \
    } while (0)

#define TEST(name) static void name(void)
#define RUN(name)                                                                                 \
    do {                                                                                          \
        t_current = #name;                                                                        \
        int f_ = t_failed;                                                                        \
        name();                                                                                   \
        printf("%s %s\n", t_failed == f_ ? "ok  " : "FAIL", #name);                               \
    } while (0)

#endif
