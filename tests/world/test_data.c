/* test_data.c: the loaders (core/data.c), the ScienceQA loader, PNG I/O and the world's pieces:
 * tokenizer and unknown words, .npy round trip and every malformed case, captions and
 * conversations with their errors, nested data fractions, the prompt formats, scenes. */
#define _GNU_SOURCE  /* memmem */
#include "core/data.h"
#include "evaluators/scienceqa.h"
#include "experiments/font.h"
#include "experiments/world.h"
#include "tests/test.h"
#include "util/fs.h"
#include "util/png.h"
#include "util/util.h"

#include <png.h>
#include <stdlib.h>
#include <string.h>

static const char *tmpdir;

/* Overwrites the first occurrence of `from` in the n bytes at buf with `to` (same length). */
static void patch(char *buf, size_t n, const char *from, const char *to) {
    char *at = memmem(buf, n, from, strlen(from));
    CHECK(at != NULL);
    if (at) memcpy(at, to, strlen(to));
}

static char *tpath(const char *name) { return cg_path_join(tmpdir, name); }

static void put(const char *name, const void *data, size_t len) {
    char *p = tpath(name);
    if (cg_write_file_atomic(p, data, len)) fprintf(stderr, "cannot write %s\n", p);
    free(p);
}
static void puts_file(const char *name, const char *text) { put(name, text, strlen(text)); }

/* Does the last error message contain every one of the (NULL-terminated) fragments? */
static int msg_has(const char *a, const char *b) {
    const char *m = cg_errmsg();
    int ok = m && strstr(m, a) && (!b || strstr(m, b));
    if (!ok) fprintf(stderr, "  message was: %s\n", m ? m : "(none)");
    return ok;
}

static data_vocab world_vocab(void) {
    int n;
    const char *const *w = world_vocab_words(&n);
    data_vocab v;
    int rc = data_vocab_from_words(w, n, &v);
    CHECK(rc == CG_OK);
    return v;
}

static void test_vocab_and_tokenizer(void) {
    puts_file("v.txt", "<pad>\n<bos>\n<eos>\n<unk>\n<image>\n.\n?\nA\na\nred\ncircle\n");
    char *p = tpath("v.txt");
    data_vocab v;
    CHECK(data_vocab_load(p, &v) == CG_OK);
    CHECK(v.n == 11);
    CHECK(data_vocab_id(&v, "red") == 9);
    CHECK(data_vocab_id(&v, "blue") == -1);
    int ids[16], n, unk;
    data_encode(&v, "<image>\na red circle.", ids, 16, &n, &unk);
    CHECK(n == 5 && unk == 0);
    CHECK(ids[0] == 4 && ids[1] == 8 && ids[2] == 9 && ids[3] == 10 && ids[4] == 5);
    /* unknown words become <unk> and are counted; the tokenizer is case-sensitive */
    data_encode(&v, "a Red blue circle ? A", ids, 16, &n, &unk);
    CHECK(n == 6 && unk == 2);
    CHECK(ids[1] == DATA_UNK && ids[2] == DATA_UNK && ids[5] == 7);
    /* more tokens than room: n counts them all, only max are written */
    ids[2] = -7;
    data_encode(&v, "a a a a", ids, 2, &n, NULL);
    CHECK(n == 4 && ids[2] == -7);
    int seq[] = {DATA_BOS, 8, 9, 10, 5, DATA_EOS};
    char *d = data_decode(&v, seq, 6);
    CHECK_STR(d, "a red circle.");
    free(d);
    data_vocab_free(&v);
    /* malformed vocabularies */
    puts_file("v2.txt", "<pad>\n<bos>\n<unk>\n<eos>\nx\n");
    CHECK(data_vocab_load(p = (free(p), tpath("v2.txt")), &v) == CG_EUSER && msg_has("v2.txt: line 3", "<eos>"));
    puts_file("v3.txt", "<pad>\n<bos>\n<eos>\n<unk>\nx\ny\nx\n");
    free(p);
    CHECK(data_vocab_load(p = tpath("v3.txt"), &v) == CG_EUSER && msg_has("line 7", "duplicate token 'x'"));
    puts_file("v4.txt", "<pad>\n<bos>\n<eos>\n<unk>\n\ny\n");
    free(p);
    CHECK(data_vocab_load(p = tpath("v4.txt"), &v) == CG_EUSER && msg_has("line 5", "empty"));
    free(p);
    CHECK(data_vocab_load(p = tpath("missing.txt"), &v) == CG_EUSER && msg_has("missing.txt", NULL));
    free(p);
    /* the world's own vocabulary fits the tiny model and knows the option letters */
    v = world_vocab();
    CHECK(v.n <= 256);
    for (int k = 0; k < DATA_MAX_CHOICES; k++) CHECK(data_mc_letter_id(&v, k) >= 0);
    data_vocab_free(&v);
}

