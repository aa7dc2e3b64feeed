/* stage_eval.c: the `eval` stage: benchmark accuracy and alignment quality of the instruction-
 * tuned model (instruct's output).
 *
 * Benchmark (zero-shot multiple choice, ScienceQA format). The manifest (eval.manifest, or the
 * world's benchmark/manifest.json when empty) is fetched like any external benchmark
 * (evaluators/fetch.h) into <workspace>/cache, then the eval.split problems are loaded
 * (evaluators/scienceqa.h). Every question follows its visual tokens (text-only problems run the
 * LM alone) and is answered two ways:
 *   likelihood  each option's text as the answer to the question in the instruction format the
 *               model was tuned on: prompt "HINT QUESTION" (the hint left out when empty), the
 *               option + <eos> as the answer, as lm-eval-harness scores multiple choice (the
 *               options are not listed). Score = MEAN log-probability of the option's tokens and
 *               <eos> (so "top left" is not penalised against "center"); the best score is the
 *               prediction. Scoring the option after the MC prompt instead ("... options: A. x
 *               B. y answer: x") was measured too: after "answer:" the model expects a letter,
 *               and it ranked options 2-5 points worse on the tiny world;
 *   letter      the MC prompt "question: Q options: A. x B. y answer:" (with "context: HINT" in
 *               front when there is a hint), greedy decoding of up to 3 tokens (cut at <eos>),
 *               the letter read with LLaVA's rules (evaluators/answer.h); none counts wrong.
 * A prompt longer than the context loses its oldest tokens (the options and "answer:" stay).
 * Recorded: metrics_eval(benchmark, "accuracy_likelihood" / "accuracy_letter", category) with
 * category "" overall, the category name, or "skill:<skill>"; every prediction through
 * metrics_prediction. benchmark = "cgvlm-world" for the world's benchmark, else eval.benchmark.
 *
 * Alignment (benchmark "alignment", over the world's held-out split):
 *   caption_ppl   perplexity of the held-out captions (+ <eos>) given their images;
 *   retrieval_r1, retrieval_r5   image -> caption retrieval among all held-out captions, scored
 *                 by the L_con similarity v̄_i·t̄_j (mean unit adapter output vs mean unit caption
 *                 embedding): it measures the contrastive geometry itself (a generative-only
 *                 model has no reason to score above chance), and costs one N×N product where
 *                 likelihood retrieval would cost N² forward passes;
 *   text_ppl      perplexity of the held-out corpus text with the LM alone ("preserves text
 *                 ability").
 * A summary is written to eval.json in the output. */
#include "core/batch.h"
#include "core/data.h"
#include "core/model.h"
#include "evaluators/answer.h"
#include "evaluators/fetch.h"
#include "evaluators/scienceqa.h"
#include "experiments/stage.h"
#include "experiments/stage_train.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/png.h"
#include "util/util.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EVAL_BATCH 64
#define EVAL_NEW_TOKENS 3

typedef struct {
    stage_ctx *ctx;
    model *m;
    const data_vocab *v;
    int S, P, ctx_len;
    int *inputs, *targets;       /* (DATA_MAX_CHOICES, ctx_len) */
    uint8_t *images;             /* (DATA_MAX_CHOICES, S, S, 3) */
    cJSON *summary;
} eval_state;

/* ---------------------------------------------------------------- benchmark */

/* Encodes <bos> prompt [answer <eos>] into row `row`, dropping the oldest prompt tokens when it
 * is longer than max_T. Returns the length. */
static int encode_row(eval_state *e, int row, const char *prompt, const char *answer, int max_T) {
    int big = 4096, T = 0;
    int *in = cg_malloc((size_t)big * sizeof *in), *tg = cg_malloc((size_t)big * sizeof *tg);
    int rc = answer ? data_seq_prompt_answer(e->v, prompt, answer, big, in, tg, &T, NULL)
                    : data_seq_prompt(e->v, prompt, big, in, &T, NULL);
    assert(rc == CG_OK);
    (void)rc;
    int drop = T > max_T ? T - max_T : 0;
    int *dst_in = e->inputs + (size_t)row * e->ctx_len, *dst_tg = e->targets + (size_t)row * e->ctx_len;
    dst_in[0] = DATA_BOS;
    memcpy(dst_in + 1, in + 1 + drop, (size_t)(T - 1 - drop) * sizeof *in);
    if (answer) memcpy(dst_tg, tg + drop, (size_t)(T - drop) * sizeof *tg);
    else
        for (int t = 0; t < T - drop; t++) dst_tg[t] = DATA_IGNORE;
    free(in);
    free(tg);
    return T - drop;
}

