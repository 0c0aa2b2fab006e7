/* mandelbrot: Computer Language Benchmarks Game, plain C, single-threaded,
 * scalar (no SIMD). Writes an N x N portable bitmap (P4) to stdout.
 * Usage: mandelbrot N   (benchmark N: 4000) */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200;
    int w = n, h = n;
    int row_bytes = (w + 7) / 8;
    unsigned char *row = malloc((size_t)row_bytes);
    if (!row)
        return 1;
    const int iter = 50;
    const double limit2 = 4.0;

    printf("P4\n%d %d\n", w, h);
    for (int y = 0; y < h; y++) {
        double ci = 2.0 * y / h - 1.0;
        unsigned char bits = 0;
        int bit_num = 0, idx = 0;
        for (int x = 0; x < w; x++) {
            double cr = 2.0 * x / w - 1.5;
            double zr = 0.0, zi = 0.0, tr = 0.0, ti = 0.0;
            int i;
            for (i = 0; i < iter && tr + ti <= limit2; i++) {
                zi = 2.0 * zr * zi + ci;
                zr = tr - ti + cr;
                tr = zr * zr;
                ti = zi * zi;
            }
            bits = (unsigned char)(bits << 1);
            if (tr + ti <= limit2)
                bits |= 1;
            bit_num++;
            if (bit_num == 8) {
                row[idx++] = bits;
                bits = 0;
                bit_num = 0;
            }
        }
        if (bit_num != 0)
            row[idx++] = (unsigned char)(bits << (8 - bit_num));
        fwrite(row, 1, (size_t)row_bytes, stdout);
    }
    free(row);
    return 0;
}
