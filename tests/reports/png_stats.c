/* png_stats.c: png_stats FILE prints "WIDTH HEIGHT NONWHITE_SHARE DISTINCT_COLOURS" of a PNG (via
 * libpng), for the screenshot check of check_html.py: a blank page has almost no non-white pixels
 * and few colours. Colours are counted on 5-bit-per-channel values (32768 bins). */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: png_stats FILE.png\n");
        return 2;
    }
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, argv[1])) {
        fprintf(stderr, "png_stats: cannot read '%s': %s\n", argv[1], img.message);
        return 1;
    }
    img.format = PNG_FORMAT_RGB;
    size_t n = (size_t)img.width * img.height;
    unsigned char *px = malloc(n * 3);
    static unsigned char seen[32768];
    if (!px || !png_image_finish_read(&img, NULL, px, 0, NULL)) {
        fprintf(stderr, "png_stats: cannot decode '%s': %s\n", argv[1], img.message);
        return 1;
    }
    size_t nonwhite = 0, colours = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = px + 3 * i;
        nonwhite += p[0] < 235 || p[1] < 235 || p[2] < 235;
        unsigned bin = (unsigned)(p[0] >> 3) << 10 | (unsigned)(p[1] >> 3) << 5 | (unsigned)(p[2] >> 3);
        if (!seen[bin]) seen[bin] = 1, colours++;
    }
    printf("%u %u %.6f %zu\n", img.width, img.height, (double)nonwhite / (double)n, colours);
    free(px);
    return 0;
}
