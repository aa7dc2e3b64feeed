/* data.c: vocabulary, tokenizer, .npy, caption/conversation/corpus loaders, nested fraction
 * subsets and the prompt formats (see data.h). */
#include "core/data.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/rng.h"
#include "util/util.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- vocabulary ---- */

static const char *const specials[4] = {"<pad>", "<bos>", "<eos>", "<unk>"};

static uint32_t hash_str(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* The id of the n-byte token at s, or -1. */
static int vocab_lookup(const data_vocab *v, const char *s, size_t n) {
    uint32_t mask = (uint32_t)v->table_cap - 1;
    for (uint32_t i = hash_str(s, n) & mask;; i = (i + 1) & mask) {
        int id = v->table[i];
        if (id < 0) return -1;
        if (strlen(v->words[id]) == n && !memcmp(v->words[id], s, n)) return id;
    }
}

int data_vocab_id(const data_vocab *v, const char *token) {
    return vocab_lookup(v, token, strlen(token));
}

/* Takes ownership of words[0..n). `what` names the source in errors. */
static int vocab_build(data_vocab *v, char **words, int n, const char *what) {
    memset(v, 0, sizeof *v);
    v->n = n;
    v->words = words;
    v->table_cap = 16;
    while (v->table_cap < 2 * n) v->table_cap *= 2;
    v->table = cg_malloc(sizeof *v->table * (size_t)v->table_cap);
    for (int i = 0; i < v->table_cap; i++) v->table[i] = -1;
    int rc = CG_OK;
    if (n < 4) rc = cg_err(CG_EUSER, "%s: has %d tokens; it must start with <pad> <bos> <eos> <unk>", what, n);
    for (int i = 0; rc == CG_OK && i < n; i++) {
        if (i < 4 && strcmp(words[i], specials[i]) != 0) {
            rc = cg_err(CG_EUSER, "%s: line %d is '%s' but must be '%s' (the specials come first)", what,
                        i + 1, words[i], specials[i]);
        } else if (!words[i][0] || strpbrk(words[i], " \t\r\n")) {
            rc = cg_err(CG_EUSER, "%s: line %d: empty token or token with whitespace", what, i + 1);
        } else if (data_vocab_id(v, words[i]) >= 0) {
            rc = cg_err(CG_EUSER, "%s: line %d: duplicate token '%s'", what, i + 1, words[i]);
        } else {
            uint32_t mask = (uint32_t)v->table_cap - 1, j = hash_str(words[i], strlen(words[i])) & mask;
            while (v->table[j] >= 0) j = (j + 1) & mask;
            v->table[j] = i;
        }
    }
    if (rc) data_vocab_free(v);
    return rc;
}

int data_vocab_from_words(const char *const *words, int n, data_vocab *v) {
    char **copy = cg_malloc(sizeof *copy * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) copy[i] = cg_strdup(words[i]);
    return vocab_build(v, copy, n, "vocabulary");
}

int data_vocab_load(const char *path, data_vocab *v) {
    char *text;
    size_t len;
    int rc = cg_read_file(path, &text, &len);
    if (rc) return cg_err_wrap(rc, "cannot load vocabulary");
    if (memchr(text, 0, len)) {
        free(text);
        return cg_err(CG_EUSER, "%s: not a text file (contains NUL bytes)", path);
    }
    int n = 0, cap = 256;
    char **words = cg_malloc(sizeof *words * (size_t)cap);
    char *p = text;
    while (*p) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l && p[l - 1] == '\r') l--;
        if (n == cap) words = cg_realloc(words, sizeof *words * (size_t)(cap *= 2));
        words[n++] = cg_strndup(p, l);
        if (!nl) break;
        p = nl + 1;
    }
    free(text);
    return vocab_build(v, words, n, path);
}

void data_vocab_free(data_vocab *v) {
    for (int i = 0; v->words && i < v->n; i++) free(v->words[i]);
    free(v->words);
    free(v->table);
    memset(v, 0, sizeof *v);
}

/* ---- tokenizer ---- */

