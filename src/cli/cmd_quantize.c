/* cmd_quantize.c - `qforge quantize IN.gguf OUT.gguf TYPE`. */
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "model/quantize.h"

static const char *k_usage =
    "usage: qforge quantize [-t THREADS] IN.gguf OUT.gguf TYPE\n"
    "\n"
    "TYPE is a file type as llama.cpp names it (case-insensitive):\n"
    "  f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_k_s, q4_k_m (= q4_k), q5_k_s, q5_k_m (= q5_k), q6_k\n"
    "the _M mixes give the output and some attn_v/ffn_down tensors more bits, as llama.cpp does\n";

int cmd_quantize(int argc, char **argv) {
    const char *pos[3];
    int npos = 0;
    long long threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(k_usage, stdout);
            return QF_EXIT_OK;
        }
        if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) {
            const char *v = cli_value(argc, argv, &i);
            if (!v || !cli_parse_int(v, 1, 1024, &threads)) return cli_usage_error(k_usage, "quantize: bad thread count");
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) return cli_usage_error(k_usage, "quantize: unknown option '%s'", argv[i]);
        if (npos == 3) return cli_usage_error(k_usage, "quantize: too many arguments");
        pos[npos++] = argv[i];
    }
    if (npos != 3) return cli_usage_error(k_usage, "quantize: need IN.gguf OUT.gguf TYPE");
    qf_ftype ft;
    if (!qf_ftype_from_name(pos[2], &ft))
        return cli_usage_error(k_usage, "quantize: unknown type '%s' (one of: %s)", pos[2], qf_ftype_names());
    if (!strcmp(pos[0], pos[1])) return cli_usage_error(k_usage, "quantize: output must differ from input");
    qf_err err = {0};
    double t0 = qf_now_s();
    if (qf_model_quantize(pos[0], pos[1], ft, (int)threads, &err) != QF_OK) return cli_fail(&err);
    fprintf(stderr, "qforge: wrote %s (%s) in %.1f s\n", pos[1], qf_ftype_name(ft), qf_now_s() - t0);
    return QF_EXIT_OK;
}
