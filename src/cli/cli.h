/* cli.h - shared helpers of the qforge subcommands.
 *
 * Each subcommand is `int cmd_X(int argc, char **argv)` with argv[0] the
 * subcommand name; it returns the process exit code: 0 success, 1 failure
 * (message printed), 2 wrong usage (usage printed). Only this layer prints
 * to stdout or exits.
 */
#ifndef QF_CLI_H
#define QF_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "quant/quant.h"

#define QF_EXIT_OK 0
#define QF_EXIT_FAIL 1
#define QF_EXIT_USAGE 2

int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_gen(int argc, char **argv);
int cmd_top(int argc, char **argv);

/* Print "qforge: <cmd>: <msg>" and the usage text; return QF_EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "qforge: <message of err>"; return QF_EXIT_FAIL. */
int cli_fail(const qf_err *err);

/* Option value parsers: false (and a message in err) on malformed or out of
 * range input. */
bool cli_parse_int(const char *s, long long lo, long long hi, long long *out);
bool cli_parse_float(const char *s, double lo, double hi, double *out);
/* A kv cache element type: "f16", "q8_0" or "f32" (what every command's
 * --kv-type takes); false for anything else, NULL included. */
bool cli_parse_kv_type(const char *s, qf_type *out);
/* --gpu-layers: a count >= -1 (-1 = all, 0 = none) or "auto"
 * (QF_GPU_LAYERS_AUTO: what fits in the device's memory). */
bool cli_parse_gpu_layers(const char *s, long long *out);
/* "1,2,3" -> malloc'ed array (caller frees); false on any bad element. */
bool cli_parse_int_list(const char *s, int32_t **out, int32_t *n);

/* Fetch the value of an option that takes one: argv[*i+1]; NULL if absent. */
const char *cli_value(int argc, char **argv, int *i);

#endif
