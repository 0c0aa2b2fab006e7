/* hello.wasm: prints a greeting, its arguments and environment, and
 * optionally writes a file (path in $HELLO_OUT, inside a preopened dir). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv) {
    printf("hello from wedge\n");
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; e && *e; e++)
        printf("env %s\n", *e);

    const char *out = getenv("HELLO_OUT");
    if (out) {
        FILE *f = fopen(out, "w");
        if (!f) {
            fprintf(stderr, "cannot write %s: %s\n", out, strerror(errno));
            return 1;
        }
        int ok = fputs("written by hello\n", f) >= 0;
        int err = errno;
        if (fclose(f) != 0) {
            ok = 0;
            err = errno;
        }
        if (!ok) {
            fprintf(stderr, "cannot write %s: %s\n", out, strerror(err));
            return 1;
        }
        printf("wrote %s\n", out);
    }
    return 0;
}