static void pad_rows(eval_state *e, int rows, const int *len, int T) {
    for (int r = 0; r < rows; r++) {
        int *in = e->inputs + (size_t)r * e->ctx_len, *tg = e->targets + (size_t)r * e->ctx_len;
        for (int t = len[r]; t < T; t++) in[t] = DATA_PAD, tg[t] = DATA_IGNORE;
    }
}

/* Packs rows of stride ctx_len into stride T (in place; T <= ctx_len). */
static void pack_rows(eval_state *e, int rows, int T) {
    for (int r = 1; r < rows; r++) {
        memmove(e->inputs + (size_t)r * T, e->inputs + (size_t)r * e->ctx_len, (size_t)T * sizeof(int));
        memmove(e->targets + (size_t)r * T, e->targets + (size_t)r * e->ctx_len, (size_t)T * sizeof(int));
    }
}

/* Loads a problem's image into e->images rows 0..rows-1; *has_image = 0 for a text-only one. */
static int load_image(eval_state *e, const sqa_set *set, const sqa_problem *p, int rows, int *has_image) {
    *has_image = 0;
    char *path = sqa_image_path(set, p);
    if (!path) return CG_OK;
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    int rc = cg_png_read_rgb(path, &rgb, &w, &h);
    free(path);
    if (rc) return rc;
    size_t isz = (size_t)e->S * e->S * 3;
    if (w == e->S && h == e->S) memcpy(e->images, rgb, isz);
    else cg_resize_rgb_bilinear(rgb, w, h, e->images, e->S, e->S);
    free(rgb);
    for (int r = 1; r < rows; r++) memcpy(e->images + r * isz, e->images, isz);
    *has_image = 1;
    return CG_OK;
}

/* The likelihood method: the index of the best option, its scores in scores[]. */
static int score_options(eval_state *e, const sqa_problem *p, const char *prompt, int has_image,
                         double *scores, int *chosen) {
    int mode = has_image ? MODE_INSTRUCT : MODE_LM;
    int max_T = has_image ? e->ctx_len - e->P : e->ctx_len;
    int len[DATA_MAX_CHOICES], T = 0;
    for (int k = 0; k < p->n_choices; k++) {
        len[k] = encode_row(e, k, prompt, p->choices[k], max_T);
        if (len[k] > T) T = len[k];
    }
    pad_rows(e, p->n_choices, len, T);
    pack_rows(e, p->n_choices, T);
    model_batch b = {.B = p->n_choices, .T = T, .tokens = e->inputs, .targets = e->targets,
                     .images_u8 = has_image ? e->images : NULL};
    double lp[DATA_MAX_CHOICES];
    int cnt[DATA_MAX_CHOICES];
    int rc = model_sequence_logprob(e->m, &b, mode, lp, cnt);
    if (rc) return rc;
    *chosen = 0;
    for (int k = 0; k < p->n_choices; k++) {
        scores[k] = cnt[k] ? lp[k] / cnt[k] : -INFINITY;
        if (scores[k] > scores[*chosen]) *chosen = k;
    }
    return CG_OK;
}

/* The letter method: the decoded answer text (malloc'ed) and the letter it names (-1: none). */
static int answer_letter(eval_state *e, const sqa_problem *p, const char *prompt, int has_image,
                         char **text, int *chosen) {
    int mode = has_image ? MODE_INSTRUCT : MODE_LM;
    int max_T = (has_image ? e->ctx_len - e->P : e->ctx_len) - EVAL_NEW_TOKENS + 1;
    int len = encode_row(e, 0, prompt, NULL, max_T);
    model_batch b = {.B = 1, .T = len, .tokens = e->inputs, .images_u8 = has_image ? e->images : NULL};
    int out[EVAL_NEW_TOKENS];
    int rc = model_generate(e->m, &b, mode, &len, EVAL_NEW_TOKENS, out);
    if (rc) return rc;
    int n = 0;
    while (n < EVAL_NEW_TOKENS && out[n] != DATA_EOS) n++;
    *text = data_decode(e->v, out, n);
    *chosen = answer_extract_letter(*text, p->n_choices);
    return CG_OK;
}