static int is_punct(char c) { return c && strchr(".,?:;!()", c) != NULL; }
static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void data_encode(const data_vocab *v, const char *text, int *ids, int max, int *n, int *n_unk) {
    int count = 0, unk = 0;
    const char *p = text;
    while (*p) {
        if (is_space(*p)) {
            p++;
            continue;
        }
        size_t len = 1;
        if (*p == '<') {  /* a special such as <image>: up to '>' if no space comes first */
            const char *q = p + 1;
            while (*q && *q != '>' && !is_space(*q)) q++;
            len = *q == '>' ? (size_t)(q - p) + 1 : 0;
        }
        if (!is_punct(*p) && !(*p == '<' && len)) {
            len = 0;
            while (p[len] && !is_space(p[len]) && !is_punct(p[len])) len++;
        }
        int id = vocab_lookup(v, p, len);
        if (id < 0) {
            id = DATA_UNK;
            unk++;
        }
        if (count < max) ids[count] = id;
        count++;
        p += len;
    }
    *n = count;
    if (n_unk) *n_unk = unk;
}

char *data_decode(const data_vocab *v, const int *ids, int n) {
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, "");
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id == DATA_PAD || id == DATA_BOS || id == DATA_EOS) continue;
        const char *w = id >= 0 && id < v->n ? v->words[id] : "<unk>";
        if (b.len && !(is_punct(w[0]) && !w[1])) cg_buf_adds(&b, " ");
        cg_buf_adds(&b, w);
    }
    return cg_buf_steal(&b);
}

/* ---- .npy ---- */

/* Finds the value after 'key': in a numpy header dict. */
static const char *npy_field(const char *hdr, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static int npy_parse_header(const char *path, const char *hdr, data_u8_array *a) {
    const char *d = npy_field(hdr, "descr");
    if (!d) return cg_err(CG_EUSER, "%s: malformed .npy header: no 'descr'", path);
    if (strncmp(d, "'|u1'", 5) && strncmp(d, "'<u1'", 5) && strncmp(d, "'>u1'", 5) && strncmp(d, "'u1'", 4)) {
        const char *e = strchr(d + 1, d[0] == '\'' ? '\'' : ',');
        int l = e ? (int)(e - d) + 1 : 8;
        return cg_err(CG_EUSER, "%s: dtype is %.*s, expected uint8 ('|u1'); save with .astype(np.uint8)",
                      path, l > 20 ? 20 : l, d);
    }
    const char *f = npy_field(hdr, "fortran_order");
    if (!f) return cg_err(CG_EUSER, "%s: malformed .npy header: no 'fortran_order'", path);
    if (!strncmp(f, "True", 4))
        return cg_err(CG_EUSER, "%s: array is in Fortran order; save a C-order array (np.ascontiguousarray)", path);
    if (strncmp(f, "False", 5)) return cg_err(CG_EUSER, "%s: malformed .npy header: bad 'fortran_order'", path);
    const char *s = npy_field(hdr, "shape");
    if (!s || *s != '(') return cg_err(CG_EUSER, "%s: malformed .npy header: no 'shape' tuple", path);
    s++;
    a->ndim = 0;
    a->size = 1;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        char *end;
        errno = 0;
        long long dim = strtoll(s, &end, 10);
        if (end == s || errno || dim < 0 || a->ndim == 8)
            return cg_err(CG_EUSER, "%s: malformed .npy header: bad 'shape'", path);
        if (dim && a->size > SIZE_MAX / (size_t)dim)
            return cg_err(CG_EUSER, "%s: .npy shape is too large", path);
        a->shape[a->ndim++] = dim;
        a->size *= (size_t)dim;
        s = end;
        if (*s != ',' && *s != ')' && *s != ' ')
            return cg_err(CG_EUSER, "%s: malformed .npy header: bad 'shape'", path);
    }
    return CG_OK;
}

