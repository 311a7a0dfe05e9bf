/* store.c - SQLite job store and zstd response cache.
 *
 * All statements are prepared once at open. The schema version lives in
 * PRAGMA user_version; a database written by a newer schema is refused
 * rather than misread. Cache values are zstd frames (level 3) of the raw
 * response text; the uncompressed size is stored beside the blob so a
 * corrupted row is detected (size mismatch or decode error) and dropped.
 * SQLITE_FULL and SQLITE_IOERR map to QF_ERR_IO with the database path and
 * "disk full" / the SQLite message, so the CLI can tell the user what to do.
 */
#include "pipeline/store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "base/log.h"
#include "base/mem.h"

#define SCHEMA_VERSION 1

enum {
    ST_META_GET,
    ST_META_SET,
    ST_CACHE_GET,
    ST_CACHE_PUT,
    ST_CACHE_DEL,
    ST_DOC_GET,
    ST_DOC_PUT,
    ST_CHUNK_GET,
    ST_CHUNK_PUT,
    ST_CHUNK_COUNT,
    ST_PAIR_ADD,
    ST_FAIL_ADD,
    ST_SNAP_PUT,
    ST_SNAP_TRIM,
    ST_COUNT
};

static const char *k_sql[ST_COUNT] = {
    [ST_META_GET] = "SELECT value FROM meta WHERE key=?1",
    [ST_META_SET] = "INSERT INTO meta(key,value) VALUES(?1,?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
    [ST_CACHE_GET] = "SELECT value, raw_len, tokens_in, tokens_out, finish FROM cache WHERE key=?1",
    [ST_CACHE_PUT] = "INSERT OR REPLACE INTO cache(key,model,value,raw_len,tokens_in,tokens_out,finish,created)"
                     " VALUES(?1,?2,?3,?4,?5,?6,?7,strftime('%s','now'))",
    [ST_CACHE_DEL] = "DELETE FROM cache WHERE key=?1",
    [ST_DOC_GET] = "SELECT id,size,mtime,status,n_chunks FROM docs WHERE path=?1",
    [ST_DOC_PUT] = "INSERT INTO docs(path,size,mtime,status,n_chunks,note) VALUES(?1,?2,?3,?4,?5,?6)"
                   " ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime=excluded.mtime,"
                   " status=excluded.status, n_chunks=excluded.n_chunks, note=excluded.note",
    [ST_CHUNK_GET] = "SELECT start,end FROM chunks WHERE doc_id=?1 AND idx=?2 AND status=1",
    [ST_CHUNK_PUT] = "INSERT OR REPLACE INTO chunks(doc_id,idx,start,end,status,n_pairs) VALUES(?1,?2,?3,?4,1,?5)",
    [ST_CHUNK_COUNT] = "SELECT count(*) FROM chunks WHERE doc_id=?1 AND status=1",
    [ST_PAIR_ADD] = "INSERT OR REPLACE INTO pairs(id,doc_id,path,chunk,start,end,pass,question,answer,score,model,"
                    "status,qhash,simhash,dup_of) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
    [ST_FAIL_ADD] = "INSERT INTO failures(doc_id,path,chunk,pass,reason,detail) VALUES(?1,?2,?3,?4,?5,?6)",
    [ST_SNAP_PUT] = "INSERT INTO metrics_snapshot(ts,state,json) VALUES(?1,?2,?3)",
    [ST_SNAP_TRIM] = "DELETE FROM metrics_snapshot WHERE seq <= ?1",
};