static void record_summary(eval_state *e, const char *bench, const char *metric,
                           const answer_record *rec, size_t n) {
    answer_summary s;
    answer_summarize(rec, n, &s);
    metrics_eval(e->ctx->metrics, bench, metric, "", s.accuracy, s.total);
    for (size_t i = 0; i < s.n_categories; i++)
        metrics_eval(e->ctx->metrics, bench, metric, s.categories[i].key, s.categories[i].accuracy,
                     s.categories[i].total);
    for (size_t i = 0; i < s.n_skills; i++) {
        char *cat = cg_fmt("skill:%s", s.skills[i].key);
        metrics_eval(e->ctx->metrics, bench, metric, cat, s.skills[i].accuracy, s.skills[i].total);
        free(cat);
    }
    cJSON_AddItemToObject(e->summary, metric, answer_summary_json(&s));
    if (!cg_quiet) cg_info("eval: %s %s = %.3f over %ld questions", bench, metric, s.accuracy, s.total);
    answer_summary_free(&s);
}

static int eval_benchmark(eval_state *e, const char *world) {
    stage_ctx *ctx = e->ctx;
    const cJSON *cfg = ctx->run_config;
    const char *name = stage_cfg_str(cfg, "eval.benchmark"), *manifest = stage_cfg_str(cfg, "eval.manifest");
    const char *split = stage_cfg_str(cfg, "eval.split");
    int64_t max_q = stage_cfg_int(cfg, "eval.max_questions");
    const cJSON *methods = cg_json_path(cfg, "eval.methods");
    int do_lik = 0, do_letter = 0;
    for (const cJSON *it = methods ? methods->child : NULL; it; it = it->next) {
        if (cJSON_IsString(it) && !strcmp(it->valuestring, "likelihood")) do_lik = 1;
        if (cJSON_IsString(it) && !strcmp(it->valuestring, "letter")) do_letter = 1;
    }
    const char *bench = !strcmp(name, "world") ? "cgvlm-world" : name;
    char *mpath = manifest[0] ? cg_strdup(manifest) : cg_path_join(world, "benchmark/manifest.json");
    char *cache = cg_path_join(ctx->workspace, "cache"), *dir = NULL;
    fetch_opts fo;
    fetch_opts_init(&fo);
    fo.cache_dir = cache;
    fo.progress = 0;
    sqa_set set = {0};
    answer_record *rec_lik = NULL, *rec_let = NULL;
    int rc = fetch_benchmark(mpath, &fo, &dir);
    if (rc) {
        cg_err_wrap(rc, "cannot fetch the benchmark '%s'", mpath);
        goto out;
    }
    if ((rc = sqa_load(dir, split, &set))) goto out;
    int n = set.n;
    if (max_q > 0 && max_q < n) n = (int)max_q;
    rec_lik = cg_calloc((size_t)(n ? n : 1), sizeof *rec_lik);
    rec_let = cg_calloc((size_t)(n ? n : 1), sizeof *rec_let);
    for (int i = 0; i < n; i++) {
        const sqa_problem *p = &set.items[i];
        if ((i & 15) == 0 && stage_progress(ctx, 0.1 + 0.7 * i / (double)n) == STAGE_CANCELLED) {
            rc = STAGE_CANCELLED;
            goto out;
        }
        int has_image = 0;
        if ((rc = load_image(e, &set, p, p->n_choices, &has_image))) goto out;
        char *prompt = sqa_prompt(p);
        if (do_lik) {
            double scores[DATA_MAX_CHOICES];
            int chosen = -1;
            char *open = p->hint[0] ? cg_fmt("%s %s", p->hint, p->question) : cg_strdup(p->question);
            rc = score_options(e, p, open, has_image, scores, &chosen);
            free(open);
            if (rc == CG_OK) {
                cg_buf js;
                cg_buf_init(&js);
                cg_buf_adds(&js, "[");
                for (int k = 0; k < p->n_choices; k++) cg_buf_addf(&js, "%s%.6g", k ? "," : "", scores[k]);
                cg_buf_adds(&js, "]");
                metrics_prediction(ctx->metrics, bench, "likelihood", p->pid, p->category, p->skill,
                                   chosen, p->answer, js.data);
                cg_buf_free(&js);
                rec_lik[i] = (answer_record){chosen == p->answer, p->category, p->skill};
            }
        }
        if (rc == CG_OK && do_letter) {
            char *text = NULL;
            int chosen = -1;
            rc = answer_letter(e, p, prompt, has_image, &text, &chosen);
            if (rc == CG_OK) {
                cJSON *j = cJSON_CreateObject();
                cJSON_AddStringToObject(j, "text", text);
                char *js = cJSON_PrintUnformatted(j);
                metrics_prediction(ctx->metrics, bench, "letter", p->pid, p->category, p->skill,
                                   chosen, p->answer, js);
                free(js);
                cJSON_Delete(j);
                rec_let[i] = (answer_record){chosen == p->answer, p->category, p->skill};
            }
            free(text);
        }
        free(prompt);
        if (rc) {
            cg_err_wrap(rc, "benchmark question '%s'", p->pid);
            goto out;
        }
    }
    if (do_lik) record_summary(e, bench, "accuracy_likelihood", rec_lik, (size_t)n);
    if (do_letter) record_summary(e, bench, "accuracy_letter", rec_let, (size_t)n);
    /* chance: the mean of 1/n_choices */
    double chance = 0;
    for (int i = 0; i < n; i++) chance += 1.0 / set.items[i].n_choices;
    if (n) cJSON_AddNumberToObject(e->summary, "chance", chance / n);
    cJSON_AddStringToObject(e->summary, "benchmark", bench);
out:
    free(rec_lik);
    free(rec_let);
    sqa_free(&set);
    free(dir);
    free(cache);
    free(mpath);
    return rc;
}

