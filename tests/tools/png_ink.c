/* tests/tools/png_ink.c - is a rendered picture blank? Reads a PNG (libpng's
 * simplified API, as RGBA) and prints "WIDTHxHEIGHT INK": INK counts the
 * pixels that differ from the top-left one (the background). With a colour
 * RRGGBB as second argument, INK counts the pixels of exactly that colour
 * (the bars of a plot, say). Exit 1 on an unreadable file. Test-time only:
 * lorahub itself links no image library. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: png_ink FILE.png [RRGGBB]\n");
        return 2;
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, argv[1])) {
        fprintf(stderr, "png_ink: %s: %s\n", argv[1], im.message);
        return 1;
    }
    im.format = PNG_FORMAT_RGBA;
    size_t n = (size_t)im.width * im.height;
    unsigned char *px = malloc(n * 4); /* [height, width, 4] */
    if (!px || !png_image_finish_read(&im, NULL, px, 0, NULL)) {
        fprintf(stderr, "png_ink: %s: %s\n", argv[1], px ? im.message : "out of memory");
        free(px);
        return 1;
    }
    unsigned char ref[4];
    memcpy(ref, px, 4);
    int exact = argc == 3;
    if (exact) {
        unsigned rgb;
        if (sscanf(argv[2], "%6x", &rgb) != 1) {
            fprintf(stderr, "png_ink: '%s' is not a colour RRGGBB\n", argv[2]);
            free(px);
            return 2;
        }
        ref[0] = (unsigned char)(rgb >> 16), ref[1] = (unsigned char)(rgb >> 8);
        ref[2] = (unsigned char)rgb, ref[3] = 255;
    }
    size_t ink = 0;
    for (size_t i = 0; i < n; i++)
        ink += exact == !memcmp(px + 4 * i, ref, 4);
    printf("%ux%u %zu\n", im.width, im.height, ink);
    free(px);
    return 0;
}
