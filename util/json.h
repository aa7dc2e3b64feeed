/* json.h: cJSON helpers: loading files with positioned errors, canonical text for hashing,
 * dotted-path access ("align.lambda") and typed getters that name the key on error. */
#ifndef CG_JSON_H
#define CG_JSON_H

#include <cjson/cJSON.h>
#include <stdint.h>

/* Parses a JSON file; on error CG_EUSER with "FILE: malformed JSON at line L, column C". */
int cg_json_load(const char *path, cJSON **out);
int cg_json_parse(const char *text, const char *what, cJSON **out);
/* Canonical form: keys sorted at every level, no whitespace. Equal configs give equal text. */
char *cg_json_canonical(const cJSON *j);
/* Sorts object keys recursively in place. */
void cg_json_sort(cJSON *j);
/* Writes JSON atomically; pretty when `pretty`. */
int cg_json_save(const char *path, const cJSON *j, int pretty);

/* "a.b.c" lookup; NULL if any part is missing. */
cJSON *cg_json_path(const cJSON *root, const char *dotted);
/* Sets "a.b.c" to value (taking ownership), creating intermediate objects. */
int cg_json_set_path(cJSON *root, const char *dotted, cJSON *value);
/* Parses a command-line value: JSON if it parses (numbers, true/false/null, quoted strings,
 * arrays, objects), otherwise a plain string. */
cJSON *cg_json_from_arg(const char *text);

/* Typed getters: CG_EUSER naming `key` when the type is wrong; a missing key leaves *out alone
 * and returns CG_OK unless `required`. */
int cg_json_get_int(const cJSON *obj, const char *key, int required, int64_t *out);
int cg_json_get_num(const cJSON *obj, const char *key, int required, double *out);
int cg_json_get_bool(const cJSON *obj, const char *key, int required, int *out);
int cg_json_get_str(const cJSON *obj, const char *key, int required, const char **out);

#endif
