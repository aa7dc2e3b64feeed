/* png.h: PNG images as RGB8 (libpng): encoding to memory, atomic writes, reading any PNG
 * (grey, palette, alpha, 16-bit) into RGB8, and nearest/bilinear resizing.
 *
 * Encoding uses zlib level 0 (stored blocks) and no filtering, so the bytes depend only on the
 * pixels, never on the zlib build: a world's PNG files are byte-identical on every machine.
 * Pixels are row-major (H,W,3).
 */
#ifndef CG_PNG_H
#define CG_PNG_H

#include "util/util.h"

#include <stdint.h>

/* Encodes (h,w,3) pixels as a PNG into `out` (appended). CG_EFAIL if libpng fails. */
int cg_png_encode_rgb(const uint8_t *rgb /* (h,w,3) */, int w, int h, cg_buf *out);
/* Encodes and writes atomically to `path`. */
int cg_png_write_rgb(const char *path, const uint8_t *rgb /* (h,w,3) */, int w, int h);
/* Reads a PNG file into malloc'ed (h,w,3) RGB8 pixels; alpha is dropped, grey expanded,
 * 16-bit reduced. CG_EUSER naming the path for a missing, truncated or non-PNG file. */
int cg_png_read_rgb(const char *path, uint8_t **rgb, int *w, int *h);

/* Resizes (sh,sw,3) to (dh,dw,3). Nearest takes the source pixel under each destination
 * pixel's centre; bilinear interpolates in 16.16 fixed point (integer only: identical output on
 * every machine). */
void cg_resize_rgb_nearest(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);
void cg_resize_rgb_bilinear(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);

#endif
