/* fannkuch-redux: Computer Language Benchmarks Game, plain C, single-threaded.
 * Counts pancake flips over all permutations of 1..n (generated in the
 * benchmark's counter order) and prints a checksum and the maximum flips.
 * Usage: fannkuchredux N   (benchmark N: 10; check: N=7 -> 228 / 16) */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 7;
    if (n < 1 || n > 15) {
        fprintf(stderr, "n must be in 1..15\n");
        return 1;
    }
    int perm[16], perm1[16], count[16];
    long long checksum = 0;
    int max_flips = 0, sign = 1, r = n;
    long long perm_count = 0;

    for (int i = 0; i < n; i++)
        perm1[i] = i;

    for (;;) {
        while (r != 1) {
            count[r - 1] = r;
            r--;
        }

        for (int i = 0; i < n; i++)
            perm[i] = perm1[i];
        int flips = 0;
        int k;
        while ((k = perm[0]) != 0) {
            int k2 = (k + 1) >> 1;
            for (int i = 0; i < k2; i++) {
                int t = perm[i];
                perm[i] = perm[k - i];
                perm[k - i] = t;
            }
            flips++;
        }
        if (flips > max_flips)
            max_flips = flips;
        checksum += sign * flips;
        sign = -sign;
        perm_count++;

        /* next permutation (rotate prefixes, counter order) */
        for (;;) {
            if (r == n) {
                printf("%lld\nPfannkuchen(%d) = %d\n", checksum, n, max_flips);
                return 0;
            }
            int perm0 = perm1[0];
            for (int i = 0; i < r; i++)
                perm1[i] = perm1[i + 1];
            perm1[r] = perm0;
            count[r]--;
            if (count[r] > 0)
                break;
            r++;
        }
    }
}
