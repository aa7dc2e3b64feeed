/* manifest.h: benchmark manifests: parsing, validation and URL resolution.
 *
 * A manifest is JSON:
 *   {"name": "...", "version": "...", "format": "...", "base_url": "..." (optional),
 *    "files": [{"path": "...", "url": "...", "sha256": "<64 hex>", "size": N}, ...]}
 * `url` may be absolute (http://, https://, file://) or relative; relative URLs are resolved
 * like HTML links against the base: "base_url" when present, else the manifest's own location
 * (its URL, or file:// of the local manifest file). `path` is where the file lands inside the
 * benchmark's cache directory: relative, no "." / ".." / empty components, not ending in
 * ".part" (the fetcher's partial files), no file that is also a directory of another.
 *
 * Everything is validated at load, before any download: a bad entry is refused with CG_EUSER
 * naming the entry ("manifest 'm.json': files[3] ('../x'): path must not contain '..'").
 */
#ifndef CG_MANIFEST_H
#define CG_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *path;       /* relative path inside the benchmark directory */
    char *url;        /* absolute URL after resolution */
    char sha256[65];  /* lowercase hex */
    int64_t size;     /* bytes */
} manifest_file;

typedef struct {
    char *name, *version, *format;
    char *base;             /* the base relative URLs were resolved against */
    char *origin;           /* where the manifest came from (URL; file:// for local files) */
    manifest_file *files;   /* (n_files) */
    size_t n_files;
    int64_t total_size;     /* sum of the files' sizes */
    char *json;             /* the manifest as cached: the input with "base_url" and
                               "fetched_from" filled in, so a copy reloads identically */
} manifest;

/* Parses and validates manifest text. `origin` is the manifest's location as a URL (http(s)://
 * or file://); `base_override` (NULL for none) replaces the base for relative URLs. A manifest
 * that came over the network (origin http or https) may only point to http(s) URLs: a remote
 * manifest cannot make cgvlm read local files. `what` names the manifest in messages. */
int manifest_parse(const char *text, const char *what, const char *origin,
                   const char *base_override, manifest *m);
/* Reads a local manifest file (origin file://ABSPATH, or the "fetched_from" it records). */
int manifest_load_file(const char *path, const char *base_override, manifest *m);
void manifest_free(manifest *m);

/* "file://" URL of a local path (made absolute, percent-encoded); malloc'ed, NULL on error. */
char *manifest_file_url(const char *path);
/* Resolves `ref` against `base` (RFC 3986); malloc'ed, NULL with cg_err set when invalid. */
char *manifest_resolve_url(const char *base, const char *ref);
/* The URL's scheme in lowercase ("http", "https", "file", ...) into buf; "" when none. */
void manifest_url_scheme(const char *url, char *buf, size_t cap);
/* Is `s` a safe single path component for a name or version ([A-Za-z0-9][A-Za-z0-9._+-]*)? */
int manifest_valid_name(const char *s);

#endif