static const char *k_schema =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS cache(key BLOB PRIMARY KEY, model TEXT, value BLOB, raw_len INTEGER,"
    " tokens_in INTEGER, tokens_out INTEGER, finish TEXT, created INTEGER);"
    "CREATE TABLE IF NOT EXISTS docs(id INTEGER PRIMARY KEY, path TEXT UNIQUE, size INTEGER, mtime INTEGER,"
    " status INTEGER, n_chunks INTEGER, note TEXT);"
    "CREATE TABLE IF NOT EXISTS chunks(doc_id INTEGER, idx INTEGER, start INTEGER, end INTEGER,"
    " status INTEGER, n_pairs INTEGER, PRIMARY KEY(doc_id, idx));"
    "CREATE TABLE IF NOT EXISTS pairs(seq INTEGER PRIMARY KEY, id TEXT UNIQUE, doc_id INTEGER, path TEXT,"
    " chunk INTEGER, start INTEGER, end INTEGER, pass INTEGER, question TEXT, answer TEXT, score INTEGER,"
    " model TEXT, status INTEGER, qhash INTEGER, simhash INTEGER, dup_of TEXT);"
    "CREATE INDEX IF NOT EXISTS pairs_status ON pairs(status, seq);"
    "CREATE TABLE IF NOT EXISTS failures(seq INTEGER PRIMARY KEY, doc_id INTEGER, path TEXT, chunk INTEGER,"
    " pass INTEGER, reason TEXT, detail TEXT);"
    /* added without a schema version bump: older databases just gain it */
    "CREATE TABLE IF NOT EXISTS metrics_snapshot(seq INTEGER PRIMARY KEY, ts REAL, state TEXT, json TEXT);";

struct qf_store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *st[ST_COUNT];
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
};

