/* world_cmd.c: `cgvlm world generate|show|check` and `cgvlm bench world`. */
#include "cli/commands.h"
#include "core/data.h"
#include "evaluators/scienceqa.h"
#include "experiments/font.h"
#include "experiments/world.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/png.h"
#include "util/sha256.h"
#include "util/util.h"
#include "util/ux_opt.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static int usage_world(FILE *fp) {
    world_options d;
    world_options_default(&d);
    fprintf(fp,
            "usage: cgvlm world generate --out DIR [--seed N] [--image-size S] [--n-align N]\n"
            "                            [--n-instruct N] [--n-corpus N] [--n-corpus-heldout N]\n"
            "                            [--n-bench N] [--n-heldout N] [--force]\n"
            "       cgvlm world show DIR [--out FILE.png] [--n N] [--split align|heldout|instruct|bench]\n"
            "       cgvlm world check DIR\n"
            "\n"
            "The miniature vision-language world: scenes of 1-3 coloured shapes on a 3x3 grid,\n"
            "deterministic from the seed (same seed and options: byte-identical files).\n"
            "\n"
            "generate  writes a world directory atomically (refuses a non-empty DIR unless --force):\n"
            "  --seed N             world seed (default %llu)\n"
            "  --image-size S       image side in pixels, 16..512 (default %d; small uses 64, base 128)\n"
            "  --n-align N          alignment images + captions (default %d)\n"
            "  --n-instruct N       instruction images + conversations (default %d)\n"
            "  --n-corpus N         text corpus documents for LM pretraining (default %d)\n"
            "  --n-corpus-heldout N held-out corpus documents, text perplexity (default %d)\n"
            "  --n-bench N          benchmark problems, ScienceQA format (default %d)\n"
            "  --n-heldout N        held-out images + captions, retrieval (default %d)\n"
            "  --force              replace an existing world\n"
            "show      writes a PNG contact sheet of images with their captions: --out FILE.png (default\n"
            "          contact.png), --n images (default 16, at most 256), --split (default align)\n"
            "check     loads everything back through the loaders, verifies the file hashes, prints\n"
            "          counts and unknown-word counts; exit 2 on any problem\n"
            "\n"
            "layout: world.json vocab.txt images/{align,instruct,heldout}.npy\n"
            "        captions/{align,heldout}.jsonl instruct/conversations.json\n"
            "        corpus/{train,heldout}.txt benchmark/{manifest,problems,pid_splits}.json\n"
            "        benchmark/images/PID/image.png\n",
            (unsigned long long)d.seed, d.image_size, d.n_align, d.n_instruct, d.n_corpus, d.n_corpus_heldout,
            d.n_bench, d.n_heldout);
    return fp == stdout ? CG_OK : CG_EUSER;
}

/* Parses a count flag: 1..2,000,000. */
static int parse_count(const char *s, const char *what, int *out) { return cg_parse_int(s, what, 1, 2000000, out); }

