/* main.c - the qforge command: dispatch to subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char *k_usage =
    "usage: qforge <command> [options]\n"
    "\n"
    "commands:\n"
    "  gen        turn documents into a question-answer dataset (JSONL)\n"
    "  run        generate text from a prompt with a GGUF model\n"
    "  tokenize   print the token ids of a text\n"
    "  model      model tools: info, synth\n"
    "  quantize   convert a GGUF model to another tensor type\n"
    "  bench      measure prompt processing and generation speed\n"
    "  serve      OpenAI- and Ollama-compatible local server (like LM Studio / Ollama)\n"
    "  tune       plan memory, threads and slots for a model; --autotune measures and writes the config\n"
    "  top        live view of a running serve (URL) or gen job (--db); --once --json for scripts\n"
    "\n"
    "run 'qforge <command> --help' for the options of a command\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(k_usage, stderr);
        return QF_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(k_usage, stdout);
        return QF_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        puts("qforge 0.1.0");
        return QF_EXIT_OK;
    }
    if (!strcmp(cmd, "gen")) return cmd_gen(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "model")) return cmd_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "tune")) return cmd_tune(argc - 1, argv + 1);
    if (!strcmp(cmd, "top")) return cmd_top(argc - 1, argv + 1);
    fprintf(stderr, "qforge: unknown command '%s'\n\n%s", cmd, k_usage);
    return QF_EXIT_USAGE;
}