static qf_status db_fail(qf_store *s, qf_err *err, const char *what) {
    int e0 = errno;
    int rc = sqlite3_extended_errcode(s->db);
    int prim = rc & 0xff;
    int sys = sqlite3_system_errno(s->db);
    bool nospace = sys == ENOSPC || sys == EFBIG || sys == EDQUOT || e0 == ENOSPC || e0 == EFBIG || e0 == EDQUOT;
    /* a failed write is almost always a full disk or a file size limit */
    bool write_err = rc == SQLITE_IOERR_WRITE || rc == SQLITE_IOERR_FSYNC || rc == SQLITE_IOERR_TRUNCATE ||
                     rc == SQLITE_IOERR_SHMSIZE;
    if (prim == SQLITE_FULL || (prim == SQLITE_IOERR && (nospace || write_err)))
        return QF_ERR_SET(err, QF_ERR_IO, "%s: %s: disk full (%s)", s->path, what, sqlite3_errmsg(s->db));
    if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)
        return QF_ERR_SET(err, QF_ERR_BUSY, "%s: %s: database is locked by another process (%s)", s->path, what,
                          sqlite3_errmsg(s->db));
    return QF_ERR_SET(err, QF_ERR_IO, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static sqlite3_stmt *stmt(qf_store *s, int i) {
    sqlite3_stmt *st = s->st[i];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static qf_status exec(qf_store *s, const char *sql, qf_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        qf_status st = db_fail(s, err, msg ? msg : sql);
        sqlite3_free(msg);
        return st;
    }
    return QF_OK;
}

qf_store *qf_store_open(const char *path, qf_err *err) {
    qf_store *s = qf_calloc(1, sizeof *s);
    if (!s || !(s->path = qf_strdup(path))) {
        qf_free(s);
        QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        QF_ERR_SET(err, QF_ERR_IO, "%s: cannot open job database: %s", path,
                   s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    sqlite3_stmt *v = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &v, NULL) != SQLITE_OK) {
        QF_ERR_SET(err, QF_ERR_IO, "%s: not a qforge job database (%s)", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    int ver = sqlite3_step(v) == SQLITE_ROW ? sqlite3_column_int(v, 0) : -1;
    sqlite3_finalize(v);
    if (ver < 0) {
        QF_ERR_SET(err, QF_ERR_IO, "%s: not a qforge job database (%s)", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (ver > SCHEMA_VERSION) {
        QF_ERR_SET(err, QF_ERR_UNSUPPORTED, "%s: job database schema %d is newer than this qforge's (%d)", path, ver,
                   SCHEMA_VERSION);
        goto fail;
    }
    if (exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", err) != QF_OK) goto fail;
    if (exec(s, k_schema, err) != QF_OK) goto fail;
    if (ver < SCHEMA_VERSION && exec(s, "PRAGMA user_version=" QF_STR(SCHEMA_VERSION), err) != QF_OK) goto fail;
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, k_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) != SQLITE_OK) {
            QF_ERR_SET(err, QF_ERR_IO, "%s: prepare: %s", path, sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    s->cctx = ZSTD_createCCtx();
    s->dctx = ZSTD_createDCtx();
    if (!s->cctx || !s->dctx) {
        QF_ERR_SET(err, QF_ERR_NOMEM, "%s: out of memory (zstd)", path);
        goto fail;
    }
    return s;
fail:
    qf_store_close(s);
    return NULL;
}

void qf_store_close(qf_store *s) {
    if (!s) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->st[i]);
    if (s->db) sqlite3_close(s->db);
    ZSTD_freeCCtx(s->cctx);
    ZSTD_freeDCtx(s->dctx);
    qf_free(s->path);
    qf_free(s);
}

qf_status qf_store_begin(qf_store *s, qf_err *err) { return exec(s, "BEGIN IMMEDIATE", err); }

qf_status qf_store_commit(qf_store *s, qf_err *err) {
    qf_status st = exec(s, "COMMIT", err);
    if (st != QF_OK) qf_store_rollback(s);
    return st;
}

void qf_store_rollback(qf_store *s) {
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- meta ---- */

qf_status qf_store_meta_get(qf_store *s, const char *key, char **val, qf_err *err) {
    *val = NULL;
    sqlite3_stmt *st = stmt(s, ST_META_GET);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) return QF_ERR_NOT_FOUND;
    if (rc != SQLITE_ROW) return db_fail(s, err, "read meta");
    const char *t = (const char *)sqlite3_column_text(st, 0);
    *val = qf_strdup(t ? t : "");
    sqlite3_reset(st);
    if (!*val) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory");
    return QF_OK;
}

qf_status qf_store_meta_set(qf_store *s, const char *key, const char *val, qf_err *err) {
    sqlite3_stmt *st = stmt(s, ST_META_SET);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, val, -1, SQLITE_STATIC);
    qf_status r = sqlite3_step(st) == SQLITE_DONE ? QF_OK : db_fail(s, err, "write meta");
    sqlite3_reset(st);
    return r;
}

int64_t qf_store_meta_get_i64(qf_store *s, const char *key, int64_t dflt) {
    char *v = NULL;
    if (qf_store_meta_get(s, key, &v, NULL) != QF_OK) return dflt;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*end || end == v) x = dflt;
    qf_free(v);
    return x;
}

qf_status qf_store_meta_set_i64(qf_store *s, const char *key, int64_t v, qf_err *err) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return qf_store_meta_set(s, key, buf, err);
}

/* ---- cache ---- */

qf_status qf_store_cache_get(qf_store *s, const qf_cache_key *key, char **text, size_t *len, qf_cache_info *info,
                             qf_err *err) {
    *text = NULL;
    *len = 0;
    sqlite3_stmt *st = stmt(s, ST_CACHE_GET);
    sqlite3_bind_blob(st, 1, key->b, 16, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) return QF_ERR_NOT_FOUND;
    if (rc != SQLITE_ROW) return db_fail(s, err, "read cache");
    const void *blob = sqlite3_column_blob(st, 0);
    size_t blen = (size_t)sqlite3_column_bytes(st, 0);
    sqlite3_int64 raw = sqlite3_column_int64(st, 1);
    qf_status r = QF_OK;
    char *out = NULL;
    if (raw < 0 || raw > (1LL << 31)) {
        r = QF_ERR_FORMAT;
    } else if (!(out = qf_malloc((size_t)raw + 1))) {
        sqlite3_reset(st);
        return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory (cache value of %lld bytes)", (long long)raw);
    } else {
        size_t got = raw ? ZSTD_decompressDCtx(s->dctx, out, (size_t)raw, blob, blen) : 0;
        if (raw && (ZSTD_isError(got) || got != (size_t)raw)) r = QF_ERR_FORMAT;
    }
    if (r == QF_OK) {
        out[raw] = 0;
        *text = out;
        *len = (size_t)raw;
        if (info) {
            memset(info, 0, sizeof *info);
            info->tokens_in = sqlite3_column_int(st, 2);
            info->tokens_out = sqlite3_column_int(st, 3);
            const char *f = (const char *)sqlite3_column_text(st, 4);
            snprintf(info->finish, sizeof info->finish, "%s", f ? f : "");
        }
        sqlite3_reset(st);
        return QF_OK;
    }
    qf_free(out);
    sqlite3_reset(st);
    qf_warn("%s: a cached response does not decode; it will be computed again", s->path);
    st = stmt(s, ST_CACHE_DEL);
    sqlite3_bind_blob(st, 1, key->b, 16, SQLITE_STATIC);
    sqlite3_step(st);
    sqlite3_reset(st);
    return QF_ERR_SET(err, QF_ERR_FORMAT, "%s: corrupt cache entry dropped", s->path);
}

qf_status qf_store_cache_put(qf_store *s, const qf_cache_key *key, const char *model, const char *text, size_t len,
                             const qf_cache_info *info, qf_err *err) {
    size_t cap = ZSTD_compressBound(len);
    void *buf = qf_malloc(cap ? cap : 1);
    if (!buf) return QF_ERR_SET(err, QF_ERR_NOMEM, "out of memory (compressing %zu bytes)", len);
    size_t n = ZSTD_compressCCtx(s->cctx, buf, cap, text, len, 3);
    if (ZSTD_isError(n)) {
        qf_free(buf);
        return QF_ERR_SET(err, QF_ERR_INTERNAL, "zstd: %s", ZSTD_getErrorName(n));
    }
    sqlite3_stmt *st = stmt(s, ST_CACHE_PUT);
    sqlite3_bind_blob(st, 1, key->b, 16, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, model ? model : "", -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, buf, (int)n, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)len);
    sqlite3_bind_int(st, 5, info ? info->tokens_in : 0);
    sqlite3_bind_int(st, 6, info ? info->tokens_out : 0);
    sqlite3_bind_text(st, 7, info ? info->finish : "", -1, SQLITE_STATIC);
    qf_status r = sqlite3_step(st) == SQLITE_DONE ? QF_OK : db_fail(s, err, "write cache");
    sqlite3_reset(st);
    qf_free(buf);
    return r;
}

static int64_t count_sql(qf_store *s, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t n = 0;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

int64_t qf_store_cache_count(qf_store *s) { return count_sql(s, "SELECT count(*) FROM cache"); }

/* ---- job state ---- */

qf_status qf_store_job_reset(qf_store *s, qf_err *err) {
    return exec(s,
                "BEGIN IMMEDIATE; DELETE FROM docs; DELETE FROM chunks; DELETE FROM pairs; DELETE FROM failures;"
                " DELETE FROM metrics_snapshot;"
                " DELETE FROM meta WHERE key LIKE 'size:%' OR key='signature'; COMMIT;",
                err);
}

qf_status qf_store_doc_get(qf_store *s, const char *path, qf_store_doc *out, qf_err *err) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = stmt(s, ST_DOC_GET);
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) return QF_ERR_NOT_FOUND;
    if (rc != SQLITE_ROW) return db_fail(s, err, "read docs");
    out->id = sqlite3_column_int64(st, 0);
    out->size = sqlite3_column_int64(st, 1);
    out->mtime_ns = sqlite3_column_int64(st, 2);
    out->status = (qf_doc_status)sqlite3_column_int(st, 3);
    out->n_chunks = sqlite3_column_int(st, 4);
    sqlite3_reset(st);
    return QF_OK;
}

