/* png.c: PNG encode/decode of RGB8 through libpng, and integer resizing (see png.h). */
#include "util/png.h"
#include "util/fs.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* libpng reports errors through a callback that must not return: keep the text, then longjmp. */
typedef struct {
    char msg[200];
} png_errbox;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_errbox *box = png_get_error_ptr(png);
    if (box) snprintf(box->msg, sizeof box->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void write_to_buf(png_structp png, png_bytep data, png_size_t n) {
    cg_buf_add(png_get_io_ptr(png), data, n);
}

static void flush_nothing(png_structp png) { (void)png; }

int cg_png_encode_rgb(const uint8_t *rgb, int w, int h, cg_buf *out) {
    if (w <= 0 || h <= 0) return cg_err(CG_EFAIL, "cannot encode a %dx%d png", w, h);
    png_errbox box = {{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &box, on_png_error, on_png_warning);
    if (!png) return cg_err(CG_EFAIL, "cannot create a png writer");
    png_infop info = png_create_info_struct(png);
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        free((void *)rows);
        png_destroy_write_struct(&png, &info);
        return cg_err(CG_EFAIL, "cannot encode png: %s", box.msg[0] ? box.msg : "out of memory");
    }
    rows = cg_malloc(sizeof *rows * (size_t)h);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(rgb + (size_t)y * (size_t)w * 3);
    png_set_write_fn(png, out, write_to_buf, flush_nothing);
    png_set_compression_level(png, 0);
    png_set_filter(png, 0, PNG_FILTER_NONE);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    free((void *)rows);
    png_destroy_write_struct(&png, &info);
    return CG_OK;
}

int cg_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h) {
    cg_buf b;
    cg_buf_init(&b);
    int rc = cg_png_encode_rgb(rgb, w, h, &b);
    if (rc == CG_OK) rc = cg_write_file_atomic(path, b.data, b.len);
    if (rc) cg_err_wrap(rc, "cannot write png '%s'", path);
    cg_buf_free(&b);
    return rc;
}

int cg_png_read_rgb(const char *path, uint8_t **rgb_out, int *w_out, int *h_out) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return cg_err(errno == ENOENT ? CG_EUSER : CG_EFAIL, "cannot open png '%s': %s", path,
                      strerror(errno));
    unsigned char sig[8];
    if (fread(sig, 1, 8, fp) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(fp);
        return cg_err(CG_EUSER, "'%s' is not a png file (bad signature)", path);
    }
    png_errbox box = {{0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &box, on_png_error, on_png_warning);
    if (!png) {
        fclose(fp);
        return cg_err(CG_EFAIL, "cannot create a png reader");
    }
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile rgb = NULL;
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        free(rgb);
        free((void *)rows);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(fp);
        return cg_err(CG_EUSER, "cannot read png '%s': %s", path,
                      box.msg[0] ? box.msg : "out of memory");
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (w == 0 || h == 0 || w > 16384 || h > 16384) png_error(png, "image dimensions out of range");
    int ct = png_get_color_type(png, info);
    if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) png_error(png, "unexpected row layout");
    rgb = cg_malloc((size_t)w * h * 3);
    rows = cg_malloc(sizeof(png_bytep) * h);
    for (png_uint_32 y = 0; y < h; y++) rows[y] = rgb + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free((void *)rows);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    *rgb_out = rgb;
    *w_out = (int)w;
    *h_out = (int)h;
    return CG_OK;
}

void cg_resize_rgb_nearest(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
    for (int y = 0; y < dh; y++) {
        int sy = (int)(((int64_t)(2 * y + 1) * sh) / (2 * dh));
        for (int x = 0; x < dw; x++) {
            int sx = (int)(((int64_t)(2 * x + 1) * sw) / (2 * dw));
            memcpy(dst + ((size_t)y * dw + x) * 3, src + ((size_t)sy * sw + sx) * 3, 3);
        }
    }
}

/* The source coordinate of a destination pixel centre in 16.16 fixed point, clamped to the
 * image: (d + 0.5) * s / dn - 0.5. */
static int64_t src_coord(int d, int s, int dn) {
    int64_t c = (((int64_t)(2 * d + 1) * s << 16) / (2 * dn)) - (1 << 15);
    if (c < 0) c = 0;
    if (c > ((int64_t)(s - 1) << 16)) c = (int64_t)(s - 1) << 16;
    return c;
}

void cg_resize_rgb_bilinear(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
    for (int y = 0; y < dh; y++) {
        int64_t cy = src_coord(y, sh, dh);
        int y0 = (int)(cy >> 16), y1 = y0 + 1 < sh ? y0 + 1 : y0;
        int64_t fy = cy & 0xffff;
        for (int x = 0; x < dw; x++) {
            int64_t cx = src_coord(x, sw, dw);
            int x0 = (int)(cx >> 16), x1 = x0 + 1 < sw ? x0 + 1 : x0;
            int64_t fx = cx & 0xffff;
            for (int c = 0; c < 3; c++) {
                int64_t p00 = src[((size_t)y0 * sw + x0) * 3 + c], p01 = src[((size_t)y0 * sw + x1) * 3 + c];
                int64_t p10 = src[((size_t)y1 * sw + x0) * 3 + c], p11 = src[((size_t)y1 * sw + x1) * 3 + c];
                int64_t top = p00 * (65536 - fx) + p01 * fx, bot = p10 * (65536 - fx) + p11 * fx;
                int64_t v = (top * (65536 - fy) + bot * fy + ((int64_t)1 << 31)) >> 32;
                dst[((size_t)y * dw + x) * 3 + c] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
    }
}
