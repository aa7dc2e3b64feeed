/* checkpoint.h: checkpoints and published weights in the safetensors format, readable by any
 * safetensors reader (Python's `safetensors`, or numpy with a dozen lines: tests/stages/).
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   u64 little-endian N | N bytes of JSON header, padded with spaces so that 8 + N is a multiple
 *   of 8 | the tensors' bytes, little-endian, C order, back to back in header order, no holes.
 *   header = {"__metadata__": {"key": "string value", ...},
 *             "NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
 *   offsets are relative to the first byte after the header.
 *
 * What cgvlm puts in a training checkpoint (experiments/stage_train.c) — everything a resumed run
 * needs to continue bitwise identically:
 *   NAME            every parameter of the stage's model, by its parameter name (F32)
 *   adam.m.NAME     AdamW first moment (F32)        adam.v.NAME   second moment (F32)
 *                   (of the parameters the stage trains)
 *   __metadata__    format "cgvlm", version "1", stage, config_key (the task key), step (steps
 *                   done), adam_step (AdamW's bias-correction count), seed and steps (the
 *                   schedule). Batches are a pure function of (seed, step) (core/batch.h), so the
 *                   data order needs no other state, and the training loop draws no random
 *                   numbers.
 * Published weights (a stage's output, model.safetensors) hold parameters and metadata only.
 *
 * Files are written atomically (util/fs.h): a crash leaves the previous checkpoint intact.
 * The reader validates everything it is given: a truncated file, a header length beyond the
 * file, malformed JSON, overlapping or out-of-range offsets, and (at ckpt_read) a dtype or shape
 * that is not what the model expects; each is CG_EUSER with a message naming the file.
 */
#ifndef CG_CHECKPOINT_H
#define CG_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

typedef enum { CKPT_F32 = 0, CKPT_I64, CKPT_U64, CKPT_I32, CKPT_U8, CKPT_N_DTYPES } ckpt_dtype;

#define CKPT_MAX_DIMS 8

/* One tensor to write. */
typedef struct {
    const char *name;
    ckpt_dtype dtype;
    int ndim;                       /* 0 for a scalar */
    int64_t shape[CKPT_MAX_DIMS];
    const void *data;
} ckpt_tensor;

/* A checkpoint being assembled in memory (descriptors only; data pointers are borrowed until
 * ckpt_writer_save returns). */
typedef struct ckpt_writer ckpt_writer;

ckpt_writer *ckpt_writer_new(void);
void ckpt_writer_free(ckpt_writer *w);
/* Adds a tensor; its name must be unique, printable and not "__metadata__" (asserted). */
void ckpt_writer_add(ckpt_writer *w, const char *name, ckpt_dtype dtype, int ndim,
                     const int64_t *shape, const void *data);
/* Shorthand for an F32 tensor. */
void ckpt_writer_add_f32(ckpt_writer *w, const char *name, const float *data, int ndim,
                         const int64_t *shape);
/* Sets a metadata string (replacing an earlier value for the key). */
void ckpt_writer_meta(ckpt_writer *w, const char *key, const char *value);
/* Writes the file atomically (temp file + fsync + rename). */
int ckpt_writer_save(ckpt_writer *w, const char *path);

/* A checkpoint opened for reading: the header is parsed and validated against the file size;
 * tensor data is read on demand. */
typedef struct ckpt_file ckpt_file;

int ckpt_open(const char *path, ckpt_file **out);
void ckpt_close(ckpt_file *f);
const char *ckpt_path(const ckpt_file *f);
/* A metadata value, or NULL. */
const char *ckpt_meta(const ckpt_file *f, const char *key);
/* Does the file hold a tensor of this name? */
int ckpt_has(const ckpt_file *f, const char *name);
int ckpt_n_tensors(const ckpt_file *f);
const char *ckpt_tensor_name(const ckpt_file *f, int i);
/* Reads a tensor into dst; its dtype and shape must be exactly the expected ones. CG_EUSER
 * naming the file and the tensor when it is missing or differs ("expected F32 [128,64], the file
 * has F32 [64,64]"). */
int ckpt_read(ckpt_file *f, const char *name, ckpt_dtype dtype, int ndim, const int64_t *shape,
              void *dst);
/* Shorthand for ckpt_read of an F32 tensor. */
int ckpt_read_f32(ckpt_file *f, const char *name, int ndim, const int64_t *shape, float *dst);

const char *ckpt_dtype_name(ckpt_dtype d);
size_t ckpt_dtype_size(ckpt_dtype d);

#endif
