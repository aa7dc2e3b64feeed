/* test_checkpoint.c: safetensors round trip, metadata, and the reader's refusals (truncated,
 * header beyond the file, malformed JSON, holes, wrong dtype/shape, missing tensor).
 *   test_checkpoint DIR           the C tests; leaves DIR/c.safetensors for the Python reader
 *   test_checkpoint --read FILE   checks a file written by tests/stages/safetensors_np.py */
#include "core/checkpoint.h"
#include "tests/test.h"
#include "util/fs.h"
#include "util/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The values both sides agree on: a[i] = i * 0.25 - 1 (exact in binary). */
static void fill(float *a, int n) {
    for (int i = 0; i < n; i++) a[i] = (float)i * 0.25f - 1.0f;
}

static int write_sample(const char *path) {
    float w[12], s = 3.5f;
    fill(w, 12);
    int64_t ids[2] = {-7, (int64_t)1 << 40};
    uint64_t rng[4] = {1, UINT64_MAX, 0x0123456789abcdefULL, 42};
    ckpt_writer *wr = ckpt_writer_new();
    ckpt_writer_add_f32(wr, "lm.wte", w, 2, (int64_t[]){3, 4});
    ckpt_writer_add(wr, "ids", CKPT_I64, 1, (int64_t[]){2}, ids);
    ckpt_writer_add(wr, "train.rng", CKPT_U64, 1, (int64_t[]){4}, rng);
    ckpt_writer_add_f32(wr, "scale", &s, 0, NULL);
    ckpt_writer_meta(wr, "stage", "align");
    ckpt_writer_meta(wr, "step", "17");
    ckpt_writer_meta(wr, "note", "quote \" and backslash \\ ok");
    int rc = ckpt_writer_save(wr, path);
    ckpt_writer_free(wr);
    return rc;
}

static void round_trip(const char *path) {
    CHECK(write_sample(path) == CG_OK);
    ckpt_file *f = NULL;
    CHECK(ckpt_open(path, &f) == CG_OK);
    if (!f) return;
    CHECK(ckpt_n_tensors(f) == 4);
    CHECK_STR(ckpt_meta(f, "stage"), "align");
    CHECK_STR(ckpt_meta(f, "step"), "17");
    CHECK_STR(ckpt_meta(f, "note"), "quote \" and backslash \\ ok");
    CHECK(ckpt_meta(f, "missing") == NULL);
    float w[12], ref[12], s = 0;
    fill(ref, 12);
    CHECK(ckpt_read_f32(f, "lm.wte", 2, (int64_t[]){3, 4}, w) == CG_OK);
    CHECK(memcmp(w, ref, sizeof w) == 0);
    CHECK(ckpt_read_f32(f, "scale", 0, NULL, &s) == CG_OK && s == 3.5f);
    int64_t ids[2] = {0};
    CHECK(ckpt_read(f, "ids", CKPT_I64, 1, (int64_t[]){2}, ids) == CG_OK);
    CHECK(ids[0] == -7 && ids[1] == (int64_t)1 << 40);
    uint64_t rng[4] = {0};
    CHECK(ckpt_read(f, "train.rng", CKPT_U64, 1, (int64_t[]){4}, rng) == CG_OK);
    CHECK(rng[1] == UINT64_MAX && rng[2] == 0x0123456789abcdefULL);
    /* wrong shape, wrong dtype, missing: clear errors naming the tensor */
    CHECK(ckpt_read_f32(f, "lm.wte", 2, (int64_t[]){4, 3}, w) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "lm.wte") && strstr(cg_errmsg(), "[3,4]") && strstr(cg_errmsg(), "[4,3]"));
    CHECK(ckpt_read(f, "lm.wte", CKPT_I32, 2, (int64_t[]){3, 4}, w) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "F32") && strstr(cg_errmsg(), "I32"));
    CHECK(ckpt_read_f32(f, "lm.wpe", 1, (int64_t[]){1}, w) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "no tensor 'lm.wpe'") != NULL);
    ckpt_close(f);

    /* the file: 8-byte length, header padded to 8-byte alignment with spaces */
    char *data = NULL;
    size_t len = 0;
    CHECK(cg_read_file(path, &data, &len) == CG_OK);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)(uint8_t)data[i] << (8 * i);
    CHECK((8 + hlen) % 8 == 0);
    CHECK(data[8] == '{');
    CHECK(len == 8 + hlen + 12 * 4 + 2 * 8 + 4 * 8 + 4);
    free(data);
}