static int world_gen_cmd(int argc, char **argv) {
    enum { O_SEED = 256, O_SIZE, O_ALIGN, O_INSTRUCT, O_CORPUS, O_CORPUS_HELD, O_BENCH, O_HELD, O_FORCE, O_HELP };
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},           {"seed", required_argument, 0, O_SEED},
        {"image-size", required_argument, 0, O_SIZE}, {"n-align", required_argument, 0, O_ALIGN},
        {"n-instruct", required_argument, 0, O_INSTRUCT}, {"n-corpus", required_argument, 0, O_CORPUS},
        {"n-corpus-heldout", required_argument, 0, O_CORPUS_HELD}, {"n-bench", required_argument, 0, O_BENCH},
        {"n-heldout", required_argument, 0, O_HELD},  {"force", no_argument, 0, O_FORCE},
        {"help", no_argument, 0, O_HELP},             {0, 0, 0, 0}};
    world_options o;
    world_options_default(&o);
    const char *out = NULL;
    int force = 0, c, rc = CG_OK;
    optind = 1;
    opterr = 0;
    while (rc == CG_OK && (c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        int64_t seed;
        switch (c) {
        case 'o': out = optarg; break;
        case O_SEED:
            rc = cg_parse_i64(optarg, "--seed", 0, INT64_MAX, &seed);
            o.seed = (uint64_t)seed;
            break;
        case O_SIZE: rc = cg_parse_int(optarg, "--image-size", 16, 512, &o.image_size); break;
        case O_ALIGN: rc = parse_count(optarg, "--n-align", &o.n_align); break;
        case O_INSTRUCT: rc = parse_count(optarg, "--n-instruct", &o.n_instruct); break;
        case O_CORPUS: rc = parse_count(optarg, "--n-corpus", &o.n_corpus); break;
        case O_CORPUS_HELD: rc = parse_count(optarg, "--n-corpus-heldout", &o.n_corpus_heldout); break;
        case O_BENCH: rc = parse_count(optarg, "--n-bench", &o.n_bench); break;
        case O_HELD: rc = parse_count(optarg, "--n-heldout", &o.n_heldout); break;
        case O_FORCE: force = 1; break;
        case O_HELP: return usage_world(stdout);
        default:
            return cg_report(cg_opt_error("world generate", argv, opts));
        }
    }
    if (rc) return cg_report(rc);
    if (optind < argc)
        return cg_report(cg_err(CG_EUSER, "world generate: unexpected argument '%s'", argv[optind]));
    if (!out) return cg_report(cg_err(CG_EUSER, "world generate: --out DIR is required"));
    /* one split's images are held in memory at a time: keep that below 8 GiB */
    int most = o.n_align > o.n_instruct ? o.n_align : o.n_instruct;
    if (o.n_heldout > most) most = o.n_heldout;
    double bytes = (double)most * o.image_size * o.image_size * 3;
    if (bytes > 8.0 * (1 << 30))
        return cg_report(cg_err(CG_EUSER, "world generate: %d images of %dx%d need %.1f GiB in one split; the limit "
                                "is 8 GiB, use smaller counts or --image-size", most, o.image_size, o.image_size,
                                bytes / (1 << 30)));
    double secs;
    rc = world_generate(out, &o, force, &secs);
    if (rc == CG_OK)
        cg_info("world: wrote '%s' (seed %llu, %dx%d images: %d align, %d instruct, %d held-out; %d corpus "
                "documents; %d benchmark problems) in %.2f s",
                out, (unsigned long long)o.seed, o.image_size, o.image_size, o.n_align, o.n_instruct,
                o.n_heldout, o.n_corpus, o.n_bench, secs);
    return cg_report(rc);
}

/* ---- check ---- */

typedef struct {
    long tokens, unk;
    int max_len;
} text_stats;

static void stats_add(text_stats *st, const data_vocab *v, const char *text) {
    int n, unk;
    data_encode(v, text, NULL, 0, &n, &unk);
    st->tokens += n;
    st->unk += unk;
    if (n > st->max_len) st->max_len = n;
}

static int load_images(const char *dir, const char *split, int S, data_u8_array *a) {
    char *path = cg_fmt("%s/images/%s.npy", dir, split);
    int rc = data_load_npy_u8(path, a);
    if (rc == CG_OK && (a->ndim != 4 || a->shape[1] != S || a->shape[2] != S || a->shape[3] != 3))
        rc = cg_err(CG_EUSER, "%s: shape is not (N, %d, %d, 3)", path, S, S);
    free(path);
    return rc;
}

/* Verifies each {path, sha256, size} of a file list against the files under base. */
static int verify_files(const char *base, const cJSON *files, const char *what, int *n) {
    *n = 0;
    if (!cJSON_IsArray(files)) return cg_err(CG_EUSER, "%s: 'files' must be an array", what);
    for (const cJSON *f = files->child; f; f = f->next) {
        const char *path, *sha;
        int64_t size;
        int rc = cg_json_get_str(f, "path", 1, &path);
        if (!rc) rc = cg_json_get_str(f, "sha256", 1, &sha);
        if (!rc) rc = cg_json_get_int(f, "size", 1, &size);
        if (rc) return cg_err_wrap(rc, "%s: file entry %d", what, *n);
        char *full = cg_path_join(base, path), hex[65];
        uint64_t got;
        rc = cg_sha256_file(full, hex, &got);
        if (rc == CG_OK && (strcmp(hex, sha) || (int64_t)got != size))
            rc = cg_err(CG_EUSER, "%s: '%s' does not match its sha256/size; regenerate the world", what, full);
        free(full);
        if (rc) return rc;
        (*n)++;
    }
    return CG_OK;
}

