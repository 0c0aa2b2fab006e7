/* upper.wasm: copies stdin to stdout, uppercased, until EOF. */
#include <ctype.h>
#include <stdio.h>

int main(void) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)toupper((unsigned char)buf[i]);
        if (fwrite(buf, 1, n, stdout) != n)
            return 1;
    }
    return ferror(stdin) ? 1 : 0;
}
