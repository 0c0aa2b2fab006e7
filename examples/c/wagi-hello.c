/* wagi-hello.wasm: the smallest WAGI (CGI-style) handler, the serve benchmark's
 * wagi function: a Content-Type header, a blank line, the body. */
#include <stdio.h>

int main(void) {
    fputs("Content-Type: text/plain\n\nhello from wagi\n", stdout);
    return 0;
}
