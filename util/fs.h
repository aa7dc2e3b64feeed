/* fs.h: files published atomically (temp file + fsync + rename), whole-file reads, directories.
 *
 * Nothing cgvlm writes may be seen half-written under its final name: every output goes to a
 * temporary file beside its destination and is renamed into place only once complete.
 */
#ifndef CG_FS_H
#define CG_FS_H

#include <stddef.h>
#include <stdio.h>

/* Reads a whole file (NUL-terminated for convenience). CG_EUSER if it does not exist. */
int cg_read_file(const char *path, char **data, size_t *len);
/* Writes data to path atomically. */
int cg_write_file_atomic(const char *path, const void *data, size_t len);

/* A file being written: fp writes to a temporary beside `path`; commit renames it into place,
 * abort removes it. Either must be called exactly once. */
typedef struct {
    FILE *fp;
    char *path;
    char *tmp;
} cg_afile;
int cg_afile_open(cg_afile *af, const char *path);
int cg_afile_commit(cg_afile *af);
void cg_afile_abort(cg_afile *af);

/* mkdir -p; CG_EFAIL with a message naming the path on failure. */
int cg_mkdir_p(const char *path);
int cg_file_exists(const char *path);
int cg_is_dir(const char *path);
/* Joins two path parts with one '/'; malloc'ed. */
char *cg_path_join(const char *a, const char *b);
/* Removes a directory tree (used for cleanup of temporary work). */
int cg_rm_rf(const char *path);
/* fsync a directory so a rename inside it is durable. */
void cg_fsync_dir(const char *dir);

#endif