static void test_npy(void) {
    uint8_t data[2 * 3 * 4];
    for (int i = 0; i < 24; i++) data[i] = (uint8_t)(i * 7);
    int64_t shape[3] = {2, 3, 4};
    char *p = tpath("a.npy");
    CHECK(data_save_npy_u8(p, data, 3, shape) == CG_OK);
    data_u8_array a;
    CHECK(data_load_npy_u8(p, &a) == CG_OK);
    CHECK(a.ndim == 3 && a.shape[0] == 2 && a.shape[1] == 3 && a.shape[2] == 4 && a.size == 24);
    CHECK(a.data && !memcmp(a.data, data, 24));
    data_u8_array_free(&a);
    char *raw;
    size_t len;
    CHECK(cg_read_file(p, &raw, &len) == CG_OK);
    CHECK(len > 24 && (len - 24) % 64 == 0);  /* the header is padded to a multiple of 64 bytes */
    /* truncated body */
    put("t.npy", raw, len - 5);
    char *t = tpath("t.npy");
    CHECK(data_load_npy_u8(t, &a) == CG_EUSER && msg_has("t.npy", "truncated"));
    CHECK(a.data == NULL);
    /* trailing bytes */
    cg_buf b;
    cg_buf_init(&b);
    cg_buf_add(&b, raw, len);
    cg_buf_add(&b, "xx", 2);
    put("t.npy", b.data, b.len);
    CHECK(data_load_npy_u8(t, &a) == CG_EUSER && msg_has("trailing bytes", NULL));
    /* truncated header */
    put("t.npy", raw, 30);
    CHECK(data_load_npy_u8(t, &a) == CG_EUSER && msg_has("t.npy", "truncated"));
    /* wrong dtype, fortran order, bad magic, unsupported version */
    char *h = cg_malloc(len);
    memcpy(h, raw, len);
    patch(h, len, "'|u1'", "'<f4'");
    put("t.npy", h, len);
    CHECK(data_load_npy_u8(t, &a) == CG_EUSER && msg_has("dtype", "<f4"));
    patch(h, len, "'<f4'", "'|u1'");
    patch(h, len, "False", "True ");
    put("t.npy", h, len);
    CHECK(data_load_npy_u8(t, &a) == CG_EUSER && msg_has("Fortran", NULL));
    memcpy(h, "\x93NUMPZ", 6);
    put("t.npy", h, len);
    CHECK(data_load_npy_u8(t, &a) == CG_EUSER && msg_has("bad magic", NULL));
    memcpy(h, "\x93NUMPY\x09", 7);
    put("t.npy", h, len);
    CHECK(data_load_npy_u8(t, &a) == CG_EUSER && msg_has("version 9", NULL));
    memcpy(h + 6, "\x01", 1);
    patch(h, len, "True ", "False");
    patch(h, len, "'shape'", "'shope'");
    put("t.npy", h, len);
    CHECK(data_load_npy_u8(t, &a) == CG_EUSER && msg_has("shape", NULL));
    /* 1-d and 0-d shapes */
    int64_t one = 5;
    CHECK(data_save_npy_u8(p, data, 1, &one) == CG_OK);
    CHECK(data_load_npy_u8(p, &a) == CG_OK && a.ndim == 1 && a.shape[0] == 5);
    data_u8_array_free(&a);
    free(h);
    free(raw);
    free(t);
    free(p);
    cg_buf_free(&b);
}

