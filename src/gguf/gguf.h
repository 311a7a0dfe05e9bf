/* gguf.h - read GGUF v2/v3 files by mmap (zero-copy), and write them.
 *
 * Reader: qf_gguf_open maps the file read-only and validates the whole header
 * (every count, string, array and tensor info is bounds-checked against the
 * file size; tensor data must lie inside the data section at the file's
 * alignment). After a successful open every accessor is safe: pointers it
 * returns are borrowed views into the mapping, valid until qf_gguf_close.
 * Tensor data is never copied. Strings in GGUF are not NUL-terminated; keys
 * and tensor names are copied once at open (NUL-terminated), values are
 * returned as (pointer, length) views.
 *
 * Writer: build a list of key/values and tensors in memory, then write the
 * file in one go (to PATH.tmp, then renamed, so a crash never leaves a half
 * file under the final name). Tensor data pointers are borrowed until
 * qf_gguf_writer_write returns.
 *
 * Thread-safety: a reader is immutable after open and may be shared by
 * threads; a writer belongs to one thread.
 */
#ifndef QF_GGUF_H
#define QF_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* GGUF metadata value types (values are the file format's). */
typedef enum qf_gguf_vtype {
    QF_GGUF_UINT8 = 0,
    QF_GGUF_INT8 = 1,
    QF_GGUF_UINT16 = 2,
    QF_GGUF_INT16 = 3,
    QF_GGUF_UINT32 = 4,
    QF_GGUF_INT32 = 5,
    QF_GGUF_FLOAT32 = 6,
    QF_GGUF_BOOL = 7,
    QF_GGUF_STRING = 8,
    QF_GGUF_ARRAY = 9,
    QF_GGUF_UINT64 = 10,
    QF_GGUF_INT64 = 11,
    QF_GGUF_FLOAT64 = 12,
    QF_GGUF_VTYPE_COUNT
} qf_gguf_vtype;

#define QF_GGUF_MAX_DIMS 4
#define QF_GGUF_MAX_NAME 64 /* tensor names shorter than this, as llama.cpp */
#define QF_GGUF_DEFAULT_ALIGNMENT 32

/* Facts about ggml tensor types as stored in GGUF (block layout sizes).
 * Returns false for an id this build does not know. */
bool qf_gguf_type_info(uint32_t ggml_type, int64_t *blck_size /* out */, size_t *type_size /* out */,
                       const char **name /* out */);

/* A string view into the mapping (not NUL-terminated). */
typedef struct qf_gguf_str {
    const char *ptr;
    uint64_t len;
} qf_gguf_str;

/* An array value. For fixed-size element types `data` points at n packed
 * little-endian elements (possibly unaligned: read with memcpy or the helpers
 * below). For strings use qf_gguf_arr_str. Nested arrays are accepted when
 * reading but their contents are not exposed. */
typedef struct qf_gguf_arr {
    qf_gguf_vtype type;
    uint64_t n;
    const uint8_t *data;
    int64_t kv_index; /* owning key, used by qf_gguf_arr_str */
} qf_gguf_arr;

typedef struct qf_gguf_tensor {
    const char *name;          /* NUL-terminated, owned by the reader */
    uint32_t type;             /* ggml type id */
    uint32_t n_dims;
    int64_t ne[QF_GGUF_MAX_DIMS]; /* ne[0] contiguous; unused dims are 1 */
    uint64_t offset;           /* relative to the data section */
    size_t size;               /* bytes */
    const void *data;          /* borrowed view into the mapping */
} qf_gguf_tensor;

typedef struct qf_gguf qf_gguf;

/* Open and validate. Returns NULL and fills err (message starts with path). */
qf_gguf *qf_gguf_open(const char *path, qf_err *err);
/* Same over a caller buffer (borrowed until close); name is used in errors. */
qf_gguf *qf_gguf_open_mem(const void *buf, size_t size, const char *name, qf_err *err);
void qf_gguf_close(qf_gguf *g); /* NULL is a no-op */

uint32_t qf_gguf_version(const qf_gguf *g);
uint32_t qf_gguf_alignment(const qf_gguf *g);
size_t qf_gguf_file_size(const qf_gguf *g);
size_t qf_gguf_data_offset(const qf_gguf *g); /* start of tensor data in the file */
const char *qf_gguf_path(const qf_gguf *g);

/* ---- metadata ---- */
int64_t qf_gguf_n_kv(const qf_gguf *g);
const char *qf_gguf_kv_key(const qf_gguf *g, int64_t i);
qf_gguf_vtype qf_gguf_kv_type(const qf_gguf *g, int64_t i);
int64_t qf_gguf_find_kv(const qf_gguf *g, const char *key); /* -1 when absent */

