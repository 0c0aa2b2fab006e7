/* fasta: Computer Language Benchmarks Game, plain C, single-threaded.
 * Generates DNA sequences (a repeated ALU string, then two weighted random
 * sequences from the benchmark's linear congruential generator) to stdout.
 * Usage: fasta N   (benchmark N: 25000000; check: N=1000 matches the
 * published fasta-output.txt) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE 60
#define IM 139968
#define IA 3877
#define IC 29573

static const char alu[] =
    "GGCCGGGCGCGGTGGCTCACGCCTGTAATCCCAGCACTTTGG"
    "GAGGCCGAGGCGGGCGGATCACCTGAGGTCAGGAGTTCGAGA"
    "CCAGCCTGGCCAACATGGTGAAACCCCGTCTCTACTAAAAAT"
    "ACAAAAATTAGCCGGGCGTGGTGGCGCGCGCCTGTAATCCCA"
    "GCTACTCGGGAGGCTGAGGCAGGAGAATCGCTTGAACCCGGG"
    "AGGCGGAGGTTGCAGTGAGCCGAGATCGCGCCACTGCACTCC"
    "AGCCTGGGCGACAGAGCGAGACTCCGTCTCAAAAA";

struct aminoacid {
    char c;
    double p;
};

static struct aminoacid iub[] = {
    {'a', 0.27}, {'c', 0.12}, {'g', 0.12}, {'t', 0.27},
    {'B', 0.02}, {'D', 0.02}, {'H', 0.02}, {'K', 0.02},
    {'M', 0.02}, {'N', 0.02}, {'R', 0.02}, {'S', 0.02},
    {'V', 0.02}, {'W', 0.02}, {'Y', 0.02},
};

static struct aminoacid homosapiens[] = {
    {'a', 0.3029549426680},
    {'c', 0.1979883004921},
    {'g', 0.1975473066391},
    {'t', 0.3015094502008},
};

static unsigned int last = 42;

static double gen_random(double max) {
    last = (last * IA + IC) % IM;
    return max * last / IM;
}

static void make_cumulative(struct aminoacid *table, int n) {
    double prob = 0.0;
    for (int i = 0; i < n; i++) {
        prob += table[i].p;
        table[i].p = prob;
    }
}

static void repeat_fasta(const char *s, long long count) {
    size_t len = strlen(s);
    /* s doubled, so any window of LINE chars starting in s is contiguous */
    char *s2 = malloc(len + LINE);
    if (!s2)
        exit(1);
    memcpy(s2, s, len);
    memcpy(s2 + len, s, LINE);
    size_t pos = 0;
    char line[LINE + 1];
    while (count > 0) {
        int l = count < LINE ? (int)count : LINE;
        memcpy(line, s2 + pos, (size_t)l);
        line[l] = '\n';
        fwrite(line, 1, (size_t)l + 1, stdout);
        pos += (size_t)l;
        if (pos >= len)
            pos -= len;
        count -= l;
    }
    free(s2);
}

static void random_fasta(const struct aminoacid *table, int n, long long count) {
    char line[LINE + 1];
    while (count > 0) {
        int l = count < LINE ? (int)count : LINE;
        for (int i = 0; i < l; i++) {
            double r = gen_random(1.0);
            int j = 0;
            while (j < n - 1 && table[j].p < r)
                j++;
            line[i] = table[j].c;
        }
        line[l] = '\n';
        fwrite(line, 1, (size_t)l + 1, stdout);
        count -= l;
    }
}

int main(int argc, char **argv) {
    long long n = argc > 1 ? atoll(argv[1]) : 1000;
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

    make_cumulative(iub, (int)(sizeof iub / sizeof iub[0]));
    make_cumulative(homosapiens, (int)(sizeof homosapiens / sizeof homosapiens[0]));

    fputs(">ONE Homo sapiens alu\n", stdout);
    repeat_fasta(alu, n * 2);
    fputs(">TWO IUB ambiguity codes\n", stdout);
    random_fasta(iub, (int)(sizeof iub / sizeof iub[0]), n * 3);
    fputs(">THREE Homo sapiens frequency\n", stdout);
    random_fasta(homosapiens, (int)(sizeof homosapiens / sizeof homosapiens[0]), n * 5);
    fflush(stdout);
    return 0;
}
