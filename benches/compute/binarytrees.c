/* binary-trees: Computer Language Benchmarks Game, plain C, single-threaded,
 * one malloc/free per node (an allocator benchmark).
 * Usage: binarytrees N   (benchmark N: 18; check: N=10 matches the published
 * output) */
#include <stdio.h>
#include <stdlib.h>

struct node {
    struct node *left, *right;
};

static struct node *make(int depth) {
    struct node *n = malloc(sizeof *n);
    if (!n) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    if (depth > 0) {
        n->left = make(depth - 1);
        n->right = make(depth - 1);
    } else {
        n->left = n->right = NULL;
    }
    return n;
}

static long long check(const struct node *n) {
    if (!n->left)
        return 1;
    return 1 + check(n->left) + check(n->right);
}

static void destroy(struct node *n) {
    if (n->left) {
        destroy(n->left);
        destroy(n->right);
    }
    free(n);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10;
    int min_depth = 4;
    int max_depth = n > min_depth + 2 ? n : min_depth + 2;
    int stretch = max_depth + 1;

    struct node *t = make(stretch);
    printf("stretch tree of depth %d\t check: %lld\n", stretch, check(t));
    destroy(t);

    struct node *long_lived = make(max_depth);

    for (int d = min_depth; d <= max_depth; d += 2) {
        long long iterations = 1LL << (max_depth - d + min_depth);
        long long sum = 0;
        for (long long i = 0; i < iterations; i++) {
            struct node *x = make(d);
            sum += check(x);
            destroy(x);
        }
        printf("%lld\t trees of depth %d\t check: %lld\n", iterations, d, sum);
    }

    printf("long lived tree of depth %d\t check: %lld\n", max_depth, check(long_lived));
    destroy(long_lived);
    return 0;
}
