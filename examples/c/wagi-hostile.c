/* wagi-hostile.wasm: a WAGI module that writes the response heads a hostile tenant would,
 * for the tests of what `wedge serve` lets through. Routes on the end of PATH_INFO:
 *   .../many-headers   200,000 distinct header lines, then a body
 *   .../split          `Content-Length: 2` before a 12-byte body and a forged response
 *   .../length-ok      `Content-Length: 5` and the 5-byte body `hello`
 *   .../huge-header    one header of 70,000 bytes
 *   .../cr             a value with a bare CR that would start a forged header line
 *   .../status-101     `Status: 101 Switching Protocols`
 *   .../framing        the header line given in QUERY_STRING (`Name:value`, %20 for a space)
 *                      before `Content-Type: text/plain` and the body `framed\n`
 *   else               Status: 404 Not Found */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* QUERY_STRING with %20 as a space; nothing else is decoded. */
static void print_query_line(const char *query) {
    for (const char *p = query; *p; p++) {
        if (strncmp(p, "%20", 3) == 0) {
            putchar(' ');
            p += 2;
        } else {
            putchar(*p);
        }
    }
    putchar('\n');
}

int main(void) {
    const char *path = getenv("PATH_INFO");
    const char *query = getenv("QUERY_STRING");
    if (!path)
        path = "";
    if (!query)
        query = "";
    if (ends_with(path, "/many-headers")) {
        printf("Content-Type: text/plain\n");
        for (int i = 0; i < 200000; i++)
            printf("X-H%d: v\n", i);
        printf("\nx\n");
    } else if (ends_with(path, "/split")) {
        printf("Content-Type: text/plain\nContent-Length: 2\n\n"
               "hello world!HTTP/1.1 200 OK\r\nX-Injected: yes\r\n\r\n");
    } else if (ends_with(path, "/length-ok")) {
        printf("Content-Type: text/plain\nContent-Length: 5\n\nhello");
    } else if (ends_with(path, "/huge-header")) {
        printf("Content-Type: text/plain\nX-Huge: ");
        for (int i = 0; i < 70000; i++)
            putchar('v');
        printf("\n\nhuge\n");
    } else if (ends_with(path, "/cr")) {
        printf("Content-Type: text/plain\nX-A: a\rX-Injected: yes\n\nbody\n");
    } else if (ends_with(path, "/status-101")) {
        printf("Status: 101 Switching Protocols\nUpgrade: websocket\nContent-Type: text/plain\n\n");
    } else if (ends_with(path, "/framing")) {
        print_query_line(query);
        printf("Content-Type: text/plain\n\nframed\n");
    } else {
        printf("Status: 404 Not Found\nContent-Type: text/plain\n\nno such page\n");
    }
    return 0;
}