static void test_image_refs(void) {
    int idx = -1;
    CHECK(data_image_ref("instruct/000123", "instruct", 200, "x", &idx) == CG_OK && idx == 123);
    CHECK(data_image_ref("instruct/000123", NULL, -1, "x", &idx) == CG_OK && idx == 123);
    CHECK(data_image_ref("instruct/000123", "align", 200, "x", &idx) == CG_EUSER && msg_has("not in split 'align'", NULL));
    CHECK(data_image_ref("instruct/000200", "instruct", 200, "x", &idx) == CG_EUSER && msg_has("out of range", NULL));
    CHECK(data_image_ref("coco/abc.jpg", NULL, -1, "x", &idx) == CG_EUSER && msg_has("index", NULL));
    CHECK(data_image_ref("000001", NULL, -1, "x", &idx) == CG_EUSER && msg_has("SPLIT/INDEX", NULL));
}

static void test_captions(void) {
    puts_file("c.jsonl", "{\"id\":\"align/000000\",\"image\":\"align/000000\",\"caption\":\"a red circle\"}\n\n"
                         "{\"id\":7,\"image\":\"align/000001\",\"caption\":\"a blue square\"}\n");
    char *p = tpath("c.jsonl");
    data_captions c;
    CHECK(data_load_captions(p, "align", 2, &c) == CG_OK);
    CHECK(c.n == 2 && c.items[1].image_index == 1);
    CHECK(c.n == 2 && !strcmp(c.items[1].id, "7") && !strcmp(c.items[0].caption, "a red circle"));
    data_captions_free(&c);
    CHECK(data_load_captions(p, "align", 1, &c) == CG_EUSER && msg_has("c.jsonl:3", "out of range"));
    puts_file("c.jsonl", "{\"id\":\"a\",\"image\":\"align/000000\",\"caption\":\"x\"}\n{\"id\":\"b\",\"image\":\"align/000001\"}\n");
    CHECK(data_load_captions(p, "align", -1, &c) == CG_EUSER && msg_has("c.jsonl:2", "missing field 'caption'"));
    puts_file("c.jsonl", "{\"id\":\"a\",\"image\":\"align/000000\",\"caption\":3}\n");
    CHECK(data_load_captions(p, NULL, -1, &c) == CG_EUSER && msg_has("c.jsonl:1", "'caption' must be a string"));
    puts_file("c.jsonl", "{\"id\":\"a\",\"image\":\"align/000000\",\"caption\":\"x\"}\n{\"id\": \"b\" \"image\"}\n");
    CHECK(data_load_captions(p, NULL, -1, &c) == CG_EUSER && msg_has("c.jsonl:2", "malformed JSON at line 1, column"));
    puts_file("c.jsonl", "\n");
    CHECK(data_load_captions(p, NULL, -1, &c) == CG_EUSER && msg_has("no captions", NULL));
    free(p);
}