static int world_check_cmd(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) return usage_world(stdout);
    if (argc != 2 || argv[1][0] == '-')
        return cg_report(cg_err(CG_EUSER, "world check: give one world directory, e.g. 'cgvlm world check world'; see 'cgvlm world --help'"));
    const char *dir = argv[1];
    int rc = CG_OK, S = 0;
    cJSON *wj = NULL, *manifest = NULL;
    data_vocab v = {0};
    data_u8_array img[3] = {{0}};
    data_captions caps[2] = {{0}};
    data_convs convs = {0};
    data_lines corpus[2] = {{0}};
    sqa_set bench[2] = {{0}};
    char *path = cg_path_join(dir, "world.json");
    if ((rc = cg_json_load(path, &wj))) goto out;
    int64_t size64 = 0, fv = 0;
    if ((rc = cg_json_get_int(wj, "format_version", 1, &fv)) ||
        (rc = cg_json_get_int(cg_json_path(wj, "options"), "image_size", 1, &size64))) {
        cg_err_wrap(rc, "%s", path);
        goto out;
    }
    S = (int)size64;
    free(path);
    path = cg_path_join(dir, "vocab.txt");
    if ((rc = data_vocab_load(path, &v))) goto out;
    static const char *const splits[3] = {"align", "instruct", "heldout"};
    for (int i = 0; i < 3; i++)
        if ((rc = load_images(dir, splits[i], S, &img[i]))) goto out;
    text_stats cap_st = {0}, conv_st = {0}, corp_st = {0}, bench_st = {0};
    for (int i = 0; i < 2; i++) {
        free(path);
        path = cg_fmt("%s/captions/%s.jsonl", dir, i ? "heldout" : "align");
        if ((rc = data_load_captions(path, i ? "heldout" : "align", img[i ? 2 : 0].shape[0], &caps[i]))) goto out;
        for (int k = 0; k < caps[i].n; k++) stats_add(&cap_st, &v, caps[i].items[k].caption);
    }
    free(path);
    path = cg_fmt("%s/instruct/conversations.json", dir);
    if ((rc = data_load_conversations(path, "instruct", img[1].shape[0], &convs))) goto out;
    int seq_max = 0;
    for (int k = 0; k < convs.n; k++) {
        text_stats one = {0};
        stats_add(&one, &v, convs.items[k].prompt);
        stats_add(&one, &v, convs.items[k].answer);
        conv_st.tokens += one.tokens;
        conv_st.unk += one.unk;
        if (one.tokens + 2 > seq_max) seq_max = (int)one.tokens + 2;
    }
    conv_st.max_len = seq_max;
    for (int i = 0; i < 2; i++) {
        free(path);
        path = cg_fmt("%s/corpus/%s.txt", dir, i ? "heldout" : "train");
        if ((rc = data_load_lines(path, &corpus[i]))) goto out;
        for (int k = 0; k < corpus[i].n; k++) stats_add(&corp_st, &v, corpus[i].lines[k]);
    }
    char *bdir = cg_path_join(dir, "benchmark");
    int n_png = 0, n_text_only = 0;
    for (int i = 0; i < 2 && rc == CG_OK; i++) {
        if ((rc = sqa_load(bdir, i ? "val" : "test", &bench[i]))) break;
        for (int k = 0; k < bench[i].n && rc == CG_OK; k++) {
            const sqa_problem *p = &bench[i].items[k];
            char *prompt = sqa_prompt(p);
            stats_add(&bench_st, &v, prompt);
            stats_add(&bench_st, &v, data_mc_letter(p->answer));
            free(prompt);
            char *ip = sqa_image_path(&bench[i], p);
            if (!ip) {
                n_text_only++;
                continue;
            }
            uint8_t *rgb = NULL;
            int w, h;
            rc = cg_png_read_rgb(ip, &rgb, &w, &h);
            if (rc == CG_OK && (w != S || h != S)) rc = cg_err(CG_EUSER, "%s: is %dx%d, expected %dx%d", ip, w, h, S, S);
            free(rgb);
            free(ip);
            n_png++;
        }
    }
    long unk = cap_st.unk + conv_st.unk + corp_st.unk + bench_st.unk;
    if (rc == CG_OK && unk) rc = cg_err(CG_EUSER, "%s: %ld unknown words (not in vocab.txt)", dir, unk);
    int n_files = 0, n_bfiles = 0;
    if (rc == CG_OK) rc = verify_files(dir, cJSON_GetObjectItemCaseSensitive(wj, "files"), "world.json", &n_files);
    if (rc == CG_OK) {
        char *mpath = cg_path_join(bdir, "manifest.json");
        rc = cg_json_load(mpath, &manifest);
        if (rc == CG_OK) rc = verify_files(bdir, cJSON_GetObjectItemCaseSensitive(manifest, "files"), mpath, &n_bfiles);
        free(mpath);
    }
    free(bdir);
    if (rc) goto out;
    printf("world     %s: format %lld, image size %d, vocabulary %d tokens\n", dir, (long long)fv, S, v.n);
    printf("images    align %lld, instruct %lld, heldout %lld (each %dx%dx3 uint8)\n", (long long)img[0].shape[0],
           (long long)img[1].shape[0], (long long)img[2].shape[0], S, S);
    printf("captions  align %d, heldout %d: %ld tokens, longest %d, unknown %ld\n", caps[0].n, caps[1].n,
           cap_st.tokens, cap_st.max_len, cap_st.unk);
    printf("instruct  %d conversations: %ld tokens, longest sequence %d (with <bos> <eos>), unknown %ld\n", convs.n,
           conv_st.tokens, conv_st.max_len, conv_st.unk);
    printf("corpus    train %d, heldout %d documents: %ld tokens, longest %d, unknown %ld\n", corpus[0].n,
           corpus[1].n, corp_st.tokens, corp_st.max_len, corp_st.unk);
    printf("benchmark test %d, val %d problems (%d with images, %d text-only): longest prompt %d, unknown %ld\n",
           bench[0].n, bench[1].n, n_png, n_text_only, bench_st.max_len, bench_st.unk);
    printf("files     %d verified against world.json, %d against the benchmark manifest\n", n_files, n_bfiles);
    printf("ok\n");
