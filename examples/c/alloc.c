/* alloc.wasm: allocates 1 MiB chunks (touching every page) until malloc
 * fails or 4096 chunks (4 GiB, the wasm32 address space) are reached, then
 * prints how much it got. Under a memory limit the guest sees the limit as
 * an allocation failure, not a trap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1024 * 1024)
#define MAX_CHUNKS 4096

int main(void) {
    int n = 0;
    while (n < MAX_CHUNKS) {
        char *p = malloc(CHUNK);
        if (!p)
            break;
        memset(p, 1, CHUNK);
        /* keep the pointer reachable so the allocation is not optimised out */
        __asm__ volatile("" : : "r"(p) : "memory");
        n++;
    }
    printf("allocated %d MiB\n", n);
    return 0;
}
