/* checkpoint.c: safetensors writer and validating reader (see checkpoint.h). */
#define _GNU_SOURCE
#include "core/checkpoint.h"
#include "util/faults_hint.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c writes the host's bytes as little-endian: a big-endian port must swap them"
#endif

/* The header may not exceed this (safetensors' own readers refuse more than 100 MB). */
#define CKPT_MAX_HEADER (100u << 20)

static const char *const dtype_names[CKPT_N_DTYPES] = {"F32", "I64", "U64", "I32", "U8"};
static const size_t dtype_sizes[CKPT_N_DTYPES] = {4, 8, 8, 4, 1};

const char *ckpt_dtype_name(ckpt_dtype d) {
    assert(d >= 0 && d < CKPT_N_DTYPES);
    return dtype_names[d];
}

size_t ckpt_dtype_size(ckpt_dtype d) {
    assert(d >= 0 && d < CKPT_N_DTYPES);
    return dtype_sizes[d];
}

static int64_t numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* "[128,64]" into buf, for messages. */
static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* ---- writer ---- */

struct ckpt_writer {
    ckpt_tensor *t;
    int n, cap;
    cJSON *meta;
};

ckpt_writer *ckpt_writer_new(void) {
    ckpt_writer *w = cg_calloc(1, sizeof *w);
    w->meta = cJSON_CreateObject();
    return w;
}

void ckpt_writer_free(ckpt_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free((char *)w->t[i].name);
    free(w->t);
    cJSON_Delete(w->meta);
    free(w);
}

void ckpt_writer_add(ckpt_writer *w, const char *name, ckpt_dtype dtype, int ndim,
                     const int64_t *shape, const void *data) {
    assert(name && *name && strcmp(name, "__metadata__") != 0);
    assert(ndim >= 0 && ndim <= CKPT_MAX_DIMS);
    assert(dtype >= 0 && dtype < CKPT_N_DTYPES);
    for (int i = 0; i < w->n; i++) assert(strcmp(w->t[i].name, name) != 0);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->t = cg_realloc(w->t, (size_t)w->cap * sizeof *w->t);
    }
    ckpt_tensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = cg_strdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        assert(shape[i] >= 0);
        t->shape[i] = shape[i];
    }
    t->data = data;
}

void ckpt_writer_add_f32(ckpt_writer *w, const char *name, const float *data, int ndim,
                         const int64_t *shape) {
    ckpt_writer_add(w, name, CKPT_F32, ndim, shape, data);
}

void ckpt_writer_meta(ckpt_writer *w, const char *key, const char *value) {
    cJSON_DeleteItemFromObjectCaseSensitive(w->meta, key);
    cJSON_AddStringToObject(w->meta, key, value);
}

int ckpt_writer_save(ckpt_writer *w, const char *path) {
    cJSON *hdr = cJSON_CreateObject();
    cJSON_AddItemReferenceToObject(hdr, "__metadata__", w->meta);
    int64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const ckpt_tensor *t = &w->t[i];
        int64_t nbytes = numel(t->ndim, t->shape) * (int64_t)dtype_sizes[t->dtype];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "dtype", dtype_names[t->dtype]);
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nbytes)));
        cJSON_AddItemToObject(hdr, t->name, o);
        off += nbytes;
    }
    char *json = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(hdr);
    size_t jlen = strlen(json);
    size_t padded = (8 + jlen + 7) / 8 * 8 - 8;
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)padded >> (8 * i));

    cg_afile af;
    int rc = cg_afile_open(&af, path);
    if (rc) {
        free(json);
        return rc;
    }
    int ok = fwrite(len_le, 1, 8, af.fp) == 8 && fwrite(json, 1, jlen, af.fp) == jlen;
    for (size_t i = jlen; ok && i < padded; i++) ok = fputc(' ', af.fp) != EOF;
    for (int i = 0; ok && i < w->n; i++) {
        const ckpt_tensor *t = &w->t[i];
        size_t nbytes = (size_t)numel(t->ndim, t->shape) * dtype_sizes[t->dtype];
        ok = nbytes == 0 || fwrite(t->data, 1, nbytes, af.fp) == nbytes;
    }
    free(json);
    if (!ok) {
        int e = errno;
        rc = cg_err(CG_EFAIL, "cannot write checkpoint '%s': %s%s", path, strerror(e), cg_write_hint(e));
        cg_afile_abort(&af);
        return rc;
    }
    return cg_afile_commit(&af);
}

/* ---- reader ---- */

typedef struct {
    char *name;
    ckpt_dtype dtype;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    int64_t begin, end;
} ckpt_entry;

struct ckpt_file {
    char *path;
    FILE *fp;
    int64_t data_start;
    ckpt_entry *e;
    int n;
    cJSON *meta;
};