int data_load_npy_u8(const char *path, data_u8_array *a) {
    memset(a, 0, sizeof *a);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return cg_err(errno == ENOENT ? CG_EUSER : CG_EFAIL, "cannot open '%s': %s", path, strerror(errno));
    int rc = CG_OK;
    char *hdr = NULL;
    uint8_t pre[12];
    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        rc = cg_err(CG_EUSER, "%s: not a .npy file (bad magic)", path);
        goto out;
    }
    size_t hlen, off;
    if (pre[6] == 1) {
        hlen = pre[8] | (size_t)pre[9] << 8;
        off = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 10, 1, 2, fp) != 2) {
            rc = cg_err(CG_EUSER, "%s: truncated .npy header", path);
            goto out;
        }
        hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        off = 12;
    } else {
        rc = cg_err(CG_EUSER, "%s: unsupported .npy format version %d.%d", path, pre[6], pre[7]);
        goto out;
    }
    if (hlen > (1u << 20)) {
        rc = cg_err(CG_EUSER, "%s: malformed .npy header (length %zu)", path, hlen);
        goto out;
    }
    hdr = cg_malloc(hlen + 1);
    if (fread(hdr, 1, hlen, fp) != hlen) {
        rc = cg_err(CG_EUSER, "%s: truncated .npy header", path);
        goto out;
    }
    hdr[hlen] = 0;
    if ((rc = npy_parse_header(path, hdr, a))) goto out;
    if (fseek(fp, 0, SEEK_END) != 0) {
        rc = cg_err(CG_EFAIL, "%s: cannot seek: %s", path, strerror(errno));
        goto out;
    }
    long flen = ftell(fp);
    size_t body = flen < 0 ? 0 : (size_t)flen - off - hlen;
    if (body != a->size) {
        cg_buf shape;
        cg_buf_init(&shape);
        for (int i = 0; i < a->ndim; i++) cg_buf_addf(&shape, "%s%lld", i ? "x" : "", (long long)a->shape[i]);
        rc = cg_err(CG_EUSER, "%s: %s: header says shape %s = %zu bytes, file has %zu", path,
                    body < a->size ? "truncated" : "trailing bytes", shape.data ? shape.data : "()",
                    a->size, body);
        cg_buf_free(&shape);
        goto out;
    }
    fseek(fp, (long)(off + hlen), SEEK_SET);
    a->data = cg_malloc(a->size ? a->size : 1);
    if (fread(a->data, 1, a->size, fp) != a->size) {
        rc = cg_err(CG_EFAIL, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
out:
    fclose(fp);
    free(hdr);
    if (rc) data_u8_array_free(a);
    return rc;
}

int data_write_npy_u8(FILE *fp, const uint8_t *data, int ndim, const int64_t *shape) {
    assert(ndim >= 0 && ndim <= 8);
    cg_buf h;
    cg_buf_init(&h);
    cg_buf_adds(&h, "{'descr': '|u1', 'fortran_order': False, 'shape': (");
    size_t size = 1;
    for (int i = 0; i < ndim; i++) {
        cg_buf_addf(&h, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
        size *= (size_t)shape[i];
    }
    if (ndim > 1) h.len--, h.data[h.len] = 0;  /* "(2, 3)" but "(5,)" */
    cg_buf_adds(&h, "), }");
    while ((10 + h.len + 1) % 64) cg_buf_adds(&h, " ");
    cg_buf_adds(&h, "\n");
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(h.len & 0xff), (uint8_t)(h.len >> 8)};
    int ok = fwrite(pre, 1, 10, fp) == 10 && fwrite(h.data, 1, h.len, fp) == h.len &&
             (size == 0 || fwrite(data, 1, size, fp) == size);
    cg_buf_free(&h);
    return ok ? CG_OK : cg_err(CG_EFAIL, "cannot write .npy: %s", strerror(errno));
}

int data_save_npy_u8(const char *path, const uint8_t *data, int ndim, const int64_t *shape) {
    cg_afile af;
    int rc = cg_afile_open(&af, path);
    if (rc) return rc;
    if ((rc = data_write_npy_u8(af.fp, data, ndim, shape))) {
        cg_afile_abort(&af);
        return cg_err_wrap(rc, "%s", path);
    }
    return cg_afile_commit(&af);
}

void data_u8_array_free(data_u8_array *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}

int data_image_ref(const char *ref, const char *split, int64_t n_images, const char *what, int *index) {
    const char *slash = strrchr(ref, '/');
    if (!slash || slash == ref)
        return cg_err(CG_EUSER, "%s: image '%s' is not of the form SPLIT/INDEX", what, ref);
    if (split && (strlen(split) != (size_t)(slash - ref) || strncmp(ref, split, (size_t)(slash - ref))))
        return cg_err(CG_EUSER, "%s: image '%s' is not in split '%s'", what, ref, split);
    int64_t idx;
    if (cg_parse_i64(slash + 1, "image index", 0, INT32_MAX - 1, &idx))
        return cg_err(CG_EUSER, "%s: image '%s': the index after '/' must be a non-negative integer", what, ref);
    if (n_images >= 0 && idx >= n_images)
        return cg_err(CG_EUSER, "%s: image '%s': index %lld is out of range (the split has %lld images)",
                      what, ref, (long long)idx, (long long)n_images);
    *index = (int)idx;
    return CG_OK;
}

/* ---- captions (.jsonl) ---- */

/* A string field of a JSON object; ids may also be numbers (as in some LLaVA files). */
static int get_field(const cJSON *obj, const char *key, int allow_number, const char *what, char **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return cg_err(CG_EUSER, "%s: missing field '%s'", what, key);
    if (cJSON_IsString(it)) {
        *out = cg_strdup(it->valuestring);
        return CG_OK;
    }
    if (allow_number && cJSON_IsNumber(it)) {
        *out = cg_fmt("%.0f", it->valuedouble);
        return CG_OK;
    }
    return cg_err(CG_EUSER, "%s: field '%s' must be a string", what, key);
}

int data_load_captions(const char *path, const char *split, int64_t n_images, data_captions *out) {
    memset(out, 0, sizeof *out);
    char *text;
    int rc = cg_read_file(path, &text, NULL);
    if (rc) return cg_err_wrap(rc, "cannot load captions");
    int cap = 0, lineno = 0;
    for (char *p = text, *nl; rc == CG_OK && p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = 0;
        lineno++;
        if (!p[strspn(p, " \t\r")]) continue;
        char *what = cg_fmt("%s:%d", path, lineno);
        cJSON *j = NULL;
        if ((rc = cg_json_parse(p, what, &j)) == CG_OK) {
            if (!cJSON_IsObject(j)) {
                rc = cg_err(CG_EUSER, "%s: a caption line must be a JSON object", what);
            } else {
                if (out->n == cap) out->items = cg_realloc(out->items, sizeof *out->items * (size_t)(cap = cap ? 2 * cap : 1024));
                data_caption *c = &out->items[out->n];
                memset(c, 0, sizeof *c);
                out->n++;
                if (!(rc = get_field(j, "id", 1, what, &c->id)) && !(rc = get_field(j, "image", 0, what, &c->image)) &&
                    !(rc = get_field(j, "caption", 0, what, &c->caption)))
                    rc = data_image_ref(c->image, split, n_images, what, &c->image_index);
            }
            cJSON_Delete(j);
        }
        free(what);
    }
    free(text);
    if (rc == CG_OK && out->n == 0) rc = cg_err(CG_EUSER, "%s: no captions in the file", path);
    if (rc) data_captions_free(out);
    return rc;
}

void data_captions_free(data_captions *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->items[i].id);
        free(c->items[i].image);
        free(c->items[i].caption);
    }
    free(c->items);
    memset(c, 0, sizeof *c);
}

