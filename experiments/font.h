/* font.h: a 5x7 bitmap font for printable ASCII (drawn with a 6-pixel advance and a 9-pixel line)
 * to put captions under images in contact sheets. */
#ifndef CG_FONT_H
#define CG_FONT_H

#include <stdint.h>

enum { FONT_W = 5, FONT_H = 7, FONT_ADVANCE = 6, FONT_LINE = 9 };

/* Is pixel (x, y) of character c's glyph set? Characters outside 32..126 draw as '?'. */
int font_pixel(char c, int x, int y);
/* Draws text at (x, y) (top left) into (H,W,3) pixels, `scale` pixels per font pixel, clipped
 * to the image. Returns the x after the text. */
int font_draw(uint8_t *rgb /* (H,W,3) */, int W, int H, int x, int y, const char *text,
              const uint8_t color[3], int scale);
/* Word-wraps text to lines of at most `cols` characters (longer words are cut). Writes up to
 * max_lines lines into lines[] (each malloc'ed) and returns how many. */
int font_wrap(const char *text, int cols, char **lines, int max_lines);

#endif
