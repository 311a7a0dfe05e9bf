/* fuzz_serve.c - libFuzzer target for the server's request parsing.
 *
 * The first input byte picks the route (OpenAI chat / completions, Ollama
 * chat / generate), the rest is the request body, handed over in an
 * exact-size heap buffer (not NUL-terminated, so ASan sees a read past
 * the end). Invariants: a rejected body comes back with a negative code and
 * a non-empty message, and the output struct is left empty; an accepted
 * one has n in range, at most SERVE_MAX_STOP stop strings, valid UTF-8 in
 * every string it holds, and frees cleanly. The body is also run through
 * the duration parser and the UTF-8 cleaner, whose output must be valid.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "serve/serve_int.h"

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_serve: invariant violated: %s\n", what);
        abort();
    }
}

static int utf8_ok(const char *s) {
    return !s || serve_utf8_check(s, strlen(s)) == strlen(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    serve_api api = (serve_api)(data[0] % 4);
    size_t n = size - 1;
    char *body = qf_malloc(n ? n : 1);
    if (!body) return 0;
    memcpy(body, data + 1, n);

    serve_req r;
    char param[128];
    qf_err err = {0};
    qf_status st = serve_req_parse(api, body, n, &r, param, sizeof param, &err);
    if (st != QF_OK) {
        check(st < 0, "error code is negative");
        check(err.msg[0] != 0, "error has a message");
        check(r.model == NULL && r.msgs == NULL && r.prompt == NULL && r.n_stop == 0,
              "failed parse leaves r empty");
    } else {
        check(r.n >= 1 && r.n <= SERVE_MAX_N, "n in range");
        check(r.n_stop >= 0 && r.n_stop <= SERVE_MAX_STOP, "stop count in range");
        check(r.max_tokens >= 0, "max_tokens not negative");
        check(utf8_ok(r.model) && utf8_ok(r.prompt) && utf8_ok(r.system), "strings are UTF-8");
        for (int i = 0; i < r.n_msgs; i++)
            check(r.msgs[i].role && r.msgs[i].content && utf8_ok(r.msgs[i].content),
                  "messages complete");
        for (int i = 0; i < r.n_stop; i++)
            check(r.stop[i] && r.stop[i][0], "stop strings non-empty");
        serve_req_deinit(&r);
    }

    size_t clean_len;
    char *clean = serve_utf8_clean(body, n, &clean_len);
    if (clean) {
        check(serve_utf8_check(clean, clean_len) == clean_len, "cleaned text is UTF-8");
        qf_free(clean);
    }
    char dur[64];
    size_t k = n < sizeof dur - 1 ? n : sizeof dur - 1;
    memcpy(dur, body, k);
    dur[k] = 0;
    double s;
    if (serve_parse_duration(dur, &s) == QF_OK) check(s == s, "duration is a number");
    qf_free(body);
    return 0;
}