/* Typed getters: return false when the key is absent or its type does not
 * convert (any integer type converts to int64 if in range; float32/64 and
 * integers convert to double; bool only from bool). */
bool qf_gguf_get_int(const qf_gguf *g, const char *key, int64_t *out);
bool qf_gguf_get_float(const qf_gguf *g, const char *key, double *out);
bool qf_gguf_get_bool(const qf_gguf *g, const char *key, bool *out);
bool qf_gguf_get_str(const qf_gguf *g, const char *key, qf_gguf_str *out);
bool qf_gguf_get_arr(const qf_gguf *g, const char *key, qf_gguf_arr *out);
/* By index: value views of kv i (false on type mismatch). */
bool qf_gguf_kv_int(const qf_gguf *g, int64_t i, int64_t *out);
bool qf_gguf_kv_float(const qf_gguf *g, int64_t i, double *out);
bool qf_gguf_kv_bool(const qf_gguf *g, int64_t i, bool *out);
bool qf_gguf_kv_str(const qf_gguf *g, int64_t i, qf_gguf_str *out);
bool qf_gguf_kv_arr(const qf_gguf *g, int64_t i, qf_gguf_arr *out);
/* Raw encoded value bytes of kv i (type-specific encoding, as in the file);
 * used to copy metadata verbatim into a writer. */
const uint8_t *qf_gguf_kv_raw(const qf_gguf *g, int64_t i, size_t *len /* out */);

/* Element i of an array (i < arr->n; element type must match). */
qf_gguf_str qf_gguf_arr_str(const qf_gguf *g, const qf_gguf_arr *arr, uint64_t i);
int64_t qf_gguf_arr_int(const qf_gguf_arr *arr, uint64_t i);   /* integer/bool types */
double qf_gguf_arr_float(const qf_gguf_arr *arr, uint64_t i);  /* float or integer types */

/* ---- tensors ---- */
int64_t qf_gguf_n_tensors(const qf_gguf *g);
const qf_gguf_tensor *qf_gguf_tensor_at(const qf_gguf *g, int64_t i);
const qf_gguf_tensor *qf_gguf_find_tensor(const qf_gguf *g, const char *name); /* NULL if absent */

/* ---- writer ---- */
typedef struct qf_gguf_writer qf_gguf_writer;

qf_gguf_writer *qf_gguf_writer_new(void); /* GGUF v3, alignment 32 */
void qf_gguf_writer_free(qf_gguf_writer *w); /* NULL is a no-op */

/* Setting a key that exists replaces its value. Strings are copied. */
qf_status qf_gguf_writer_set_u32(qf_gguf_writer *w, const char *key, uint32_t v);
qf_status qf_gguf_writer_set_i32(qf_gguf_writer *w, const char *key, int32_t v);
qf_status qf_gguf_writer_set_u64(qf_gguf_writer *w, const char *key, uint64_t v);
qf_status qf_gguf_writer_set_f32(qf_gguf_writer *w, const char *key, float v);
qf_status qf_gguf_writer_set_bool(qf_gguf_writer *w, const char *key, bool v);
qf_status qf_gguf_writer_set_str(qf_gguf_writer *w, const char *key, const char *v);
/* Any fixed-size scalar type (not STRING/ARRAY): *v is read as that type in
 * host memory (uint8_t for BOOL, which must be 0 or 1). */
qf_status qf_gguf_writer_set_val(qf_gguf_writer *w, const char *key, qf_gguf_vtype type,
                                 const void *v);
/* Array of fixed-size elements (type not STRING/ARRAY); data copied. */
qf_status qf_gguf_writer_set_arr(qf_gguf_writer *w, const char *key, qf_gguf_vtype type,
                                 const void *data, uint64_t n);
qf_status qf_gguf_writer_set_arr_str(qf_gguf_writer *w, const char *key, const char *const *v,
                                     uint64_t n);
/* Copy key i of a reader verbatim (any type, arrays included). */
qf_status qf_gguf_writer_copy_kv(qf_gguf_writer *w, const qf_gguf *g, int64_t i);
qf_status qf_gguf_writer_remove(qf_gguf_writer *w, const char *key);

/* Add a tensor: data (borrowed until write) holds the encoded bytes of
 * the given ggml type and shape. Fails on duplicate names, unknown types,
 * names >= QF_GGUF_MAX_NAME, or ne[0] not a multiple of the block size. */
qf_status qf_gguf_writer_add_tensor(qf_gguf_writer *w, const char *name, uint32_t ggml_type,
                                    uint32_t n_dims, const int64_t *ne, const void *data,
                                    qf_err *err);

/* Write everything to path (via path.tmp + rename). */
qf_status qf_gguf_writer_write(qf_gguf_writer *w, const char *path, qf_err *err);

#endif