out:
    free(path);
    cJSON_Delete(wj);
    cJSON_Delete(manifest);
    data_vocab_free(&v);
    for (int i = 0; i < 3; i++) data_u8_array_free(&img[i]);
    for (int i = 0; i < 2; i++) {
        data_captions_free(&caps[i]);
        data_lines_free(&corpus[i]);
        sqa_free(&bench[i]);
    }
    data_convs_free(&convs);
    return cg_report(rc);
}

/* ---- show ---- */

/* Draws n tiles (an S x S image, upscaled, with its text word-wrapped under it) into a PNG. */
static int write_contact_sheet(const char *out, int S, int n, uint8_t *const *images, char *const *texts) {
    int scale = S >= 128 ? 1 : 128 / S, tile = S * scale, cols = n < 4 ? n : 4;
    int text_cols = tile / FONT_ADVANCE, max_lines = 10, pad = 8;
    int rows = (n + cols - 1) / cols, cell_h = tile + 4 + max_lines * FONT_LINE;
    int W = pad + cols * (tile + pad), H = pad + rows * (cell_h + pad);
    uint8_t *sheet = cg_malloc((size_t)W * H * 3), *big = cg_malloc((size_t)tile * tile * 3);
    memset(sheet, 255, (size_t)W * H * 3);
    static const uint8_t ink[3] = {20, 20, 20};
    for (int i = 0; i < n; i++) {
        int x0 = pad + (i % cols) * (tile + pad), y0 = pad + (i / cols) * (cell_h + pad);
        cg_resize_rgb_nearest(images[i], S, S, big, tile, tile);
        for (int y = 0; y < tile; y++)
            memcpy(sheet + ((size_t)(y0 + y) * W + x0) * 3, big + (size_t)y * tile * 3, (size_t)tile * 3);
        char *lines[10];
        int nl = font_wrap(texts[i], text_cols, lines, max_lines);
        for (int l = 0; l < nl; l++) {
            font_draw(sheet, W, H, x0, y0 + tile + 4 + l * FONT_LINE, lines[l], ink, 1);
            free(lines[l]);
        }
    }
    int rc = cg_png_write_rgb(out, sheet, W, H);
    if (rc == CG_OK) cg_info("world: wrote %s (%d images with their text, %dx%d)", out, n, W, H);
    free(big);
    free(sheet);
    return rc;
}