/* ---------------------------------------------------------------- alignment */

/* exp(-Σ log p / Σ count) over a tokenized set, in EVAL_BATCH rows. */
static int perplexity(eval_state *e, batch_set *bs, int mode, double *ppl, int64_t *n_tok) {
    batch_prepare(bs, EVAL_BATCH, 0);
    double lp[EVAL_BATCH], sum = 0;
    int cnt[EVAL_BATCH], items[EVAL_BATCH];
    int64_t n = 0;
    for (int i = 0; i < bs->n; i += EVAL_BATCH) {
        int B = bs->n - i < EVAL_BATCH ? bs->n - i : EVAL_BATCH;
        for (int b = 0; b < B; b++) items[b] = i + b;
        model_batch mb;
        batch_rows(bs, items, B, &mb);
        int rc = model_sequence_logprob(e->m, &mb, mode, lp, cnt);
        if (rc) return rc;
        for (int b = 0; b < B; b++) sum += lp[b], n += cnt[b];
    }
    *ppl = n ? exp(-sum / (double)n) : NAN;
    *n_tok = n;
    return CG_OK;
}

/* Image -> caption retrieval by v̄_i·t̄_j over the whole set: R@1 and R@5. */
static int retrieval(eval_state *e, batch_set *bs, double *r1, double *r5) {
    int N = bs->n, d = e->m->cfg.lm_dim, items[EVAL_BATCH];
    float *vi = cg_malloc((size_t)N * d * sizeof *vi), *tj = cg_malloc((size_t)N * d * sizeof *tj);
    int rc = CG_OK;
    batch_prepare(bs, EVAL_BATCH, 0);
    for (int i = 0; i < N && rc == CG_OK; i += EVAL_BATCH) {
        int B = N - i < EVAL_BATCH ? N - i : EVAL_BATCH;
        for (int b = 0; b < B; b++) items[b] = i + b;
        model_batch mb;
        batch_rows(bs, items, B, &mb);
        rc = model_image_embed(e->m, &mb, vi + (size_t)i * d);
        if (rc == CG_OK) rc = model_caption_embed(e->m, &mb, tj + (size_t)i * d);
    }
    long hit1 = 0, hit5 = 0;
    for (int i = 0; rc == CG_OK && i < N; i++) {
        double own = 0;
        for (int c = 0; c < d; c++) own += (double)vi[(size_t)i * d + c] * tj[(size_t)i * d + c];
        int better = 0;   /* captions scoring strictly higher than the right one */
        for (int j = 0; j < N; j++) {
            if (j == i) continue;
            double s = 0;
            for (int c = 0; c < d; c++) s += (double)vi[(size_t)i * d + c] * tj[(size_t)j * d + c];
            better += s > own;
        }
        hit1 += better < 1;
        hit5 += better < 5;
    }
    *r1 = N ? (double)hit1 / N : NAN;
    *r5 = N ? (double)hit5 / N : NAN;
    free(vi);
    free(tj);
    return rc;
}