qf_status qf_store_doc_put(qf_store *s, const char *path, int64_t size, int64_t mtime_ns, qf_doc_status status,
                           int32_t n_chunks, const char *note, int64_t *id, qf_err *err) {
    sqlite3_stmt *st = stmt(s, ST_DOC_PUT);
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, size);
    sqlite3_bind_int64(st, 3, mtime_ns);
    sqlite3_bind_int(st, 4, (int)status);
    sqlite3_bind_int(st, 5, n_chunks);
    if (note) sqlite3_bind_text(st, 6, note, -1, SQLITE_STATIC);
    qf_status r = sqlite3_step(st) == SQLITE_DONE ? QF_OK : db_fail(s, err, "write docs");
    sqlite3_reset(st);
    if (r != QF_OK || !id) return r;
    qf_store_doc d;
    r = qf_store_doc_get(s, path, &d, err);
    *id = d.id;
    return r;
}

qf_status qf_store_doc_forget(qf_store *s, int64_t doc_id, qf_err *err) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "DELETE FROM chunks WHERE doc_id=%lld; DELETE FROM pairs WHERE doc_id=%lld;"
             " DELETE FROM failures WHERE doc_id=%lld;",
             (long long)doc_id, (long long)doc_id, (long long)doc_id);
    return exec(s, sql, err);
}