/* Benchmark problems with images: the image (resized to S if needed) and "question A. x B. y
 * -> letter". Fills up to n entries. */
static int bench_tiles(const char *dir, int S, int *n, uint8_t **images, char **texts) {
    char *bdir = cg_path_join(dir, "benchmark");
    sqa_set set;
    int rc = sqa_load(bdir, "test", &set), k = 0;
    free(bdir);
    if (rc) return rc;
    for (int i = 0; i < set.n && k < *n && rc == CG_OK; i++) {
        const sqa_problem *p = &set.items[i];
        char *path = sqa_image_path(&set, p);
        if (!path) continue;
        uint8_t *rgb;
        int w, h;
        rc = cg_png_read_rgb(path, &rgb, &w, &h);
        free(path);
        if (rc) break;
        images[k] = cg_malloc((size_t)S * S * 3);
        cg_resize_rgb_bilinear(rgb, w, h, images[k], S, S);
        free(rgb);
        cg_buf b;
        cg_buf_init(&b);
        cg_buf_addf(&b, "%s", p->question);
        for (int c = 0; c < p->n_choices; c++) cg_buf_addf(&b, " %s. %s", data_mc_letter(c), p->choices[c]);
        cg_buf_addf(&b, " -> %s (%s)", data_mc_letter(p->answer), p->category);
        texts[k++] = cg_buf_steal(&b);
    }
    sqa_free(&set);
    *n = k;
    return rc;
}