static void test_conversations(void) {
    const char *good =
        "[{\"id\":\"c0\",\"image\":\"instruct/000001\",\"conversations\":["
        "{\"from\":\"human\",\"value\":\"<image>\\nwhat color is the circle ?\"},{\"from\":\"gpt\",\"value\":\"red\"}]},\n"
        " {\"id\":\"c1\",\"image\":\"instruct/000000\",\"conversations\":["
        "{\"from\":\"human\",\"value\":\"is there a cross ?\\n<image>\"},{\"from\":\"gpt\",\"value\":\"no\"},"
        "{\"from\":\"human\",\"value\":\"how many objects are there ?\"},{\"from\":\"gpt\",\"value\":\"two\"}]}]";
    puts_file("conv.json", good);
    char *p = tpath("conv.json");
    data_convs c;
    CHECK(data_load_conversations(p, "instruct", 2, &c) == CG_OK);
    CHECK(c.n == 3);
    if (c.n == 3) {
        CHECK_STR(c.items[0].prompt, "what color is the circle ?");
        CHECK_STR(c.items[0].answer, "red");
        CHECK(c.items[0].image_index == 1);
        CHECK_STR(c.items[1].prompt, "is there a cross ?");
        CHECK_STR(c.items[2].id, "c1#2");
        CHECK_STR(c.items[2].answer, "two");
        CHECK(c.items[2].image_index == 0);
    }
    data_convs_free(&c);
    struct {
        const char *json, *a, *b;
    } bad[] = {
        {"{\"id\":1}", "must be a JSON array", NULL},
        {"[{\"id\":\"x\",\"image\":\"instruct/000000\"}]", "id 'x'", "missing field 'conversations'"},
        {"[{\"image\":\"instruct/000000\",\"conversations\":[]}]", "conversation 0", "missing field 'id'"},
        {"[{\"id\":\"x\",\"conversations\":[]}]", "id 'x'", "missing field 'image'"},
        {"[{\"id\":\"x\",\"image\":\"instruct/000000\",\"conversations\":[{\"from\":\"human\",\"value\":\"q\"}]}]",
         "id 'x'", "turn pairs"},
        {"[{\"id\":\"x\",\"image\":\"instruct/000000\",\"conversations\":[{\"from\":\"gpt\",\"value\":\"q\"},"
         "{\"from\":\"gpt\",\"value\":\"a\"}]}]", "turn 0", "expected 'human'"},
        {"[{\"id\":\"x\",\"image\":\"instruct/000000\",\"conversations\":[{\"from\":\"human\",\"value\":5},"
         "{\"from\":\"gpt\",\"value\":\"a\"}]}]", "turn 0", "'value' must be a string"},
        {"[{\"id\":\"x\",\"image\":\"instruct/000009\",\"conversations\":[{\"from\":\"human\",\"value\":\"q\"},"
         "{\"from\":\"gpt\",\"value\":\"a\"}]}]", "id 'x'", "out of range"},
        {"[\n{\"id\":\"x\",\n\"image\" \"instruct/000000\"}]", "conv.json", "malformed JSON at line 3, column"},
        {"[]", "no conversations", NULL},
    };
    for (size_t i = 0; i < CG_ARRAY_LEN(bad); i++) {
        puts_file("conv.json", bad[i].json);
        int rc = data_load_conversations(p, "instruct", 2, &c);
        CHECK(rc == CG_EUSER);
        if (rc != CG_EUSER || !msg_has(bad[i].a, bad[i].b)) fprintf(stderr, "  (bad case %zu)\n", i);
        CHECK(c.n == 0 && c.items == NULL);
    }
    free(p);
}

static void test_corpus(void) {
    puts_file("corpus.txt", "a red circle .\n\n  \nwhat color is the circle ? red .\r\n");
    char *p = tpath("corpus.txt");
    data_lines l;
    CHECK(data_load_lines(p, &l) == CG_OK && l.n == 2);
    if (l.n == 2) CHECK_STR(l.lines[1], "what color is the circle ? red .");
    data_lines_free(&l);
    puts_file("corpus.txt", "\n\n");
    CHECK(data_load_lines(p, &l) == CG_EUSER && msg_has("no documents", NULL));
    free(p);
}

