/* preset.h - processing presets: YAML files and the built-in ones.
 *
 * A preset file is YAML with one mapping, `processing`, whose keys are
 * those of DESIGN.md (all optional; a missing key keeps the value of the
 * built-in `speed` preset):
 *
 *   processing:
 *     workers: 12                  # ingest/chunk threads          1..1024
 *     max_concurrent_requests: 4   # chunks (HTTP: requests) in flight 1..4096
 *     temperature: 0.3             # sampling temperature          0..2
 *     generation_passes: 1         # passes per chunk, own seeds   1..100
 *     qa_pairs_per_chunk: 3        # pairs asked for per pass      1..100
 *     min_answer_length: 100       # shorter answers are dropped   0..100000 (characters)
 *
 * Built in: speed (12, 4, 0.3, 1, 3, 100) and quality (6, 1, 0.7, 3, 8, 200).
 * Unknown keys under `processing` and values out of range are errors naming
 * the file, line and key; other top-level keys are ignored with a warning.
 * Thread-safety: pure functions.
 */
#ifndef QF_PRESET_H
#define QF_PRESET_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct qf_preset {
    int32_t workers;
    int32_t max_concurrent_requests;
    float temperature;
    int32_t generation_passes;
    int32_t qa_pairs_per_chunk;
    int32_t min_answer_length;
} qf_preset;

/* "speed" or "quality" -> out; QF_ERR_NOT_FOUND otherwise. */
qf_status qf_preset_builtin(const char *name, qf_preset *out /* out */);
/* Parse YAML text; name is used in error messages (a file path). */
qf_status qf_preset_parse(const char *yaml, size_t len, const char *name, qf_preset *out /* out */, qf_err *err);
/* A built-in name, else a YAML file path. */
qf_status qf_preset_resolve(const char *name_or_path, qf_preset *out /* out */, qf_err *err);

#endif