static int entry_cmp(const void *a, const void *b) {
    const ckpt_entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_u53(const cJSON *j, int64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d < 9007199254740992.0) || floor(d) != d) return 0;
    *out = (int64_t)d;
    return 1;
}

static int parse_entry(ckpt_file *f, const cJSON *o, ckpt_entry *e) {
    const char *path = f->path;
    if (!cJSON_IsObject(o))
        return cg_err(CG_EUSER, "checkpoint '%s': tensor '%s' is not a JSON object", path, o->string);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(o, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(o, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(o, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return cg_err(CG_EUSER, "checkpoint '%s': tensor '%s' needs \"dtype\", \"shape\" and two "
                      "\"data_offsets\"", path, o->string);
    e->dtype = CKPT_N_DTYPES;
    for (int d = 0; d < CKPT_N_DTYPES; d++)
        if (strcmp(dt->valuestring, dtype_names[d]) == 0) e->dtype = (ckpt_dtype)d;
    if (e->dtype == CKPT_N_DTYPES)
        return cg_err(CG_EUSER, "checkpoint '%s': tensor '%s' has unsupported dtype '%s' "
                      "(F32, I64, U64, I32, U8 are read)", path, o->string, dt->valuestring);
    e->ndim = cJSON_GetArraySize(sh);
    if (e->ndim > CKPT_MAX_DIMS)
        return cg_err(CG_EUSER, "checkpoint '%s': tensor '%s' has %d dimensions (at most %d)", path,
                      o->string, e->ndim, CKPT_MAX_DIMS);
    double elems = 1;
    for (int d = 0; d < e->ndim; d++) {
        if (!json_u53(cJSON_GetArrayItem(sh, d), &e->shape[d]))
            return cg_err(CG_EUSER, "checkpoint '%s': tensor '%s' has a bad shape", path, o->string);
        elems *= (double)e->shape[d];
    }
    if (!json_u53(cJSON_GetArrayItem(of, 0), &e->begin) || !json_u53(cJSON_GetArrayItem(of, 1), &e->end) ||
        e->end < e->begin)
        return cg_err(CG_EUSER, "checkpoint '%s': tensor '%s' has bad data_offsets", path, o->string);
    if (elems * (double)dtype_sizes[e->dtype] != (double)(e->end - e->begin))
        return cg_err(CG_EUSER, "checkpoint '%s': tensor '%s' has %lld bytes but its shape and "
                      "dtype need %.0f", path, o->string, (long long)(e->end - e->begin),
                      elems * (double)dtype_sizes[e->dtype]);
    e->name = cg_strdup(o->string);
    return CG_OK;
}

int ckpt_open(const char *path, ckpt_file **out) {
    *out = NULL;
    int rc = CG_OK;
    char *hjson = NULL;
    cJSON *hdr = NULL;
    ckpt_file *f = cg_calloc(1, sizeof *f);
    f->path = cg_strdup(path);
    f->fp = fopen(path, "rb");
    if (!f->fp) {
        rc = cg_err(errno == ENOENT ? CG_EUSER : CG_EFAIL, "cannot open checkpoint '%s': %s", path,
                    strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fileno(f->fp), &st) != 0) {
        rc = cg_err(CG_EFAIL, "cannot stat checkpoint '%s': %s", path, strerror(errno));
        goto out;
    }
    int64_t fsize = (int64_t)st.st_size;
    uint8_t len_le[8];
    if (fsize < 8 || fread(len_le, 1, 8, f->fp) != 8) {
        rc = cg_err(CG_EUSER, "checkpoint '%s' is truncated (%lld bytes, no header)", path,
                    (long long)fsize);
        goto out;
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)len_le[i] << (8 * i);
    if (hlen > CKPT_MAX_HEADER || (int64_t)hlen > fsize - 8) {
        rc = cg_err(CG_EUSER, "checkpoint '%s' is truncated or not a safetensors file: header "
                    "length %llu beyond the file's %lld bytes", path, (unsigned long long)hlen,
                    (long long)fsize);
        goto out;
    }
    hjson = cg_malloc(hlen + 1);
    if (fread(hjson, 1, hlen, f->fp) != hlen) {
        rc = cg_err(CG_EFAIL, "cannot read checkpoint '%s': %s", path, strerror(errno));
        goto out;
    }
    hjson[hlen] = 0;
    f->data_start = 8 + (int64_t)hlen;
    hdr = cJSON_ParseWithLength(hjson, hlen);
    if (!hdr || !cJSON_IsObject(hdr)) {
        rc = cg_err(CG_EUSER, "checkpoint '%s': malformed JSON header", path);
        goto out;
    }
    int cap = cJSON_GetArraySize(hdr);
    f->e = cg_calloc((size_t)(cap ? cap : 1), sizeof *f->e);
    for (cJSON *o = hdr->child; o; o = o->next) {
        if (strcmp(o->string, "__metadata__") == 0) {
            for (cJSON *m = o->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    rc = cg_err(CG_EUSER, "checkpoint '%s': metadata '%s' is not a string", path, m->string);
                    goto out;
                }
            f->meta = cJSON_DetachItemViaPointer(hdr, o);
            break;
        }
    }
    for (cJSON *o = hdr->child; o; o = o->next) {
        for (int i = 0; i < f->n; i++)
            if (strcmp(f->e[i].name, o->string) == 0) {
                rc = cg_err(CG_EUSER, "checkpoint '%s': tensor '%s' appears twice", path, o->string);
                goto out;
            }
        if ((rc = parse_entry(f, o, &f->e[f->n]))) goto out;
        f->n++;
    }
    /* The data must be covered exactly: back to back, no holes, no overlaps, ending at EOF. */
    ckpt_entry *sorted = cg_malloc((size_t)(f->n ? f->n : 1) * sizeof *sorted);
    memcpy(sorted, f->e, (size_t)f->n * sizeof *sorted);
    qsort(sorted, (size_t)f->n, sizeof *sorted, entry_cmp);
    int64_t pos = 0;
    for (int i = 0; i < f->n && rc == CG_OK; i++) {
        if (sorted[i].begin != pos)
            rc = cg_err(CG_EUSER, "checkpoint '%s': tensor '%s' data at offset %lld, expected %lld "
                        "(holes or overlapping tensors)", path, sorted[i].name,
                        (long long)sorted[i].begin, (long long)pos);
        pos = sorted[i].end;
    }
    free(sorted);
    if (rc) goto out;
    if (f->data_start + pos != fsize) {
        rc = cg_err(CG_EUSER, "checkpoint '%s' is %s: the header describes %lld data bytes, the "
                    "file has %lld", path,
                    f->data_start + pos > fsize ? "truncated" : "longer than its header says",
                    (long long)pos, (long long)(fsize - f->data_start));
        goto out;
    }
out:
    free(hjson);
    cJSON_Delete(hdr);
    if (rc) ckpt_close(f);
    else *out = f;
    return rc;
}

void ckpt_close(ckpt_file *f) {
    if (!f) return;
    if (f->fp) fclose(f->fp);
    for (int i = 0; i < f->n; i++) free(f->e[i].name);
    free(f->e);
    cJSON_Delete(f->meta);
    free(f->path);
    free(f);
}

const char *ckpt_path(const ckpt_file *f) { return f->path; }

const char *ckpt_meta(const ckpt_file *f, const char *key) {
    const cJSON *m = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, key) : NULL;
    return cJSON_IsString(m) ? m->valuestring : NULL;
}

static const ckpt_entry *find(const ckpt_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->e[i].name, name) == 0) return &f->e[i];
    return NULL;
}