static int is_prefix(const int *a, int na, const int *b, int nb) {
    if (na > nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static void test_fractions(void) {
    const double fr[] = {0.01, 0.02, 0.05, 0.07, 0.1, 0.2, 0.25, 0.5, 1.0};
    const int N = 1000, M = 10000;
    int *prev = cg_malloc(sizeof(int) * M), *cur = cg_malloc(sizeof(int) * M), *again = cg_malloc(sizeof(int) * M);
    int n_prev = 0;
    for (size_t i = 0; i < CG_ARRAY_LEN(fr); i++) {
        int n, n2;
        CHECK(data_fraction_subset(N, fr[i], 42, cur, &n) == CG_OK);
        CHECK(n == (int)(fr[i] * N + 0.5));  /* ceil(f N) for these exact products */
        CHECK(is_prefix(prev, n_prev, cur, n));  /* nested: smaller fractions are prefixes */
        CHECK(data_fraction_subset(N, fr[i], 42, again, &n2) == CG_OK && n2 == n && !memcmp(again, cur, sizeof(int) * (size_t)n));
        memcpy(prev, cur, sizeof(int) * (size_t)n);
        n_prev = n;
    }
    /* 100 % is a permutation of the pool */
    int seen[1000] = {0}, ok = 1;
    for (int i = 0; i < N; i++) ok &= cur[i] >= 0 && cur[i] < N && !seen[cur[i]]++;
    CHECK(ok);
    /* ceil with float noise: 0.07 * 100 is 7, 0.011 * 100 is 2, 0.001 * 10 is 1, tiny f gives 1 */
    CHECK(data_fraction_count(100, 0.07) == 7);
    CHECK(data_fraction_count(100, 0.011) == 2);
    CHECK(data_fraction_count(10, 0.001) == 1);
    CHECK(data_fraction_count(7, 0.5) == 4);
    CHECK(data_fraction_count(10000, 0.1) == 1000);
    /* another seed: another order */
    int n;
    CHECK(data_fraction_subset(N, 1.0, 43, again, &n) == CG_OK);
    CHECK(memcmp(again, cur, sizeof(int) * N) != 0);
    /* depends only on (pool, seed, f): a bigger pool gives a different permutation, same seed same */
    CHECK(data_fraction_subset(M, 0.05, 42, cur, &n) == CG_OK && n == 500);
    CHECK(data_fraction_subset(M, 0.05, 42, again, &n) == CG_OK && !memcmp(again, cur, sizeof(int) * 500));
    /* bad fractions */
    CHECK(data_fraction_subset(N, 0.0, 1, cur, &n) == CG_EUSER && msg_has("out of range", NULL));
    CHECK(data_fraction_subset(N, 1.5, 1, cur, &n) == CG_EUSER);
    CHECK(data_fraction_subset(N, -0.1, 1, cur, &n) == CG_EUSER);
    CHECK(data_fraction_subset(0, 0.5, 1, cur, &n) == CG_EUSER && msg_has("empty", NULL));
    free(prev);
    free(cur);
    free(again);
}

static void test_prompt_formats(void) {
    data_vocab v = world_vocab();
    int in[64], tg[64], T, unk;
    /* alignment: <bos> caption -> caption <eos>, every position a target */
    CHECK(data_seq_text(&v, "a red circle at the top", 64, in, tg, &T, &unk) == CG_OK);
    CHECK(T == 7 && unk == 0 && in[0] == DATA_BOS);
    CHECK(tg[0] == data_vocab_id(&v, "a") && tg[1] == data_vocab_id(&v, "red") && tg[6] == DATA_EOS);
    for (int t = 0; t + 1 < T; t++) CHECK(tg[t] == in[t + 1]);
    /* instruction: loss only on answer + <eos> */
    CHECK(data_seq_prompt_answer(&v, "what color is the circle ?", "top left", 64, in, tg, &T, &unk) == CG_OK);
    CHECK(T == 1 + 6 + 2 && unk == 0);
    for (int t = 0; t < 6; t++) CHECK(tg[t] == DATA_IGNORE);
    CHECK(tg[6] == data_vocab_id(&v, "top") && tg[7] == data_vocab_id(&v, "left") && tg[8] == DATA_EOS);
    CHECK(in[7] == data_vocab_id(&v, "top") && in[8] == data_vocab_id(&v, "left"));
    /* too long for the context */
    CHECK(data_seq_prompt_answer(&v, "what color is the circle ?", "red", 5, in, tg, &T, NULL) == CG_EUSER &&
          msg_has("does not fit", NULL));
    /* unknown words counted */
    CHECK(data_seq_text(&v, "a mauve circle", 64, in, tg, &T, &unk) == CG_OK && unk == 1 && in[2] == DATA_UNK);
    /* multiple choice */
    const char *ch[3] = {"red", "top left", "blue"};
    char *p = data_mc_prompt("", "which color does the circle at the top have ?", ch, 3);
    CHECK_STR(p, "question: which color does the circle at the top have ? options: A. red B. top left C. blue answer:");
    CHECK(data_seq_prompt(&v, p, 64, in, &T, &unk) == CG_OK && unk == 0 && in[T - 1] == data_vocab_id(&v, ":"));
    free(p);
    p = data_mc_prompt("a red circle at the top .", "which shape can be seen at the top ?", ch, 2);
    CHECK_STR(p, "context: a red circle at the top . question: which shape can be seen at the top ? options: A. red B. top left answer:");
    free(p);
    CHECK_STR(data_mc_letter(4), "E");
    data_vocab_free(&v);
}

static void test_scienceqa(void) {
    char *dir = tpath("sqa");
    char *imgdir = tpath("sqa/images/12");
    CHECK(cg_mkdir_p(imgdir) == CG_OK);
    puts_file("sqa/pid_splits.json", "{\"train\":[\"11\"],\"test\":[\"12\",\"11\"]}");
    const char *good =
        "{\"11\":{\"question\":\"which is red ?\",\"choices\":[\"a\",\"b\",\"c\"],\"answer\":2,\"hint\":\"\","
        "\"image\":null,\"task\":\"closed choice\",\"grade\":\"grade1\",\"subject\":\"natural science\","
        "\"topic\":\"t\",\"category\":\"color\",\"skill\":\"s\",\"lecture\":\"\",\"solution\":\"\",\"split\":\"test\"},"
        "\"12\":{\"question\":\"q ?\",\"choices\":[\"x\",\"y\"],\"answer\":0,\"hint\":\"a hint .\",\"image\":\"image.png\"}}";
    puts_file("sqa/problems.json", good);
    sqa_set s;
    CHECK(sqa_load(dir, "test", &s) == CG_OK);
    CHECK(s.n == 2);
    if (s.n == 2) {
        CHECK_STR(s.items[0].pid, "12");
        CHECK(s.items[0].n_choices == 2 && s.items[0].answer == 0);
        CHECK_STR(s.items[0].category, "");  /* optional fields absent -> "" */
        char *ip = sqa_image_path(&s, &s.items[0]);
        char *want = cg_fmt("%s/images/12/image.png", dir);
        CHECK_STR(ip, want);
        free(ip);
        free(want);
        CHECK(sqa_image_path(&s, &s.items[1]) == NULL);
        CHECK_STR(s.items[1].category, "color");
        CHECK(s.items[1].answer == 2 && s.items[1].n_choices == 3);
        char *p = sqa_prompt(&s.items[0]);
        CHECK_STR(p, "context: a hint . question: q ? options: A. x B. y answer:");
        free(p);
    }
    sqa_free(&s);
    CHECK(sqa_load(dir, "minitest", &s) == CG_EUSER && msg_has("no split 'minitest'", "train, test"));
    /* malformed problems name the problem id and the field */
    struct {
        const char *problem, *field;
    } bad[] = {
        {"{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":2,\"hint\":\"\",\"image\":null}", "'answer'"},
        {"{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":-1,\"hint\":\"\",\"image\":null}", "'answer'"},
        {"{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":0.5,\"hint\":\"\",\"image\":null}", "'answer'"},
        {"{\"question\":\"q\",\"choices\":[\"x\"],\"answer\":0,\"hint\":\"\",\"image\":null}", "'choices'"},
        {"{\"question\":\"q\",\"choices\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"],\"answer\":0,\"hint\":\"\",\"image\":null}", "'choices'"},
        {"{\"question\":\"q\",\"choices\":[\"x\",3],\"answer\":0,\"hint\":\"\",\"image\":null}", "'choices'"},
        {"{\"choices\":[\"x\",\"y\"],\"answer\":0,\"hint\":\"\",\"image\":null}", "missing field 'question'"},
        {"{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":0,\"image\":null}", "missing field 'hint'"},
        {"{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":0,\"hint\":\"\"}", "missing field 'image'"},
        {"{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":0,\"hint\":\"\",\"image\":\"../x.png\"}", "'image'"},
        {"{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":0,\"hint\":\"\",\"image\":7}", "'image'"},
        {"{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":0,\"hint\":\"\",\"image\":null,\"skill\":1}", "'skill'"},
        {"[1]", "must be a JSON object"},
    };
    for (size_t i = 0; i < CG_ARRAY_LEN(bad); i++) {
        char *text = cg_fmt("{\"11\":{\"question\":\"q\",\"choices\":[\"x\",\"y\"],\"answer\":0,\"hint\":\"\","
                            "\"image\":null},\"12\":%s}", bad[i].problem);
        puts_file("sqa/problems.json", text);
        free(text);
        int rc = sqa_load(dir, "test", &s);
        CHECK(rc == CG_EUSER);
        if (rc != CG_EUSER || !msg_has("problem '12'", bad[i].field)) fprintf(stderr, "  (bad problem %zu)\n", i);
        CHECK(s.n == 0 && s.items == NULL);
    }
    puts_file("sqa/problems.json", "{\"11\":{}}");
    CHECK(sqa_load(dir, "test", &s) == CG_EUSER && msg_has("names problem '12'", NULL));
    puts_file("sqa/problems.json", "{\"11\":{},\n  \"12\" {}}");
    CHECK(sqa_load(dir, "test", &s) == CG_EUSER && msg_has("problems.json", "malformed JSON at line 2, column"));
    free(dir);
    free(imgdir);
}

static void test_png(void) {
    uint8_t img[5 * 7 * 3];
    for (int i = 0; i < 5 * 7 * 3; i++) img[i] = (uint8_t)(i * 13 + 1);
    char *p = tpath("x.png");
    CHECK(cg_png_write_rgb(p, img, 5, 7) == CG_OK);
    uint8_t *back = NULL;
    int w = 0, h = 0;
    CHECK(cg_png_read_rgb(p, &back, &w, &h) == CG_OK);
    CHECK(w == 5 && h == 7 && back && !memcmp(back, img, sizeof img));
    free(back);
    /* encoding depends only on the pixels */
    cg_buf a, b;
    cg_buf_init(&a);
    cg_buf_init(&b);
    CHECK(cg_png_encode_rgb(img, 5, 7, &a) == CG_OK && cg_png_encode_rgb(img, 5, 7, &b) == CG_OK);
    CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len));
    /* truncated and non-PNG files */
    put("t.png", a.data, a.len - 20);
    char *t = tpath("t.png");
    CHECK(cg_png_read_rgb(t, &back, &w, &h) == CG_EUSER && msg_has("t.png", NULL));
    puts_file("t.png", "GIF89a not a png");
    CHECK(cg_png_read_rgb(t, &back, &w, &h) == CG_EUSER && msg_has("not a png", NULL));
    cg_buf_free(&a);
    cg_buf_free(&b);
    /* grey + alpha and 16-bit PNGs (written by libpng's simplified API) read back as RGB8 */
    uint8_t ga[3 * 2 * 2] = {0, 255, 100, 255, 200, 0, 10, 255, 20, 255, 30, 255};
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = 3;
    im.height = 2;
    im.format = PNG_FORMAT_GA;
    char *g = tpath("ga.png");
    CHECK(png_image_write_to_file(&im, g, 0, ga, 0, NULL) != 0);
    CHECK(cg_png_read_rgb(g, &back, &w, &h) == CG_OK && w == 3 && h == 2);
    if (back) CHECK(back[0] == 0 && back[3] == 100 && back[4] == 100 && back[5] == 100 && back[15] == 30);
    free(back);
    uint16_t rgb16[2 * 3] = {0, 65535, 32896, 257, 514, 771};
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = 2;
    im.height = 1;
    im.format = PNG_FORMAT_LINEAR_RGB;
    CHECK(png_image_write_to_file(&im, g, 0, rgb16, 0, NULL) != 0);
    back = NULL;
    CHECK(cg_png_read_rgb(g, &back, &w, &h) == CG_OK && w == 2 && h == 1);
    free(back);
    free(g);
    /* resizing: nearest 2x repeats pixels; bilinear keeps a constant image constant and an
     * identity resize exact */
    uint8_t up[10 * 14 * 3], same[5 * 7 * 3];
    cg_resize_rgb_nearest(img, 5, 7, up, 10, 14);
    CHECK(!memcmp(up, img, 3) && !memcmp(up + 3, img, 3) && !memcmp(up + 10 * 3, img, 3));
    CHECK(!memcmp(up + (13 * 10 + 9) * 3, img + (6 * 5 + 4) * 3, 3));
    cg_resize_rgb_bilinear(img, 5, 7, same, 5, 7);
    CHECK(!memcmp(same, img, sizeof img));
    uint8_t flat[4 * 4 * 3], big[9 * 9 * 3];
    memset(flat, 77, sizeof flat);
    cg_resize_rgb_bilinear(flat, 4, 4, big, 9, 9);
    int ok = 1;
    for (size_t i = 0; i < sizeof big; i++) ok &= big[i] == 77;
    CHECK(ok);
    uint8_t ramp[2 * 1 * 3] = {0, 0, 0, 200, 200, 200}, mid[3 * 1 * 3];
    cg_resize_rgb_bilinear(ramp, 2, 1, mid, 3, 1);
    CHECK(mid[0] == 0 && mid[3] == 100 && mid[6] == 200);
    free(p);
    free(t);
}

