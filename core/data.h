/* data.h: the training core's data loading: the word-level vocabulary and tokenizer, .npy
 * uint8 image arrays, caption / conversation / corpus files, nested data-fraction subsets, and
 * the ONE definition of the prompt formats (alignment, instruction, multiple choice).
 *
 * File formats (all written by `cgvlm world generate`, but any producer may write them):
 *   vocab.txt          one token per line, id = line number (0-based); the first four lines are
 *                      <pad> <bos> <eos> <unk> (DATA_PAD..DATA_UNK).
 *   *.npy              NumPy format 1.0/2.0/3.0, dtype uint8 ('|u1' or '<u1'), C order.
 *   captions (.jsonl)  one JSON object per line: {"id", "image", "caption"}.
 *   conversations      LLaVA JSON: [{"id", "image", "conversations": [{"from": "human",
 *                      "value": "<image>\n..."}, {"from": "gpt", "value": "..."}, ...]}].
 *   corpus (.txt)      one document per line (blank lines are skipped).
 *   An image reference is "SPLIT/INDEX" (e.g. "instruct/000123"): row INDEX of images/SPLIT.npy.
 *
 * Sequence layout (text part; the caller puts the P visual tokens in front of it):
 *   alignment / corpus   inputs  = <bos> w1 .. wn          targets = w1 .. wn <eos>
 *   instruction          inputs  = <bos> q1 .. qm a1 .. ak targets = -1 x m, a1 .. ak <eos>
 *   (targets[t] is the token that position t predicts, DATA_IGNORE where there is no loss; the
 *    visual positions in front carry DATA_IGNORE too.)
 *   multiple choice      prompt  = data_mc_prompt(hint, question, choices): "context: HINT
 *                        question: Q options: A. x B. y ... answer:" ("context: HINT " is left
 *                        out when the hint is empty); the model's answer is the letter token
 *                        (data_mc_letter_id), followed by <eos> in training text.
 */
#ifndef CG_DATA_H
#define CG_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { DATA_PAD = 0, DATA_BOS = 1, DATA_EOS = 2, DATA_UNK = 3 };
#define DATA_IGNORE (-1)
#define DATA_MAX_CHOICES 5

/* ---- vocabulary and tokenizer ---- */

typedef struct {
    int n;          /* number of tokens */
    char **words;   /* (n) id -> token */
    int *table;     /* open-addressing hash: token -> id; private */
    int table_cap;
} data_vocab;

/* Loads vocab.txt. CG_EUSER naming the file and line for an empty or duplicate token, or when
 * the first four lines are not <pad> <bos> <eos> <unk>. */
int data_vocab_load(const char *path, data_vocab *v);
/* Builds a vocabulary from an array of tokens (same checks as the loader). */
int data_vocab_from_words(const char *const *words, int n, data_vocab *v);
void data_vocab_free(data_vocab *v);
/* The id of a token, or -1 when it is not in the vocabulary. */
int data_vocab_id(const data_vocab *v, const char *token);

/* Splits text into tokens: whitespace separates, and each of . , ? : ; ! ( ) is a token of its
 * own; "<image>" and other "<...>" specials stay whole. Case-sensitive. Writes at most `max`
 * ids; *n receives the number of tokens in the text (may exceed max: the caller checks) and
 * *n_unk (may be NULL) how many were unknown and became DATA_UNK. */
void data_encode(const data_vocab *v, const char *text, int *ids, int max, int *n, int *n_unk);
/* Joins tokens with single spaces (no space before punctuation); specials <pad>/<bos>/<eos> are
 * skipped. malloc'ed. */
char *data_decode(const data_vocab *v, const int *ids, int n);

/* ---- .npy arrays ---- */

typedef struct {
    uint8_t *data;      /* C-order bytes */
    int ndim;
    int64_t shape[8];
    size_t size;        /* product of shape */
} data_u8_array;

/* Loads a uint8 .npy file. CG_EUSER naming the file for: a bad magic, an unsupported version, a
 * malformed header, a dtype other than uint8, Fortran order, or a truncated/oversized body. */
int data_load_npy_u8(const char *path, data_u8_array *a);
/* Writes a uint8 .npy (format 1.0, header padded to 64 bytes) atomically. */
int data_save_npy_u8(const char *path, const uint8_t *data, int ndim, const int64_t *shape);
/* The same bytes, appended to a FILE (for writers that publish a whole directory at once). */
int data_write_npy_u8(FILE *fp, const uint8_t *data, int ndim, const int64_t *shape);
void data_u8_array_free(data_u8_array *a);

/* Parses an image reference "SPLIT/INDEX". When `split` is non-NULL the reference must name that
 * split; when n_images >= 0 the index must be below it. CG_EUSER naming `what` otherwise. */
int data_image_ref(const char *ref, const char *split, int64_t n_images, const char *what,
                   int *index);

/* ---- captions, conversations, corpus ---- */

typedef struct {
    char *id;
    char *image;        /* the reference as written */
    int image_index;
    char *caption;
} data_caption;

typedef struct {
    data_caption *items;
    int n;
} data_captions;

/* Loads a captions .jsonl; image references must name `split` (NULL: any) with an index below
 * n_images (-1: unchecked). Errors name the file, line and field. */