int ckpt_has(const ckpt_file *f, const char *name) { return find(f, name) != NULL; }
int ckpt_n_tensors(const ckpt_file *f) { return f->n; }
const char *ckpt_tensor_name(const ckpt_file *f, int i) {
    assert(i >= 0 && i < f->n);
    return f->e[i].name;
}

int ckpt_read(ckpt_file *f, const char *name, ckpt_dtype dtype, int ndim, const int64_t *shape,
              void *dst) {
    const ckpt_entry *e = find(f, name);
    if (!e)
        return cg_err(CG_EUSER, "checkpoint '%s' has no tensor '%s' (was it written by another "
                      "model or stage?)", f->path, name);
    int same = e->dtype == dtype && e->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = e->shape[d] == shape[d];
    if (!same) {
        char a[160], b[160];
        return cg_err(CG_EUSER, "checkpoint '%s': tensor '%s' is %s %s, the model expects %s %s "
                      "(a checkpoint of another model size?)", f->path, name, dtype_names[e->dtype],
                      shape_str(a, sizeof a, e->ndim, e->shape), dtype_names[dtype],
                      shape_str(b, sizeof b, ndim, shape));
    }
    size_t nbytes = (size_t)(e->end - e->begin);
    if (fseeko(f->fp, (off_t)(f->data_start + e->begin), SEEK_SET) != 0 ||
        (nbytes && fread(dst, 1, nbytes, f->fp) != nbytes))
        return cg_err(CG_EFAIL, "cannot read tensor '%s' of checkpoint '%s': %s", name, f->path,
                      feof(f->fp) ? "unexpected end of file" : strerror(errno));
    return CG_OK;
}

int ckpt_read_f32(ckpt_file *f, const char *name, int ndim, const int64_t *shape, float *dst) {
    return ckpt_read(f, name, CKPT_F32, ndim, shape, dst);
}