static void test_world_pieces(void) {
    /* scenes: 1-3 objects, distinct cells and (colour, shape), sorted by cell */
    int ok = 1, n_seen[4] = {0};
    for (int i = 0; i < 500; i++) {
        cg_rng r;
        cg_rng_seed2(&r, 5, (uint64_t)i);
        world_scene s;
        world_scene_sample(&r, &s);
        ok &= s.n >= 1 && s.n <= 3;
        n_seen[s.n]++;
        for (int a = 0; a < s.n; a++)
            for (int b = a + 1; b < s.n; b++)
                ok &= s.obj[a].cell < s.obj[b].cell &&
                      !(s.obj[a].color == s.obj[b].color && s.obj[a].shape == s.obj[b].shape);
    }
    CHECK(ok && n_seen[1] && n_seen[2] && n_seen[3]);
    /* a caption in the expected words */
    world_scene s = {2, {{0, 0, 1, 0}, {1, 2, 0, 4}}};
    cg_buf b;
    cg_buf_init(&b);
    world_caption(&s, &b);
    CHECK_STR(b.data, "a large red circle at the top left and a small blue square at the center");
    cg_buf_free(&b);
    /* rendering: the object's colour shows up inside its cell, the background is light */
    uint8_t rgb[32 * 32 * 3];
    cg_rng r;
    cg_rng_seed(&r, 1);
    world_render(&s, 32, &r, rgb);
    const uint8_t *c0 = rgb + (5 * 32 + 5) * 3, *corner = rgb + (31 * 32 + 31) * 3;
    CHECK(c0[0] > 150 && c0[1] < 90 && c0[2] < 90);   /* red at the top left centre */
    CHECK(corner[0] > 180 && corner[1] > 180 && corner[2] > 180);
    /* the same scene and rng give the same pixels */
    uint8_t again[32 * 32 * 3];
    cg_rng_seed(&r, 1);
    world_render(&s, 32, &r, again);
    CHECK(!memcmp(rgb, again, sizeof rgb));
    /* questions: correct answers, choices within range, benchmark wording differs */
    data_vocab v = world_vocab();
    for (int i = 0; i < 300; i++) {
        cg_rng_seed2(&r, 9, (uint64_t)i);
        world_scene sc;
        world_scene_sample(&r, &sc);
        for (int fam = 0; fam < 2; fam++) {
            world_qa qa;
            world_question(&sc, fam, 5, &r, &qa);
            int n, unk;
            data_encode(&v, qa.question, NULL, 0, &n, &unk);
            CHECK(unk == 0);
            if (qa.n_choices) {
                CHECK(qa.n_choices >= 2 && qa.n_choices <= 5 && qa.correct < qa.n_choices);
                CHECK_STR(qa.choices[qa.correct], qa.answer);
            }
            if (fam == WORLD_Q_BENCH) CHECK(strncmp(qa.question, "what color", 10) && strncmp(qa.question, "how many", 8));
        }
    }
    data_vocab_free(&v);
    /* font: wrapping and a glyph */
    char *lines[4];
    int nl = font_wrap("a small red circle at the top left", 12, lines, 4);
    CHECK(nl == 3);
    if (nl == 3) {
        CHECK_STR(lines[0], "a small red");
        CHECK_STR(lines[2], "the top left");
    }
    for (int i = 0; i < nl; i++) free(lines[i]);
    CHECK(font_pixel('I', 2, 3) && !font_pixel('I', 0, 3) && !font_pixel(' ', 2, 3));
}

int main(int argc, char **argv) {
    tmpdir = argc > 1 ? argv[1] : "data_tmp";
    cg_rm_rf(tmpdir);
    if (cg_mkdir_p(tmpdir)) {
        fprintf(stderr, "%s\n", cg_errmsg());
        return 1;
    }
    test_vocab_and_tokenizer();
    test_npy();
    test_image_refs();
    test_captions();
    test_conversations();
    test_corpus();
    test_fractions();
    test_prompt_formats();
    test_scienceqa();
    test_png();
    test_world_pieces();
    int rc = test_summary("test_data");
    if (!rc) cg_rm_rf(tmpdir);
    return rc;
}