int data_load_captions(const char *path, const char *split, int64_t n_images, data_captions *out);
void data_captions_free(data_captions *c);

typedef struct {
    char *id;           /* the conversation's id ("#2", "#3" appended for later turns) */
    char *image;
    int image_index;
    char *prompt;       /* the human turn without "<image>" and the newline beside it */
    char *answer;       /* the gpt turn */
} data_conv;

typedef struct {
    data_conv *items;
    int n;
} data_convs;

/* Loads LLaVA conversation JSON. Each (human, gpt) pair becomes one item tied to the
 * conversation's image (a multi-turn conversation gives one item per turn). Errors name the
 * file, the conversation (index and id) and the field. */
int data_load_conversations(const char *path, const char *split, int64_t n_images, data_convs *out);
void data_convs_free(data_convs *c);

typedef struct {
    char **lines;
    int n;
} data_lines;

/* Loads a text file with one document per line; blank lines are skipped. */
int data_load_lines(const char *path, data_lines *out);
void data_lines_free(data_lines *l);

/* ---- data-fraction subsets ---- */

/* ceil(f * n_pool) with a small tolerance so that 0.07 * 100 is 7 and not 8; at least 1 when
 * f > 0. */
int data_fraction_count(int n_pool, double f);
/* One seeded permutation of 0..n_pool-1 per data_seed; fraction f in (0, 1] takes its first
 * ceil(f * n_pool) entries, in permutation order. So subsets are nested across fractions and
 * depend only on (n_pool, data_seed, f). out_idx must hold n_pool ints. CG_EUSER for f outside
 * (0, 1] or n_pool < 1. */
int data_fraction_subset(int n_pool, double f, uint64_t data_seed, int *out_idx, int *n);

/* ---- prompt formats (the one definition) ---- */

/* Alignment caption or corpus document: inputs = <bos> text, targets = text <eos>. *T is the
 * sequence length; CG_EUSER if it exceeds max_T (the text is too long for the context).
 * n_unk may be NULL. */
int data_seq_text(const data_vocab *v, const char *text, int max_T, int *inputs, int *targets,
                  int *T, int *n_unk);
/* Instruction or multiple choice training: inputs = <bos> prompt answer, targets =
 * DATA_IGNORE over the prompt, then answer <eos>. */
int data_seq_prompt_answer(const data_vocab *v, const char *prompt, const char *answer, int max_T,
                           int *inputs, int *targets, int *T, int *n_unk);
/* Evaluation: inputs = <bos> prompt; the next token is the model's first answer token. */
int data_seq_prompt(const data_vocab *v, const char *prompt, int max_T, int *inputs, int *T,
                    int *n_unk);
/* The multiple-choice prompt text (malloc'ed), 1 <= n_choices <= DATA_MAX_CHOICES. */
char *data_mc_prompt(const char *hint, const char *question, const char *const *choices, int n_choices);
/* The option letter of choice k ("A" for 0) and its token id (-1 if not in the vocabulary). */
const char *data_mc_letter(int k);
int data_mc_letter_id(const data_vocab *v, int k);

/* ---- multiple-choice instruction turns ----
 * LLaVA-1.5 mixes multiple-choice VQA turns ("Answer with the option's letter from the given
 * choices directly.") into its instruction data, so that the model learns to answer a listed
 * question with a letter. data_convs_mc does the same with the instruction data itself: an item
 * (image, Q, a) becomes (image, data_mc_prompt("", Q, options), letter of a), the benchmark's
 * letter prompt exactly (no hint: the image is there) with the letter as the answer. The options
 * are a and 1..DATA_MAX_CHOICES-1 distinct wrong answers drawn from the answers of the other items
 * of the same question kind (the first two words of the question: "what color", "how many", ...),
 * in random order; only answers of at most DATA_MC_MAX_OPTION_TOKENS tokens serve as options.
 * So the options come from the items given (the training split), never from a benchmark.
 * An item has a multiple-choice form when its answer can serve as an option, its kind has another
 * answer, and <bos> prompt letter <eos> fits max_T tokens (wrong options are dropped, down to one,
 * until it does). In the world that is every item but "describe the image ." (its answer is a
 * caption). */
#define DATA_MC_MAX_OPTION_TOKENS 4

/* Turns the share `share` (in [0, 1]) of the items that have a multiple-choice form into
 * multiple-choice turns, in place (prompt and answer replaced). order[0..n) lists every item once
 * (n = c->n; the data-fraction permutation): the k-th item with a multiple-choice form in this
 * order (k = 0, 1, ...) is turned iff floor((k+1)*share) > floor(k*share), so every prefix of the
 * order, i.e. every data-fraction subset, holds floor(share*m) turned items of its m items with a
 * form, and an item is turned or not whatever the fraction (subsets stay nested). The options and
 * the letter of item i depend only on (seed, i) and the items. is_mc (NULL or c->n bytes) marks
 * the turned items; *n_mc (may be NULL) receives their number. CG_EUSER for a share outside
 * [0, 1], or a share > 0 when no item has a multiple-choice form. */
int data_convs_mc(data_convs *c, const int *order, int n, double share, uint64_t seed,
                  const data_vocab *v, int max_T, uint8_t *is_mc, int *n_mc);

#endif
