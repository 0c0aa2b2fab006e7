/* wagi-echo.wasm: WAGI (CGI-style) test handler for `wedge serve`.
 * Routes on the end of PATH_INFO:
 *   .../echo      200 text/plain: method=, path=, query=, content_type=,
 *                 content_length= lines, `header HTTP_NAME=VALUE` per HTTP_*
 *                 variable (sorted by name), then `body=` and stdin copied out
 *   .../status    Status: 201 Created, X-Custom: yes, body `created\n`
 *   .../redirect  Status: 302 Found, Location: /elsewhere, empty body
 *   .../malformed output with no header block (no blank line)
 *   .../trap      executes `unreachable`
 *   .../loop      spins forever
 *   else          Status: 404 Not Found, body `no such page\n` */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v ? v : "";
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int by_string(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int echo(void) {
    printf("Content-Type: text/plain\n\n");
    printf("method=%s\n", env("REQUEST_METHOD"));
    printf("path=%s\n", env("PATH_INFO"));
    printf("query=%s\n", env("QUERY_STRING"));
    printf("content_type=%s\n", env("CONTENT_TYPE"));
    printf("content_length=%s\n", env("CONTENT_LENGTH"));

    size_t count = 0;
    for (char **e = environ; *e; e++)
        count++;
    char **headers = calloc(count + 1, sizeof *headers);
    if (!headers)
        return 1;
    size_t n = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "HTTP_", 5) == 0)
            headers[n++] = *e;
    qsort(headers, n, sizeof *headers, by_string);
    for (size_t i = 0; i < n; i++)
        printf("header %s\n", headers[i]);
    free(headers);

    fputs("body=", stdout);
    static char buf[65536]; /* static: the default wasm32 stack is only 64 KiB */
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, stdin)) > 0)
        if (fwrite(buf, 1, got, stdout) != got)
            return 1;
    return ferror(stdin) ? 1 : 0;
}

int main(void) {
    const char *path = env("PATH_INFO");
    if (ends_with(path, "/echo"))
        return echo();
    if (ends_with(path, "/status")) {
        fputs("Status: 201 Created\nX-Custom: yes\n\ncreated\n", stdout);
        return 0;
    }
    if (ends_with(path, "/redirect")) {
        fputs("Status: 302 Found\nLocation: /elsewhere\n\n", stdout);
        return 0;
    }
    if (ends_with(path, "/malformed")) {
        fputs("this is not a header line\nand this body has no blank line before it\n", stdout);
        return 0;
    }
    if (ends_with(path, "/trap"))
        __builtin_trap();
    if (ends_with(path, "/loop")) {
        volatile int spin = 1;
        while (spin) {
        }
    }
    fputs("Status: 404 Not Found\nContent-Type: text/plain\n\nno such page\n", stdout);
    return 0;
}