/* ---- conversations (LLaVA JSON) ---- */

/* The human turn without the image placeholder: "<image>\nQ", "Q\n<image>" and "<image>" alone
 * all give "Q". */
static char *strip_image_tag(const char *s) {
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, "");
    for (const char *p = s; *p;) {
        if (!strncmp(p, "<image>", 7)) {
            p += 7;
            if (*p == '\n') p++;
            else if (b.len && b.data[b.len - 1] == '\n') b.data[--b.len] = 0;
            continue;
        }
        cg_buf_add(&b, p, 1);
        p++;
    }
    char *r = cg_buf_steal(&b);
    size_t a = strspn(r, " \t\r\n"), e = strlen(r);
    while (e > a && is_space(r[e - 1])) e--;
    char *t = cg_strndup(r + a, e - a);
    free(r);
    return t;
}

static int conv_item(const cJSON *item, int k, const char *path, const char *split, int64_t n_images,
                     data_convs *out, int *cap) {
    char *what = cg_fmt("%s: conversation %d", path, k);
    char *id = NULL, *image = NULL;
    int rc = CG_OK, index = 0;
    if (!cJSON_IsObject(item)) {
        rc = cg_err(CG_EUSER, "%s: must be a JSON object", what);
        goto out;
    }
    if ((rc = get_field(item, "id", 1, what, &id))) goto out;
    free(what);
    what = cg_fmt("%s: conversation %d (id '%s')", path, k, id);
    if ((rc = get_field(item, "image", 0, what, &image))) goto out;
    if ((rc = data_image_ref(image, split, n_images, what, &index))) goto out;
    const cJSON *turns = cJSON_GetObjectItemCaseSensitive(item, "conversations");
    if (!turns) {
        rc = cg_err(CG_EUSER, "%s: missing field 'conversations'", what);
        goto out;
    }
    if (!cJSON_IsArray(turns) || cJSON_GetArraySize(turns) < 2 || cJSON_GetArraySize(turns) % 2) {
        rc = cg_err(CG_EUSER, "%s: field 'conversations' must be an array of (human, gpt) turn pairs", what);
        goto out;
    }
    int nt = cJSON_GetArraySize(turns);
    for (int t = 0; t < nt; t++) {
        const cJSON *turn = cJSON_GetArrayItem(turns, t);
        char *from = NULL, *value = NULL, *twhat = cg_fmt("%s: turn %d", what, t);
        rc = !cJSON_IsObject(turn) ? cg_err(CG_EUSER, "%s: must be a JSON object", twhat) : CG_OK;
        if (!rc) rc = get_field(turn, "from", 0, twhat, &from);
        if (!rc) rc = get_field(turn, "value", 0, twhat, &value);
        const char *want = t % 2 ? "gpt" : "human";
        if (!rc && strcmp(from, want))
            rc = cg_err(CG_EUSER, "%s: field 'from' is '%s', expected '%s'", twhat, from, want);
        if (!rc && t % 2 == 0) {
            if (out->n == *cap) out->items = cg_realloc(out->items, sizeof *out->items * (size_t)(*cap = *cap ? 2 * *cap : 1024));
            data_conv *c = &out->items[out->n++];
            c->id = t ? cg_fmt("%s#%d", id, t / 2 + 1) : cg_strdup(id);
            c->image = cg_strdup(image);
            c->image_index = index;
            c->prompt = strip_image_tag(value);
            c->answer = NULL;
        } else if (!rc) {
            out->items[out->n - 1].answer = cg_strdup(value);
        }
        free(from);
        free(value);
        free(twhat);
        if (rc) goto out;
    }
out:
    free(what);
    free(id);
    free(image);
    return rc;
}

