/* manifest.c: benchmark manifests: parsing, validation, URL resolution (see manifest.h). */
#define _GNU_SOURCE
#include "evaluators/manifest.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/util.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int manifest_valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 128 || !isalnum((unsigned char)s[0])) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._+-", s[i])) return 0;
    return 1;
}

void manifest_url_scheme(const char *url, char *buf, size_t cap) {
    size_t i = 0;
    buf[0] = 0;
    while (url[i] && (isalnum((unsigned char)url[i]) || strchr("+-.", url[i]))) i++;
    if (i == 0 || url[i] != ':' || i + 1 > cap) return;
    for (size_t k = 0; k < i; k++) buf[k] = (char)tolower((unsigned char)url[k]);
    buf[i] = 0;
}

static int scheme_is_http(const char *url) {
    char s[16];
    manifest_url_scheme(url, s, sizeof s);
    return !strcmp(s, "http") || !strcmp(s, "https");
}

char *manifest_file_url(const char *path) {
    char *abs = realpath(path, NULL);
    if (!abs) {
        cg_err(errno == ENOENT ? CG_EUSER : CG_EFAIL, "cannot resolve '%s': %s", path,
               strerror(errno));
        return NULL;
    }
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_adds(&b, "file://");
    for (const unsigned char *p = (const unsigned char *)abs; *p; p++) {
        if (isalnum(*p) || strchr("/-._~", *p))
            cg_buf_add(&b, p, 1);
        else
            cg_buf_addf(&b, "%%%02X", *p);
    }
    free(abs);
    return cg_buf_steal(&b);
}

char *manifest_resolve_url(const char *base, const char *ref) {
    char *out = NULL, *res = NULL;
    CURLU *u = curl_url();
    if (!u) {
        cg_err(CG_EFAIL, "out of memory parsing URL '%s'", ref);
        return NULL;
    }
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, base, 0);
    if (uc) {
        cg_err(CG_EUSER, "bad base URL '%s': %s", base, curl_url_strerror(uc));
        goto out;
    }
    uc = curl_url_set(u, CURLUPART_URL, ref, CURLU_URLENCODE);
    if (uc) {
        cg_err(CG_EUSER, "bad URL '%s': %s", ref, curl_url_strerror(uc));
        goto out;
    }
    uc = curl_url_get(u, CURLUPART_URL, &res, 0);
    if (uc) {
        cg_err(CG_EUSER, "bad URL '%s': %s", ref, curl_url_strerror(uc));
        goto out;
    }
    out = cg_strdup(res);
out:
    curl_free(res);
    curl_url_cleanup(u);
    return out;
}

/* Why `path` cannot be a cache-relative path, or NULL when it is fine. */
static const char *bad_path_reason(const char *path) {
    size_t n = strlen(path);
    if (n == 0) return "path is empty";
    if (path[0] == '/') return "path must be relative, not absolute";
    if (n > 1024) return "path is longer than 1024 characters";
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\')
            return "path contains a control character or a backslash";
    const char *c = path;
    for (;;) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0) return "path contains an empty component ('//' or a trailing '/')";
        if (len == 1 && c[0] == '.') return "path must not contain '.' components";
        if (len == 2 && c[0] == '.' && c[1] == '.') return "path must not contain '..'";
        if (!e) break;
        c = e + 1;
    }
    if (n >= 5 && !strcmp(path + n - 5, ".part")) return "path must not end in '.part'";
    return NULL;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Duplicate paths, and a path that is also a directory of another ("a" and "a/b"). */