/* Writes `len` bytes of `data` to path. */
static void put(const char *path, const void *data, size_t len) {
    CHECK(cg_write_file_atomic(path, data, len) == CG_OK);
}

static void expect_refused(const char *path, const char *needle) {
    ckpt_file *f = NULL;
    int rc = ckpt_open(path, &f);
    CHECK(rc == CG_EUSER && f == NULL);
    if (rc != CG_EUSER || !strstr(cg_errmsg(), needle))
        fprintf(stderr, "  message for '%s': %s (expected '%s')\n", path, cg_errmsg(), needle);
    CHECK(strstr(cg_errmsg(), needle) != NULL);
    CHECK(strstr(cg_errmsg(), path) != NULL);
}

static void refusals(const char *dir) {
    char *good = cg_path_join(dir, "good.safetensors");
    char *bad = cg_path_join(dir, "bad.safetensors");
    CHECK(write_sample(good) == CG_OK);
    char *data = NULL;
    size_t len = 0;
    CHECK(cg_read_file(good, &data, &len) == CG_OK);

    put(bad, data, 5);
    expect_refused(bad, "truncated");
    put(bad, data, len - 3);   /* a tensor cut short */
    expect_refused(bad, "truncated");
    put(bad, data, len / 2);   /* inside the header */
    expect_refused(bad, "header length");
    char *big = cg_malloc(len + 16);
    memcpy(big, data, len);
    memset(big + len, 0, 16);
    put(bad, big, len + 16);
    expect_refused(bad, "longer than its header");
    memcpy(big, data, len);
    big[9] = '#';              /* malformed JSON */
    put(bad, big, len);
    expect_refused(bad, "malformed JSON");
    memcpy(big, data, len);
    char *dt = strstr(big + 8, "\"F32\"");
    CHECK(dt != NULL);
    if (dt) memcpy(dt, "\"F99\"", 5);
    put(bad, big, len);
    expect_refused(bad, "unsupported dtype");
    /* a hand-written header with a hole between tensors */
    const char *h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}";
    size_t hl = strlen(h);
    uint8_t buf[256] = {0};
    buf[0] = (uint8_t)hl;
    memcpy(buf + 8, h, hl);
    put(bad, buf, 8 + hl + 5);
    expect_refused(bad, "holes or overlapping");
    free(big);
    free(data);
    /* a missing file is a user error naming it */
    ckpt_file *f = NULL;
    char *none = cg_path_join(dir, "none.safetensors");
    CHECK(ckpt_open(none, &f) == CG_EUSER && strstr(cg_errmsg(), "none.safetensors"));
    free(none);
    free(good);
    free(bad);
}

/* A file written by Python/numpy: F32 "x" (2,3) = fill, I64 "n" [] = 5, metadata by = numpy. */
static int read_python(const char *path) {
    ckpt_file *f = NULL;
    CHECK(ckpt_open(path, &f) == CG_OK);
    if (!f) {
        fprintf(stderr, "%s\n", cg_errmsg());
        return test_summary("checkpoint --read");
    }
    float x[6], ref[6];
    fill(ref, 6);
    CHECK(ckpt_read_f32(f, "x", 2, (int64_t[]){2, 3}, x) == CG_OK && memcmp(x, ref, sizeof x) == 0);
    int64_t n = 0;
    CHECK(ckpt_read(f, "n", CKPT_I64, 0, NULL, &n) == CG_OK && n == 5);
    CHECK_STR(ckpt_meta(f, "by"), "numpy");
    ckpt_close(f);
    return test_summary("checkpoint --read");
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--read") == 0) return read_python(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: test_checkpoint DIR | --read FILE\n");
        return 2;
    }
    CHECK(cg_mkdir_p(argv[1]) == CG_OK);
    char *c = cg_path_join(argv[1], "c.safetensors");
    round_trip(c);
    refusals(argv[1]);
    free(c);
    return test_summary("checkpoint");
}