int data_load_conversations(const char *path, const char *split, int64_t n_images, data_convs *out) {
    memset(out, 0, sizeof *out);
    cJSON *root = NULL;
    int rc = cg_json_load(path, &root);
    if (rc) return cg_err_wrap(rc, "cannot load conversations");
    if (!cJSON_IsArray(root)) {
        cJSON_Delete(root);
        return cg_err(CG_EUSER, "%s: must be a JSON array of conversations", path);
    }
    int cap = 0, k = 0;
    for (const cJSON *it = root->child; it && rc == CG_OK; it = it->next, k++)
        rc = conv_item(it, k, path, split, n_images, out, &cap);
    cJSON_Delete(root);
    if (rc == CG_OK && out->n == 0) rc = cg_err(CG_EUSER, "%s: no conversations in the file", path);
    if (rc) data_convs_free(out);
    return rc;
}

void data_convs_free(data_convs *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->items[i].id);
        free(c->items[i].image);
        free(c->items[i].prompt);
        free(c->items[i].answer);
    }
    free(c->items);
    memset(c, 0, sizeof *c);
}

/* ---- corpus ---- */

int data_load_lines(const char *path, data_lines *out) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    int rc = cg_read_file(path, &text, &len);
    if (rc) return cg_err_wrap(rc, "cannot load corpus");
    if (memchr(text, 0, len)) {
        free(text);
        return cg_err(CG_EUSER, "%s: not a text file (contains NUL bytes)", path);
    }
    int cap = 0;
    for (char *p = text, *nl; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l && p[l - 1] == '\r') l--;
        if (strspn(p, " \t") >= l) continue;
        if (out->n == cap) out->lines = cg_realloc(out->lines, sizeof *out->lines * (size_t)(cap = cap ? 2 * cap : 1024));
        out->lines[out->n++] = cg_strndup(p, l);
    }
    free(text);
    if (out->n == 0) {
        data_lines_free(out);
        return cg_err(CG_EUSER, "%s: no documents in the file", path);
    }
    return CG_OK;
}

