/* fs.c: atomic file publication, whole-file reads and directory helpers (see fs.h). */
#define _GNU_SOURCE
#include "util/fs.h"
#include "util/faults_hint.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cg_read_file(const char *path, char **data, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return cg_err(errno == ENOENT ? CG_EUSER : CG_EFAIL, "cannot open '%s': %s", path,
                      strerror(errno));
    cg_buf b;
    cg_buf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) cg_buf_add(&b, chunk, n);
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        cg_buf_free(&b);
        return cg_err(CG_EFAIL, "cannot read '%s': %s", path, strerror(errno));
    }
    if (len) *len = b.len;
    *data = cg_buf_steal(&b);
    return CG_OK;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return cg_strdup(".");
    if (slash == path) return cg_strdup("/");
    return cg_strndup(path, (size_t)(slash - path));
}

void cg_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int cg_afile_open(cg_afile *af, const char *path) {
    memset(af, 0, sizeof *af);
    char *dir = dir_of(path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    af->tmp = cg_fmt("%s/.%s.tmp.XXXXXX", dir, base);
    free(dir);
    int fd = mkstemp(af->tmp);
    if (fd < 0) {
        int e = errno;
        int rc = cg_err(CG_EFAIL, "cannot create '%s': %s%s", path, strerror(e), cg_write_hint(e));
        free(af->tmp);
        af->tmp = NULL;
        return rc;
    }
    fchmod(fd, 0644);
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        close(fd);
        unlink(af->tmp);
        free(af->tmp);
        af->tmp = NULL;
        return cg_err(CG_EFAIL, "cannot open '%s' for writing", path);
    }
    af->path = cg_strdup(path);
    return CG_OK;
}

int cg_afile_commit(cg_afile *af) {
    int rc = CG_OK, e;
    if (fflush(af->fp) != 0 || ferror(af->fp))
        e = errno, rc = cg_err(CG_EFAIL, "cannot write '%s': %s%s", af->path, strerror(e), cg_write_hint(e));
    if (rc == CG_OK && fsync(fileno(af->fp)) != 0)
        e = errno, rc = cg_err(CG_EFAIL, "cannot sync '%s': %s%s", af->path, strerror(e), cg_write_hint(e));
    if (fclose(af->fp) != 0 && rc == CG_OK)
        e = errno, rc = cg_err(CG_EFAIL, "cannot close '%s': %s%s", af->path, strerror(e), cg_write_hint(e));
    af->fp = NULL;
    if (rc == CG_OK && rename(af->tmp, af->path) != 0)
        rc = cg_err(CG_EFAIL, "cannot rename into '%s': %s", af->path, strerror(errno));
    if (rc != CG_OK) {
        unlink(af->tmp);
    } else {
        char *dir = dir_of(af->path);
        cg_fsync_dir(dir);
        free(dir);
    }
    free(af->tmp);
    free(af->path);
    af->tmp = af->path = NULL;
    return rc;
}

void cg_afile_abort(cg_afile *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp) unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    memset(af, 0, sizeof *af);
}

int cg_write_file_atomic(const char *path, const void *data, size_t len) {
    cg_afile af;
    int rc = cg_afile_open(&af, path);
    if (rc) return rc;
    if (len && fwrite(data, 1, len, af.fp) != len) {
        int e = errno;
        rc = cg_err(CG_EFAIL, "cannot write '%s': %s%s", path, strerror(e), cg_write_hint(e));
        cg_afile_abort(&af);
        return rc;
    }
    return cg_afile_commit(&af);
}

int cg_mkdir_p(const char *path) {
    char *p = cg_strdup(path);
    int rc = CG_OK;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                rc = cg_err(CG_EFAIL, "cannot create directory '%s': %s%s", p, strerror(e), cg_write_hint(e));
                break;
            }
            *s = c;
            if (!c) break;
        }
    }
    if (rc == CG_OK && !cg_is_dir(path))
        rc = cg_err(CG_EUSER, "'%s' exists and is not a directory", path);
    free(p);
    return rc;
}

int cg_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int cg_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *cg_path_join(const char *a, const char *b) {
    size_t la = strlen(a);
    if (la && a[la - 1] == '/') return cg_fmt("%s%s", a, b);
    return cg_fmt("%s/%s", a, b);
}

int cg_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? CG_OK : CG_EFAIL;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return CG_EFAIL;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *sub = cg_path_join(path, e->d_name);
            cg_rm_rf(sub);
            free(sub);
        }
        closedir(d);
        return rmdir(path) == 0 ? CG_OK : CG_EFAIL;
    }
    return unlink(path) == 0 ? CG_OK : CG_EFAIL;
}
