/* A wedge function in C, CGI-style (WAGI): wedge runs this WASI preview 1 program once per
 * request. The request line and headers arrive as CGI environment variables
 * (REQUEST_METHOD, PATH_INFO, QUERY_STRING, HTTP_*), the body on stdin. What it writes to
 * stdout is the response: header lines, a blank line, then the body. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *method = getenv("REQUEST_METHOD");
    const char *path = getenv("PATH_INFO");
    printf("Content-Type: text/plain\n\n");
    printf("hello from c (wagi): %s %s\n", method ? method : "?", (path && *path) ? path : "/");
    return 0;
}