void data_lines_free(data_lines *l) {
    for (int i = 0; i < l->n; i++) free(l->lines[i]);
    free(l->lines);
    memset(l, 0, sizeof *l);
}

/* ---- data-fraction subsets ---- */

/* The rng stream of the fraction permutation: fixed, so that the permutation depends only on
 * (n_pool, data_seed). */
#define DATA_FRACTION_STREAM 0x66726163ULL  /* "frac" */

int data_fraction_count(int n_pool, double f) {
    if (!(f > 0) || n_pool < 1) return 0;
    if (f >= 1) return n_pool;
    double x = f * (double)n_pool;
    int k = (int)ceil(x - 1e-9 * (x > 1 ? x : 1));
    if (k < 1) k = 1;
    if (k > n_pool) k = n_pool;
    return k;
}

int data_fraction_subset(int n_pool, double f, uint64_t data_seed, int *out_idx, int *n) {
    if (n_pool < 1) return cg_err(CG_EUSER, "data fraction: the pool is empty");
    if (!(f > 0 && f <= 1))
        return cg_err(CG_EUSER, "data fraction %g is out of range; use a value in (0, 1]", f);
    cg_rng r;
    cg_rng_seed2(&r, data_seed, DATA_FRACTION_STREAM);
    for (int i = 0; i < n_pool; i++) out_idx[i] = i;
    cg_rng_shuffle(&r, out_idx, n_pool);
    *n = data_fraction_count(n_pool, f);
    return CG_OK;
}

/* ---- prompt formats ---- */

static const char *const letters[DATA_MAX_CHOICES] = {"A", "B", "C", "D", "E"};

const char *data_mc_letter(int k) {
    assert(k >= 0 && k < DATA_MAX_CHOICES);
    return letters[k];
}

int data_mc_letter_id(const data_vocab *v, int k) { return data_vocab_id(v, data_mc_letter(k)); }

char *data_mc_prompt(const char *hint, const char *question, const char *const *choices, int n_choices) {
    assert(n_choices >= 1 && n_choices <= DATA_MAX_CHOICES);
    cg_buf b;
    cg_buf_init(&b);
    if (hint && hint[strspn(hint, " \t\r\n")]) cg_buf_addf(&b, "context: %s ", hint);
    cg_buf_addf(&b, "question: %s options:", question);
    for (int k = 0; k < n_choices; k++) cg_buf_addf(&b, " %s. %s", letters[k], choices[k]);
    cg_buf_adds(&b, " answer:");
    return cg_buf_steal(&b);
}

/* Encodes <bos> prompt [answer <eos>] with targets; answer NULL for a prompt alone, prompt NULL
 * for a text whose every token is a target. */
static int seq_build(const data_vocab *v, const char *prompt, const char *answer, int answer_eos,
                     int max_T, int *inputs, int *targets, int *T, int *n_unk) {
    int np = 0, na = 0, up = 0, ua = 0;
    if (prompt) data_encode(v, prompt, NULL, 0, &np, &up);
    if (answer) data_encode(v, answer, NULL, 0, &na, &ua);
    int t_len = answer_eos ? 1 + np + na : 1 + np;  /* <bos> prompt answer; last target <eos> */
    if (n_unk) *n_unk = up + ua;
    *T = t_len;
    if (t_len > max_T)
        return cg_err(CG_EUSER, "sequence of %d tokens does not fit the context of %d tokens", t_len, max_T);
    inputs[0] = DATA_BOS;
    if (prompt) data_encode(v, prompt, inputs + 1, np, &np, NULL);
    if (answer) data_encode(v, answer, inputs + 1 + np, na, &na, NULL);
    if (targets) {
        for (int t = 0; t < t_len - 1; t++) targets[t] = t + 1 >= 1 + np ? inputs[t + 1] : DATA_IGNORE;
        targets[t_len - 1] = answer_eos ? DATA_EOS : DATA_IGNORE;
    }
    return CG_OK;
}

