/* test_fetch_unit.c: answer extraction (LLaVA's rules) and accuracy tables, the fast SHA-256
 * against the plain one, and manifest parsing / URL resolution without a network. */
#include "evaluators/answer.h"
#include "evaluators/manifest.h"
#include "tests/test.h"
#include "util/rng.h"
#include "util/sha256.h"
#include "util/util.h"

#include <stdlib.h>

static void test_extract(void) {
    static const struct {
        const char *text;
        int n, want;
    } cases[] = {
        /* rule 1: one capital letter */
        {"B", 3, 1}, {"A", 2, 0}, {"  C \n", 3, 2}, {"E", 5, 4}, {"E", 3, -1}, {"C", 2, -1},
        {"b", 3, -1}, {"AB", 3, -1}, {"", 3, -1}, {"   ", 3, -1}, {"(B)", 3, -1}, {"F", 5, -1},
        /* rule 2: letter + '.' or ')' at the start */
        {"B.", 3, 1}, {"B)", 3, 1}, {"B. blue", 3, 1}, {"B) blue", 3, 1}, {"C.\nbecause", 3, 2},
        {"A. The answer is B.", 3, 0}, {"E. x", 3, -1}, {"B.x", 3, -1}, {"B:", 3, -1},
        {"b. blue", 3, -1},
        /* rule 3: the sentence exactly once */
        {"The answer is B.", 3, 1}, {"Red is warm. The answer is A.", 2, 0},
        {"The answer is C.\n", 3, 2}, {"The answer is B. The answer is B.", 3, -1},
        {"The answer is B. The answer is C.", 3, -1}, {"The answer is B", 3, -1},
        {"the answer is B.", 3, -1}, {"The answer is E.", 3, -1}, {"The answer is Blue.", 3, -1},
        {"The answer is b.", 3, -1}, {"The answer is  B.", 3, -1}, {"I think B", 3, -1},
        {"F. The answer is A.", 5, 0}, {"The answer is F.", 6, 5},
    };
    for (size_t i = 0; i < CG_ARRAY_LEN(cases); i++) {
        int got = answer_extract_letter(cases[i].text, cases[i].n);
        if (got != cases[i].want)
            fprintf(stderr, "answer_extract_letter(\"%s\", %d) = %d, want %d\n", cases[i].text,
                    cases[i].n, got, cases[i].want);
        CHECK(got == cases[i].want);
    }
    CHECK(answer_extract_letter(NULL, 3) == -1);
    CHECK(answer_extract_letter("A", 0) == -1);
}

static void test_accuracy_tables(void) {
    const answer_record r[] = {
        {1, "color", "perception"}, {0, "color", "perception"}, {1, "shape", "perception"},
        {1, "count", "reasoning"},  {0, "count", NULL},         {1, NULL, "reasoning"},
    };
    answer_summary s;
    answer_summarize(r, CG_ARRAY_LEN(r), &s);
    CHECK(s.total == 6 && s.correct == 4);
    CHECK_CLOSE(s.accuracy, 4.0 / 6.0, 1e-12, 0);
    CHECK(s.n_categories == 3);
    CHECK_STR(s.categories[0].key, "color");
    CHECK(s.categories[0].total == 2 && s.categories[0].correct == 1);
    CHECK_STR(s.categories[1].key, "count");
    CHECK(s.categories[1].total == 2 && s.categories[1].correct == 1);
    CHECK_STR(s.categories[2].key, "shape");
    CHECK_CLOSE(s.categories[2].accuracy, 1.0, 0, 0);
    CHECK(s.n_skills == 2);
    CHECK_STR(s.skills[0].key, "perception");
    CHECK(s.skills[0].total == 3 && s.skills[0].correct == 2);
    CHECK_STR(s.skills[1].key, "reasoning");
    CHECK(s.skills[1].total == 2 && s.skills[1].correct == 2);
    cJSON *j = answer_summary_json(&s);
    char *t = cJSON_PrintUnformatted(j);
    CHECK(strstr(t, "\"count\":{\"accuracy\":0.5,\"correct\":1,\"total\":2}") != NULL);
    free(t);
    cJSON_Delete(j);
    answer_summary_free(&s);
    answer_summarize(NULL, 0, &s);
    CHECK(s.total == 0 && s.accuracy == 0 && s.n_categories == 0);
    answer_summary_free(&s);
}