static int check_path_clashes(const manifest *m, const char *what) {
    int rc = CG_OK;
    char **sorted = cg_malloc((m->n_files ? m->n_files : 1) * sizeof *sorted);
    for (size_t i = 0; i < m->n_files; i++) sorted[i] = m->files[i].path;
    qsort(sorted, m->n_files, sizeof *sorted, cmp_str);
    for (size_t i = 0; i + 1 < m->n_files && rc == CG_OK; i++)
        if (!strcmp(sorted[i], sorted[i + 1]))
            rc = cg_err(CG_EUSER, "manifest '%s': duplicate path '%s'", what, sorted[i]);
    for (size_t i = 0; i < m->n_files && rc == CG_OK; i++) {
        /* every directory prefix of this path must not itself be a file */
        char *p = cg_strdup(sorted[i]);
        for (char *s = strchr(p, '/'); s && rc == CG_OK; s = strchr(s + 1, '/')) {
            *s = 0;
            if (bsearch(&p, sorted, m->n_files, sizeof *sorted, cmp_str))
                rc = cg_err(CG_EUSER, "manifest '%s': '%s' is both a file and a directory of '%s'",
                            what, p, sorted[i]);
            *s = '/';
        }
        free(p);
    }
    free(sorted);
    return rc;
}

static int is_hex64(const char *s) {
    if (strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

static int parse_file_entry(const cJSON *it, size_t i, const char *what, int remote,
                            const char *base, int base_is_users, manifest_file *f) {
    const char *path = NULL, *url = NULL, *sha = NULL;
    int64_t size = -1;
    int rc = CG_OK;
    if (!cJSON_IsObject(it))
        return cg_err(CG_EUSER, "manifest '%s': files[%zu] must be an object", what, i);
    /* name the entry by its path when it has one, so the message points at the file */
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(it, "path");
    char *label = cJSON_IsString(pj) ? cg_fmt("files[%zu] ('%s')", i, pj->valuestring)
                                     : cg_fmt("files[%zu]", i);
    if ((rc = cg_json_get_str(it, "path", 1, &path)) || (rc = cg_json_get_str(it, "url", 1, &url)) ||
        (rc = cg_json_get_str(it, "sha256", 1, &sha)) || (rc = cg_json_get_int(it, "size", 1, &size))) {
        cg_err_wrap(rc, "manifest '%s': %s", what, label);
        goto out;
    }
    const char *why = bad_path_reason(path);
    if (why) {
        rc = cg_err(CG_EUSER, "manifest '%s': %s: %s", what, label, why);
        goto out;
    }
    if (!is_hex64(sha)) {
        rc = cg_err(CG_EUSER, "manifest '%s': %s: sha256 must be 64 hexadecimal digits, not '%s'",
                    what, label, sha);
        goto out;
    }
    if (size < 0) {
        rc = cg_err(CG_EUSER, "manifest '%s': %s: size must not be negative (%lld)", what, label,
                    (long long)size);
        goto out;
    }
    if (!*url) {
        rc = cg_err(CG_EUSER, "manifest '%s': %s: url is empty", what, label);
        goto out;
    }
    f->url = manifest_resolve_url(base, url);
    if (!f->url) {
        rc = cg_err_wrap(CG_EUSER, "manifest '%s': %s", what, label);
        goto out;
    }
    char scheme[16];
    manifest_url_scheme(f->url, scheme, sizeof scheme);
    if (strcmp(scheme, "http") && strcmp(scheme, "https") && strcmp(scheme, "file")) {
        rc = cg_err(CG_EUSER, "manifest '%s': %s: url '%s' uses '%s'; only http, https and file are allowed",
                    what, label, f->url, scheme);
        goto out;
    }
    char raw_scheme[16];
    manifest_url_scheme(url, raw_scheme, sizeof raw_scheme);
    /* an absolute file:// URL in a remote manifest, or a relative one against its own base */
    if (remote && (!strcmp(raw_scheme, "file") || (!raw_scheme[0] && !strcmp(scheme, "file") && !base_is_users))) {
        rc = cg_err(CG_EUSER, "manifest '%s': %s: a manifest fetched over the network must not point to a local file ('%s')",
                    what, label, f->url);
        goto out;
    }
    f->path = cg_strdup(path);
    for (int k = 0; k < 64; k++) f->sha256[k] = (char)tolower((unsigned char)sha[k]);
    f->sha256[64] = 0;
    f->size = size;
out:
    free(label);
    return rc;
}

int manifest_parse(const char *text, const char *what, const char *origin,
                   const char *base_override, manifest *m) {
    memset(m, 0, sizeof *m);
    cJSON *root = NULL;
    const char *name = NULL, *version = NULL, *format = NULL, *base_url = NULL, *fetched_from = NULL;
    int rc = cg_json_parse(text, what, &root);
    if (rc) return rc;
    if (!cJSON_IsObject(root)) {
        rc = cg_err(CG_EUSER, "manifest '%s' must be a JSON object", what);
        goto out;
    }
    if ((rc = cg_json_get_str(root, "name", 1, &name)) ||
        (rc = cg_json_get_str(root, "version", 1, &version)) ||
        (rc = cg_json_get_str(root, "format", 1, &format)) ||
        (rc = cg_json_get_str(root, "base_url", 0, &base_url)) ||
        (rc = cg_json_get_str(root, "fetched_from", 0, &fetched_from))) {
        cg_err_wrap(rc, "manifest '%s'", what);
        goto out;
    }
    if (!manifest_valid_name(name) || !manifest_valid_name(version)) {
        rc = cg_err(CG_EUSER, "manifest '%s': name '%s' and version '%s' must be letters, digits and ._+- (starting with a letter or digit)",
                    what, name, version);
        goto out;
    }
    /* a cached copy remembers where it came from, so a remote manifest stays remote */
    m->origin = cg_strdup(fetched_from ? fetched_from : origin);
    int remote = scheme_is_http(m->origin);
    const char *base = base_override ? base_override : base_url ? base_url : m->origin;
    if (remote && !base_override && !scheme_is_http(base)) {
        rc = cg_err(CG_EUSER, "manifest '%s': a manifest fetched over the network must have an http(s) base_url, not '%s'",
                    what, base);
        goto out;
    }
    /* the base is a directory: the manifest's own; "http://mirror/bench" means ".../bench/" */
    size_t bl = strlen(base);
    if (base == m->origin)
        m->base = manifest_resolve_url(base, "./");
    else
        m->base = bl && base[bl - 1] != '/' ? cg_fmt("%s/", base) : cg_strdup(base);
    if (!m->base) {
        rc = cg_err_wrap(CG_EUSER, "manifest '%s'", what);
        goto out;
    }
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    if (!cJSON_IsArray(files)) {
        rc = cg_err(CG_EUSER, "manifest '%s': missing required array 'files'", what);
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(files);
    m->files = cg_calloc(n ? n : 1, sizeof *m->files);
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, files) {
        rc = parse_file_entry(it, i, what, remote, m->base, base_override != NULL, &m->files[i]);
        m->n_files = i + 1;
        if (rc) goto out;
        m->total_size += m->files[i].size;
        i++;
    }
    if ((rc = check_path_clashes(m, what))) goto out;
    m->name = cg_strdup(name);
    m->version = cg_strdup(version);
    m->format = cg_strdup(format);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "base_url");
    cJSON_AddStringToObject(root, "base_url", m->base);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "fetched_from");
    cJSON_AddStringToObject(root, "fetched_from", m->origin);
    char *printed = cJSON_Print(root);
    m->json = cg_strdup(printed);
    cJSON_free(printed);
out:
    cJSON_Delete(root);
    if (rc) manifest_free(m);
    return rc;
}

int manifest_load_file(const char *path, const char *base_override, manifest *m) {
    char *text = NULL, *url = NULL;
    int rc = cg_read_file(path, &text, NULL);
    if (rc) goto out;
    url = manifest_file_url(path);
    if (!url) {
        rc = CG_EFAIL;
        goto out;
    }
    rc = manifest_parse(text, path, url, base_override, m);
out:
    free(text);
    free(url);
    return rc;
}

void manifest_free(manifest *m) {
    for (size_t i = 0; i < m->n_files; i++) {
        free(m->files[i].path);
        free(m->files[i].url);
    }
    free(m->files);
    free(m->name);
    free(m->version);
    free(m->format);
    free(m->base);
    free(m->origin);
    free(m->json);
    memset(m, 0, sizeof *m);
}
