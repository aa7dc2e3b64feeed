/* test_util.c: the shared utilities: SHA-256 vectors, canonical JSON, strict parsers, atomic files, RNG. */
#include "tests/test.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/rng.h"
#include "util/sha256.h"
#include "util/util.h"

#include <stdlib.h>
#include <unistd.h>

static void test_sha256(void) {
    char hex[65];
    cg_sha256_hex("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cg_sha256_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    cg_sha256_hex(two, strlen(two), hex);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a', fed in uneven pieces to exercise the block buffer */
    cg_sha256 s;
    cg_sha256_init(&s);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    while (left) {
        size_t n = left < sizeof a ? left : sizeof a;
        cg_sha256_update(&s, a, n);
        left -= n;
    }
    uint8_t d[32];
    cg_sha256_final(&s, d);
    cg_sha256_to_hex(d, hex);
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_json(void) {
    cJSON *a, *b;
    CHECK(cg_json_parse("{\"b\":1,\"a\":{\"z\":[1,2],\"y\":true}}", "a", &a) == CG_OK);
    CHECK(cg_json_parse("{\"a\":{\"y\":true,\"z\":[1,2]},\"b\":1}", "b", &b) == CG_OK);
    char *ca = cg_json_canonical(a), *cb = cg_json_canonical(b);
    CHECK_STR(ca, cb);
    CHECK_STR(ca, "{\"a\":{\"y\":true,\"z\":[1,2]},\"b\":1}");
    CHECK(cg_json_path(a, "a.y") && cJSON_IsTrue(cg_json_path(a, "a.y")));
    CHECK(cg_json_path(a, "a.q") == NULL);
    CHECK(cg_json_set_path(a, "c.d", cJSON_CreateNumber(3)) == CG_OK);
    CHECK(cg_json_path(a, "c.d")->valuedouble == 3);
    CHECK(cg_json_set_path(a, "b.x", cJSON_CreateNumber(3)) == CG_EUSER);
    int64_t i = 0;
    CHECK(cg_json_get_int(a, "b", 1, &i) == CG_OK && i == 1);
    CHECK(cg_json_get_int(a, "a", 1, &i) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "'a'") != NULL);
    cJSON *bad;
    CHECK(cg_json_parse("{\n  \"a\": 1,\n  oops\n}", "cfg.json", &bad) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "line 3") != NULL);
    free(ca), free(cb);
    cJSON_Delete(a), cJSON_Delete(b);
}

static void test_parse(void) {
    int v;
    CHECK(cg_parse_int("42", "--n", 0, 100, &v) == CG_OK && v == 42);
    CHECK(cg_parse_int("42x", "--n", 0, 100, &v) == CG_EUSER);
    CHECK(cg_parse_int("101", "--n", 0, 100, &v) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "--n") != NULL);
    double d;
    CHECK(cg_parse_double("1e-3", "--lr", &d) == CG_OK && d == 1e-3);
    CHECK(cg_parse_double("nan", "--lr", &d) == CG_EUSER);
}

static void test_atomic(void) {
    char dir[] = "/tmp/cgvlm-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *path = cg_path_join(dir, "out.txt");
    cg_afile af;
    CHECK(cg_afile_open(&af, path) == CG_OK);
    fputs("half", af.fp);
    CHECK(!cg_file_exists(path)); /* not visible before commit */
    cg_afile_abort(&af);
    CHECK(!cg_file_exists(path));
    CHECK(cg_write_file_atomic(path, "hello", 5) == CG_OK);
    char *data;
    size_t n;
    CHECK(cg_read_file(path, &data, &n) == CG_OK && n == 5 && !memcmp(data, "hello", 5));
    free(data);
    CHECK(cg_read_file("/nonexistent/x", &data, &n) == CG_EUSER);
    cg_rm_rf(dir);
    CHECK(!cg_file_exists(dir));
    free(path);
}

static void test_rng(void) {
    cg_rng a, b;
    cg_rng_seed(&a, 7);
    cg_rng_seed(&b, 7);
    for (int i = 0; i < 100; i++) CHECK(cg_rng_u64(&a) == cg_rng_u64(&b));
    cg_rng_seed(&b, 8);
    CHECK(cg_rng_u64(&a) != cg_rng_u64(&b));
    int hist[5] = {0};
    for (int i = 0; i < 50000; i++) hist[cg_rng_below(&a, 5)]++;
    for (int k = 0; k < 5; k++) CHECK(hist[k] > 9500 && hist[k] < 10500);
}

int main(void) {
    test_sha256();
    test_json();
    test_parse();
    test_atomic();
    test_rng();
    return test_summary("test_util");
}