int data_seq_text(const data_vocab *v, const char *text, int max_T, int *inputs, int *targets, int *T,
                  int *n_unk) {
    return seq_build(v, NULL, text, 1, max_T, inputs, targets, T, n_unk);
}

int data_seq_prompt_answer(const data_vocab *v, const char *prompt, const char *answer, int max_T,
                           int *inputs, int *targets, int *T, int *n_unk) {
    return seq_build(v, prompt, answer, 1, max_T, inputs, targets, T, n_unk);
}

int data_seq_prompt(const data_vocab *v, const char *prompt, int max_T, int *inputs, int *T, int *n_unk) {
    return seq_build(v, prompt, NULL, 0, max_T, inputs, NULL, T, n_unk);
}

/* ---- multiple-choice instruction turns ---- */

/* Rng streams of the options of item i: DATA_MC_STREAM + i (apart from the fraction's). */
#define DATA_MC_STREAM 0x6d63000000000000ULL /* "mc" */

/* A question kind: its key (the first two words) and the items that carry its distinct answers
 * usable as options, in item order. */
typedef struct {
    char *key;
    int *rep;
    int n_rep, cap;
} mc_kind;

/* The first two whitespace-separated words of a question (the whole of it when shorter). */
static char *mc_kind_key(const char *q) {
    const char *p = q + strspn(q, " \t\r\n");
    for (int w = 0; w < 2 && *p; w++) {
        p += strcspn(p, " \t\r\n");
        if (w == 0) p += strspn(p, " \t\r\n");
    }
    const char *s = q + strspn(q, " \t\r\n");
    return cg_strndup(s, (size_t)(p - s));
}

/* The multiple-choice prompt of item i (malloc'ed; *letter = the correct option's index), or NULL
 * when it has no multiple-choice form. */
static char *mc_form(const data_convs *c, int i, const mc_kind *k, uint64_t seed, const data_vocab *v,
                     int max_T, int *letter) {
    int cand[256], nc = 0;
    const int *pool = k->rep;
    int n_pool = k->n_rep, *big = NULL;
    if (n_pool > (int)CG_ARRAY_LEN(cand)) big = cg_malloc(sizeof *big * (size_t)n_pool);
    int *cd = big ? big : cand;
    for (int j = 0; j < n_pool; j++)
        if (strcmp(c->items[pool[j]].answer, c->items[i].answer)) cd[nc++] = pool[j];
    char *prompt = NULL;
    if (nc >= 1) {
        cg_rng r;
        cg_rng_seed2(&r, seed, DATA_MC_STREAM + (uint64_t)i);
        int most = nc < DATA_MAX_CHOICES - 1 ? nc : DATA_MAX_CHOICES - 1;
        int n_wrong = 1 + (int)cg_rng_below(&r, (uint32_t)most);
        cg_rng_shuffle(&r, cd, nc);
        int pick[DATA_MAX_CHOICES];  /* item indices whose answers are the options; i is correct */
        pick[0] = i;
        for (int w = 0; w < n_wrong; w++) pick[w + 1] = cd[w];
        int n_ch = n_wrong + 1;
        cg_rng_shuffle(&r, pick, n_ch);
        for (;;) {
            const char *ch[DATA_MAX_CHOICES];
            int correct = 0;
            for (int o = 0; o < n_ch; o++) {
                ch[o] = c->items[pick[o]].answer;
                if (pick[o] == i) correct = o;
            }
            prompt = data_mc_prompt("", c->items[i].prompt, ch, n_ch);
            int np = 0;
            data_encode(v, prompt, NULL, 0, &np, NULL);
            if (1 + np + 1 <= max_T) {  /* <bos> prompt letter; the last target is <eos> */
                *letter = correct;
                break;
            }
            free(prompt);
            prompt = NULL;
            if (n_ch <= 2) break;
            /* drop the last wrong option */
            int drop = pick[n_ch - 1] == i ? n_ch - 2 : n_ch - 1;
            memmove(pick + drop, pick + drop + 1, sizeof *pick * (size_t)(n_ch - 1 - drop));
            n_ch--;
        }
    }
    free(big);
    return prompt;
}