static int eval_alignment(eval_state *e, const char *world) {
    stage_ctx *ctx = e->ctx;
    data_captions caps = {0};
    data_u8_array images = {0};
    data_lines docs = {0};
    batch_set bs = {0}, bt = {0};
    cJSON *al = cJSON_AddObjectToObject(e->summary, "alignment");
    char *path = cg_path_join(world, "images/heldout.npy");
    int rc = CG_OK;
    if (cg_file_exists(path)) {
        if ((rc = data_load_npy_u8(path, &images))) goto out;
        free(path);
        path = cg_path_join(world, "captions/heldout.jsonl");
        if ((rc = data_load_captions(path, "heldout", (int64_t)images.shape[0], &caps))) goto out;
    }
    if (caps.n > 0) {
        if ((rc = batch_captions(&bs, e->v, &caps, &images, e->ctx_len - e->P))) goto out;
        double ppl;
        int64_t n;
        if ((rc = perplexity(e, &bs, MODE_INSTRUCT, &ppl, &n))) goto out;
        metrics_eval(ctx->metrics, "alignment", "caption_ppl", "", ppl, caps.n);
        cJSON_AddNumberToObject(al, "caption_ppl", ppl);
        if (stage_cfg_bool(ctx->run_config, "eval.retrieval")) {
            double r1, r5;
            if ((rc = retrieval(e, &bs, &r1, &r5))) goto out;
            metrics_eval(ctx->metrics, "alignment", "retrieval_r1", "", r1, caps.n);
            metrics_eval(ctx->metrics, "alignment", "retrieval_r5", "", r5, caps.n);
            cJSON_AddNumberToObject(al, "retrieval_r1", r1);
            cJSON_AddNumberToObject(al, "retrieval_r5", r5);
            if (!cg_quiet) cg_info("eval: retrieval R@1 %.3f R@5 %.3f over %d held-out images", r1, r5, caps.n);
        }
    }
    if (stage_progress(ctx, 0.9) == STAGE_CANCELLED) {
        rc = STAGE_CANCELLED;
        goto out;
    }
    free(path);
    path = cg_path_join(world, "corpus/heldout.txt");
    if (cg_file_exists(path)) {
        if ((rc = data_load_lines(path, &docs))) goto out;
        if (docs.n > 0) {
            if ((rc = batch_text(&bt, e->v, &docs, e->ctx_len))) goto out;
            double ppl;
            int64_t n;
            if ((rc = perplexity(e, &bt, MODE_LM, &ppl, &n))) goto out;
            metrics_eval(ctx->metrics, "alignment", "text_ppl", "", ppl, docs.n);
            cJSON_AddNumberToObject(al, "text_ppl", ppl);
        }
    }
out:
    batch_free(&bs);
    batch_free(&bt);
    data_lines_free(&docs);
    data_captions_free(&caps);
    data_u8_array_free(&images);
    free(path);
    return rc;
}

int stage_eval(stage_ctx *ctx) {
    data_vocab vocab = {0};
    model m;
    int have_model = 0;
    char *world = NULL, *path = NULL;
    eval_state e = {0};
    stage_use_threads(ctx);
    int rc = stage_vlm_open(ctx, 0, &world, &m, &have_model, &vocab);
    if (rc) goto out;
    const model_config mc = m.cfg;
    if ((rc = stage_load_upstream(ctx, &m, EXP_INSTRUCT, stage_vlm_prefixes))) goto out;
    e = (eval_state){.ctx = ctx, .m = &m, .v = &vocab, .S = mc.image_size,
                     .P = model_num_patches(&m), .ctx_len = mc.ctx};
    e.inputs = cg_malloc((size_t)DATA_MAX_CHOICES * mc.ctx * sizeof(int));
    e.targets = cg_malloc((size_t)DATA_MAX_CHOICES * mc.ctx * sizeof(int));
    e.images = cg_malloc((size_t)DATA_MAX_CHOICES * mc.image_size * mc.image_size * 3);
    e.summary = cJSON_CreateObject();
    if (stage_progress(ctx, 0.05) == STAGE_CANCELLED) {
        rc = STAGE_CANCELLED;
        goto out;
    }
    if ((rc = eval_benchmark(&e, world))) goto out;
    if ((rc = eval_alignment(&e, world))) goto out;
    if ((rc = metrics_flush(ctx->metrics))) goto out;
    path = cg_path_join(ctx->out_dir, "eval.json");
    if ((rc = cg_json_save(path, e.summary, 1))) goto out;
out:
    if (have_model) model_free(&m);
    cJSON_Delete(e.summary);
    free(e.inputs);
    free(e.targets);
    free(e.images);
    data_vocab_free(&vocab);
    free(path);
    free(world);
    return rc;
}