static int world_show_cmd(int argc, char **argv) {
    static const struct option opts[] = {{"out", required_argument, 0, 'o'}, {"n", required_argument, 0, 'n'},
                                         {"split", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = "contact.png", *split = "align";
    int n = 16, c, rc = CG_OK;
    optind = 1;
    opterr = 0;
    while (rc == CG_OK && (c = getopt_long(argc, argv, "o:n:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'n': rc = cg_parse_int(optarg, "--n", 1, 256, &n); break;
        case 's': split = optarg; break;
        case 'h': return usage_world(stdout);
        default:
            return cg_report(cg_opt_error("world show", argv, opts));
        }
    }
    if (rc) return cg_report(rc);
    if (optind != argc - 1) return cg_report(cg_err(CG_EUSER, "world show: give one world directory, e.g. 'cgvlm world show world --out sheet.png'; see 'cgvlm world --help'"));
    const char *dir = argv[optind];
    int is_instruct = !strcmp(split, "instruct"), is_bench = !strcmp(split, "bench");
    if (!is_instruct && !is_bench && strcmp(split, "align") && strcmp(split, "heldout"))
        return cg_report(cg_err(CG_EUSER, "world show: --split must be align, heldout, instruct or bench, not '%s'", split));
    data_u8_array a = {0};
    data_captions caps = {0};
    data_convs convs = {0};
    uint8_t *images[256] = {0};
    char *texts[256] = {0};
    int own_images = 0;
    /* the images of the align split give S for the benchmark's tiles too */
    char *npy = cg_fmt("%s/images/%s.npy", dir, is_bench ? "align" : split), *txt = NULL;
    if ((rc = data_load_npy_u8(npy, &a))) goto out;
    if (a.ndim != 4 || a.shape[3] != 3 || a.shape[1] != a.shape[2]) {
        rc = cg_err(CG_EUSER, "%s: not an (N, S, S, 3) image array", npy);
        goto out;
    }
    int S = (int)a.shape[1];
    if (is_bench) {
        own_images = 1;
        rc = bench_tiles(dir, S, &n, images, texts);
    } else {
        txt = is_instruct ? cg_fmt("%s/instruct/conversations.json", dir) : cg_fmt("%s/captions/%s.jsonl", dir, split);
        rc = is_instruct ? data_load_conversations(txt, split, a.shape[0], &convs)
                         : data_load_captions(txt, split, a.shape[0], &caps);
        int count = is_instruct ? convs.n : caps.n;
        if (n > count) n = count;
        for (int i = 0; rc == CG_OK && i < n; i++) {
            int idx = is_instruct ? convs.items[i].image_index : caps.items[i].image_index;
            images[i] = a.data + (size_t)idx * S * S * 3;
            texts[i] = is_instruct ? cg_fmt("q: %s a: %s", convs.items[i].prompt, convs.items[i].answer)
                                   : cg_strdup(caps.items[i].caption);
        }
    }
    if (rc == CG_OK && n == 0) rc = cg_err(CG_EUSER, "world show: '%s' has nothing to show in split '%s'", dir, split);
    if (rc == CG_OK) rc = write_contact_sheet(out, S, n, images, texts);
out:
    for (int i = 0; i < 256; i++) {
        if (own_images) free(images[i]);
        free(texts[i]);
    }
    free(npy);
    free(txt);
    data_u8_array_free(&a);
    data_captions_free(&caps);
    data_convs_free(&convs);
    return cg_report(rc);
}

int cmd_world(int argc, char **argv) {
    if (argc < 2) return usage_world(stderr);
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) return usage_world(stdout);
    if (!strcmp(sub, "generate")) return world_gen_cmd(argc - 1, argv + 1);
    if (!strcmp(sub, "show")) return world_show_cmd(argc - 1, argv + 1);
    if (!strcmp(sub, "check")) return world_check_cmd(argc - 1, argv + 1);
    return cg_report(cg_err(CG_EUSER, "world: unknown subcommand '%s'; use generate, show or check", sub));
}

/* ---- bench ---- */

int bench_world(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {"image-size", required_argument, 0, 's'},
                                         {"n", required_argument, 0, 'n'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int json = 0, S = 32, n = 0, c, rc = CG_OK;
    optind = 1;
    opterr = 0;
    while (rc == CG_OK && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 's': rc = cg_parse_int(optarg, "--image-size", 16, 512, &S); break;
        case 'n': rc = cg_parse_int(optarg, "--n", 1, 10000000, &n); break;
        case 'h':
            printf("usage: cgvlm bench world [--json] [--image-size S] [--n N]\n\n"
                   "Renders N scenes (default: about 64 MiB of pixels, at least 2000) at S x S (default 32)\n"
                   "and reports images/s. Integer-only rendering, single thread.\n");
            return CG_OK;
        default:
            return cg_report(cg_opt_error("bench world", argv, opts));
        }
    }
    if (rc) return cg_report(rc);
    if (optind < argc) return cg_report(cg_err(CG_EUSER, "bench world: unexpected argument '%s'", argv[optind]));
    if (!n) {
        n = (int)((64u << 20) / ((unsigned)S * S * 3));
        if (n < 2000) n = 2000;
    }
    uint8_t *rgb = cg_malloc((size_t)n * S * S * 3);
    world_render_many(1, S, 16, rgb);  /* warm-up */
    double t0 = cg_mono_time();
    world_render_many(12345, S, n, rgb);
    double secs = cg_mono_time() - t0;
    char hex[65];
    cg_sha256_hex(rgb, (size_t)n * S * S * 3, hex);  /* keeps the work observable */
    free(rgb);
    double ips = secs > 0 ? n / secs : 0;
    if (json)
        printf("{\"bench\":\"world\",\"images_per_s\":%.1f,\"seconds\":%.4f,\"image_size\":%d,\"images\":%d,"
               "\"sha256_prefix\":\"%.16s\"}\n",
               ips, secs, S, n, hex);
    else
        printf("world: %d images of %dx%d in %.3f s: %.0f images/s\n", n, S, S, secs, ips);
    return CG_OK;
}