int data_convs_mc(data_convs *c, const int *order, int n, double share, uint64_t seed,
                  const data_vocab *v, int max_T, uint8_t *is_mc, int *n_mc) {
    assert(n == c->n);
    if (is_mc) memset(is_mc, 0, (size_t)c->n);
    if (n_mc) *n_mc = 0;
    if (!(share >= 0 && share <= 1))
        return cg_err(CG_EUSER, "multiple-choice share %g is out of range; use a value in [0, 1]", share);
    if (share == 0 || c->n == 0) return CG_OK;
    /* the question kinds and their distinct short answers, in item order */
    int n_kinds = 0, cap_kinds = 0, *kind_of = cg_malloc(sizeof *kind_of * (size_t)c->n);
    mc_kind *kinds = NULL;
    for (int i = 0; i < c->n; i++) {
        char *key = mc_kind_key(c->items[i].prompt);
        int g = 0;
        while (g < n_kinds && strcmp(kinds[g].key, key)) g++;
        if (g == n_kinds) {
            if (n_kinds == cap_kinds) kinds = cg_realloc(kinds, sizeof *kinds * (size_t)(cap_kinds = cap_kinds ? 2 * cap_kinds : 16));
            kinds[n_kinds++] = (mc_kind){key, NULL, 0, 0};
        } else {
            free(key);
        }
        kind_of[i] = g;
        int na = 0;
        data_encode(v, c->items[i].answer, NULL, 0, &na, NULL);
        if (na < 1 || na > DATA_MC_MAX_OPTION_TOKENS) {
            kind_of[i] = -1 - g;  /* its answer cannot be an option */
            continue;
        }
        mc_kind *k = &kinds[g];
        int seen = 0;
        for (int j = 0; j < k->n_rep && !seen; j++) seen = !strcmp(c->items[k->rep[j]].answer, c->items[i].answer);
        if (!seen) {
            if (k->n_rep == k->cap) k->rep = cg_realloc(k->rep, sizeof *k->rep * (size_t)(k->cap = k->cap ? 2 * k->cap : 16));
            k->rep[k->n_rep++] = i;
        }
    }
    /* every item's form, then the turned ones along the order */
    char **form = cg_calloc((size_t)c->n, sizeof *form);
    int *letter = cg_calloc((size_t)c->n, sizeof *letter), m = 0, turned = 0;
    for (int i = 0; i < c->n; i++)
        if (kind_of[i] >= 0) form[i] = mc_form(c, i, &kinds[kind_of[i]], seed, v, max_T, &letter[i]);
    int rc = CG_OK;
    for (int t = 0; t < n; t++) {
        int i = order[t];
        assert(i >= 0 && i < c->n);
        if (!form[i]) continue;
        /* floor((m+1)·share) > floor(m·share), with a tolerance so that 0.3·10 is 3 */
        if (floor((double)(m + 1) * share + 1e-9) > floor((double)m * share + 1e-9)) {
            free(c->items[i].prompt);
            free(c->items[i].answer);
            c->items[i].prompt = form[i];
            c->items[i].answer = cg_strdup(data_mc_letter(letter[i]));
            form[i] = NULL;
            if (is_mc) is_mc[i] = 1;
            turned++;
        }
        m++;
    }
    if (m == 0)
        rc = cg_err(CG_EUSER, "no instruction item has a multiple-choice form (an answer of at most %d tokens "
                    "and another answer to the same kind of question, within %d tokens); set the "
                    "multiple-choice share to 0", DATA_MC_MAX_OPTION_TOKENS, max_T);
    if (n_mc) *n_mc = turned;
    for (int i = 0; i < c->n; i++) free(form[i]);
    for (int g = 0; g < n_kinds; g++) {
        free(kinds[g].key);
        free(kinds[g].rep);
    }
    free(kinds);
    free(form);
    free(letter);
    free(kind_of);
    return rc;
}
