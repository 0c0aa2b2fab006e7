/* crash.wasm: traps (wasm `unreachable`) inside parse_config. Built without
 * --strip-all so the name section remains and a backtrace shows
 * parse_config and main. */
#include <stdio.h>

__attribute__((noinline)) static int parse_config(const char *text) {
    if (text[0] != '{')
        __builtin_trap();
    return 0;
}

int main(int argc, char **argv) {
    const char *config = argc > 1 ? argv[1] : "not a config";
    int r = parse_config(config);
    printf("parsed: %d\n", r);
    return r;
}