static void test_sha_fast(void) {
    cg_rng rng;
    cg_rng_seed(&rng, 6);
    size_t n = 70000;
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)cg_rng_u64(&rng);
    for (int trial = 0; trial < 200; trial++) {
        size_t len = trial < 130 ? (size_t)trial : cg_rng_below(&rng, (uint32_t)n);
        cg_sha256 a, b;
        cg_sha256_init(&a);
        cg_sha256_init(&b);
        cg_sha256_use_accel(0); /* the plain C block function */
        cg_sha256_update(&a, buf, len);
        cg_sha256_use_accel(1); /* SHA-NI where the CPU has it */
        for (size_t off = 0; off < len;) { /* uneven chunks */
            size_t k = 1 + cg_rng_below(&rng, 300);
            if (k > len - off) k = len - off;
            cg_sha256_update(&b, buf + off, k);
            off += k;
        }
        uint8_t da[32], db[32];
        cg_sha256_final(&a, da);
        cg_sha256_final(&b, db);
        CHECK(memcmp(da, db, 32) == 0);
    }
    char hex[65];
    cg_sha256 s;
    cg_sha256_init(&s);
    cg_sha256_update(&s, "abc", 3);
    uint8_t d[32];
    cg_sha256_final(&s, d);
    cg_sha256_to_hex(d, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    printf("sha256 fast path active: %d\n", cg_sha256_accelerated());
    free(buf);
}

static void test_manifest(void) {
    char *u = manifest_resolve_url("http://h:8/a/b/manifest.json", "images/1.png");
    CHECK_STR(u, "http://h:8/a/b/images/1.png");
    free(u);
    u = manifest_resolve_url("file:///w/bench/manifest.json", "problems.json");
    CHECK_STR(u, "file:///w/bench/problems.json");
    free(u);
    u = manifest_resolve_url("http://h/a/", "https://other/x");
    CHECK_STR(u, "https://other/x");
    free(u);
    char sch[16];
    manifest_url_scheme("HTTPS://x", sch, sizeof sch);
    CHECK_STR(sch, "https");
    manifest_url_scheme("a/b.json", sch, sizeof sch);
    CHECK_STR(sch, "");
    CHECK(manifest_valid_name("world-sqa_1.0+x"));
    CHECK(!manifest_valid_name(".."));
    CHECK(!manifest_valid_name("a/b"));
    CHECK(!manifest_valid_name(""));

    const char *sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    char *text = cg_fmt("{\"name\":\"n\",\"version\":\"1\",\"format\":\"scienceqa\",\"files\":["
                        "{\"path\":\"a/x.png\",\"url\":\"x.png\",\"sha256\":\"%s\",\"size\":0},"
                        "{\"path\":\"b\",\"url\":\"http://o/b\",\"sha256\":\"%s\",\"size\":7}]}",
                        sha, sha);
    manifest m;
    CHECK(manifest_parse(text, "t", "http://h/d/m.json", NULL, &m) == CG_OK);
    CHECK(m.n_files == 2 && m.total_size == 7);
    CHECK_STR(m.files[0].url, "http://h/d/x.png");
    CHECK_STR(m.base, "http://h/d/");
    manifest_free(&m);
    CHECK(manifest_parse(text, "t", "http://h/d/m.json", "http://mirror/bench", &m) == CG_OK);
    CHECK_STR(m.files[0].url, "http://mirror/bench/x.png");
    manifest_free(&m);
    free(text);
    /* a remote manifest's file:// base is refused */
    text = cg_fmt("{\"name\":\"n\",\"version\":\"1\",\"format\":\"f\",\"base_url\":\"file:///etc/\","
                  "\"files\":[{\"path\":\"p\",\"url\":\"passwd\",\"sha256\":\"%s\",\"size\":0}]}", sha);
    CHECK(manifest_parse(text, "t", "https://h/m.json", NULL, &m) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "base_url") != NULL);
    free(text);
    /* ... and so is an absolute file:// URL in it, even with the user's own base */
    text = cg_fmt("{\"name\":\"n\",\"version\":\"1\",\"format\":\"f\","
                  "\"files\":[{\"path\":\"p\",\"url\":\"file:///etc/passwd\",\"sha256\":\"%s\",\"size\":0}]}", sha);
    CHECK(manifest_parse(text, "t", "https://h/m.json", "https://mirror/", &m) == CG_EUSER);
    CHECK(strstr(cg_errmsg(), "local file") != NULL);
    CHECK(manifest_parse(text, "t", "file:///w/m.json", NULL, &m) == CG_OK); /* a local manifest may */
    manifest_free(&m);
    free(text);
    /* missing top-level fields */
    CHECK(manifest_parse("{\"name\":\"n\",\"version\":\"1\",\"files\":[]}", "t", "file:///m.json", NULL, &m) ==
          CG_EUSER);
    CHECK(strstr(cg_errmsg(), "'format'") != NULL);
    CHECK(manifest_parse("{\"name\":\"n\",\"version\":\"1\",\"format\":\"f\"}", "t", "file:///m.json", NULL, &m) ==
          CG_EUSER);
    CHECK(strstr(cg_errmsg(), "'files'") != NULL);
}

int main(void) {
    test_extract();
    test_accuracy_tables();
    test_sha_fast();
    test_manifest();
    return test_summary("fetch_unit");
}