bool qf_store_chunk_is_done(qf_store *s, int64_t doc_id, int32_t idx, int64_t start, int64_t end) {
    sqlite3_stmt *st = stmt(s, ST_CHUNK_GET);
    sqlite3_bind_int64(st, 1, doc_id);
    sqlite3_bind_int(st, 2, idx);
    bool done = false;
    if (sqlite3_step(st) == SQLITE_ROW)
        done = sqlite3_column_int64(st, 0) == start && sqlite3_column_int64(st, 1) == end;
    sqlite3_reset(st);
    return done;
}

qf_status qf_store_chunk_done(qf_store *s, int64_t doc_id, int32_t idx, int64_t start, int64_t end,
                              int32_t n_pairs, qf_err *err) {
    sqlite3_stmt *st = stmt(s, ST_CHUNK_PUT);
    sqlite3_bind_int64(st, 1, doc_id);
    sqlite3_bind_int(st, 2, idx);
    sqlite3_bind_int64(st, 3, start);
    sqlite3_bind_int64(st, 4, end);
    sqlite3_bind_int(st, 5, n_pairs);
    qf_status r = sqlite3_step(st) == SQLITE_DONE ? QF_OK : db_fail(s, err, "write chunks");
    sqlite3_reset(st);
    return r;
}

int32_t qf_store_chunks_done(qf_store *s, int64_t doc_id) {
    sqlite3_stmt *st = stmt(s, ST_CHUNK_COUNT);
    sqlite3_bind_int64(st, 1, doc_id);
    int32_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_reset(st);
    return n;
}

qf_status qf_store_pair_add(qf_store *s, const qf_pair *p, qf_err *err) {
    sqlite3_stmt *st = stmt(s, ST_PAIR_ADD);
    sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, p->doc_id);
    sqlite3_bind_text(st, 3, p->path, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, p->chunk);
    sqlite3_bind_int64(st, 5, p->start);
    sqlite3_bind_int64(st, 6, p->end);
    sqlite3_bind_int(st, 7, p->pass);
    sqlite3_bind_text(st, 8, p->question, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, p->answer, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 10, p->score);
    sqlite3_bind_text(st, 11, p->model ? p->model : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 12, (int)p->status);
    sqlite3_bind_int64(st, 13, (sqlite3_int64)p->qhash);
    sqlite3_bind_int64(st, 14, (sqlite3_int64)p->simhash);
    if (p->dup_of) sqlite3_bind_text(st, 15, p->dup_of, -1, SQLITE_STATIC);
    qf_status r = sqlite3_step(st) == SQLITE_DONE ? QF_OK : db_fail(s, err, "write pairs");
    sqlite3_reset(st);
    return r;
}

qf_status qf_store_failure_add(qf_store *s, const qf_failure *f, qf_err *err) {
    sqlite3_stmt *st = stmt(s, ST_FAIL_ADD);
    sqlite3_bind_int64(st, 1, f->doc_id);
    sqlite3_bind_text(st, 2, f->path ? f->path : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, f->chunk);
    sqlite3_bind_int(st, 4, f->pass);
    sqlite3_bind_text(st, 5, f->reason ? f->reason : "unknown", -1, SQLITE_STATIC);
    const char *d = f->detail ? f->detail : "";
    size_t dl = strlen(d);
    if (dl > 2048) dl = 2048;
    sqlite3_bind_text(st, 6, d, (int)dl, SQLITE_STATIC);
    qf_status r = sqlite3_step(st) == SQLITE_DONE ? QF_OK : db_fail(s, err, "write failures");
    sqlite3_reset(st);
    return r;
}

qf_status qf_store_pairs_foreach(qf_store *s, qf_pair_status status, qf_store_pair_fn fn, void *ud, qf_err *err) {
    sqlite3_stmt *st = NULL;
    const char *sql = "SELECT id,doc_id,path,chunk,start,end,pass,question,answer,score,model,status,qhash,simhash,"
                      "dup_of FROM pairs WHERE status=?1 ORDER BY seq";
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return db_fail(s, err, "read pairs");
    sqlite3_bind_int(st, 1, (int)status);
    qf_status r = QF_OK;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        qf_pair p;
        memset(&p, 0, sizeof p);
        const char *id = (const char *)sqlite3_column_text(st, 0);
        snprintf(p.id, sizeof p.id, "%s", id ? id : "");
        p.doc_id = sqlite3_column_int64(st, 1);
        p.path = (const char *)sqlite3_column_text(st, 2);
        p.chunk = sqlite3_column_int(st, 3);
        p.start = sqlite3_column_int64(st, 4);
        p.end = sqlite3_column_int64(st, 5);
        p.pass = sqlite3_column_int(st, 6);
        p.question = (const char *)sqlite3_column_text(st, 7);
        p.answer = (const char *)sqlite3_column_text(st, 8);
        p.score = sqlite3_column_int(st, 9);
        p.model = (const char *)sqlite3_column_text(st, 10);
        p.status = (qf_pair_status)sqlite3_column_int(st, 11);
        p.qhash = (uint64_t)sqlite3_column_int64(st, 12);
        p.simhash = (uint64_t)sqlite3_column_int64(st, 13);
        p.dup_of = (const char *)sqlite3_column_text(st, 14);
        if (!p.path) p.path = "";
        if (!p.question) p.question = "";
        if (!p.answer) p.answer = "";
        if (fn(ud, &p)) {
            r = QF_ERR_CANCELLED;
            break;
        }
    }
    if (r == QF_OK && rc != SQLITE_DONE) r = db_fail(s, err, "read pairs");
    sqlite3_finalize(st);
    return r;
}

void qf_store_get_counts(qf_store *s, qf_store_counts *out) {
    memset(out, 0, sizeof *out);
    out->docs = count_sql(s, "SELECT count(*) FROM docs");
    out->docs_done = count_sql(s, "SELECT count(*) FROM docs WHERE status=1");
    out->chunks_done = count_sql(s, "SELECT count(*) FROM chunks WHERE status=1");
    out->pairs[0] = count_sql(s, "SELECT count(*) FROM pairs WHERE status=0");
    out->pairs[1] = count_sql(s, "SELECT count(*) FROM pairs WHERE status=1");
    out->pairs[2] = count_sql(s, "SELECT count(*) FROM pairs WHERE status=2");
    out->failures = count_sql(s, "SELECT count(*) FROM failures");
}

/* ---- metrics snapshots ---- */

qf_status qf_store_snapshot_put(qf_store *s, double ts, const char *state, const char *json, qf_err *err) {
    bool own = sqlite3_get_autocommit(s->db) != 0;
    qf_status r = own ? qf_store_begin(s, err) : QF_OK;
    if (r != QF_OK) return r;
    sqlite3_stmt *st = stmt(s, ST_SNAP_PUT);
    sqlite3_bind_double(st, 1, ts);
    sqlite3_bind_text(st, 2, state ? state : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, json ? json : "", -1, SQLITE_STATIC);
    r = sqlite3_step(st) == SQLITE_DONE ? QF_OK : db_fail(s, err, "write metrics snapshot");
    sqlite3_reset(st);
    if (r == QF_OK) {
        sqlite3_int64 last = sqlite3_last_insert_rowid(s->db);
        st = stmt(s, ST_SNAP_TRIM);
        sqlite3_bind_int64(st, 1, last - QF_STORE_SNAPSHOTS_KEEP);
        r = sqlite3_step(st) == SQLITE_DONE ? QF_OK : db_fail(s, err, "trim metrics snapshots");
        sqlite3_reset(st);
    }
    if (!own) return r;
    if (r == QF_OK) return qf_store_commit(s, err);
    qf_store_rollback(s);
    return r;
}

int64_t qf_store_snapshot_count(qf_store *s) { return count_sql(s, "SELECT count(*) FROM metrics_snapshot"); }

void qf_store_failures_by_reason(qf_store *s, void (*fn)(void *ud, const char *reason, int64_t n), void *ud) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT reason, count(*) FROM failures GROUP BY reason ORDER BY 2 DESC", -1, &st,
                           NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        fn(ud, r ? r : "", sqlite3_column_int64(st, 1));
    }
    sqlite3_finalize(st);
}

void qf_store_failures_foreach(qf_store *s,
                               void (*fn)(void *ud, const char *path, int32_t chunk, int32_t pass, const char *reason,
                                          const char *detail),
                               void *ud) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT path,chunk,pass,reason,detail FROM failures ORDER BY seq", -1, &st,
                           NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(st, 0);
        const char *r = (const char *)sqlite3_column_text(st, 3);
        const char *d = (const char *)sqlite3_column_text(st, 4);
        fn(ud, p ? p : "", sqlite3_column_int(st, 1), sqlite3_column_int(st, 2), r ? r : "", d ? d : "");
    }
    sqlite3_finalize(st);
}
