/*
 * leak: a process that leaks memory at a steady rate through one function.
 *
 *     main -> leak_loop -> leak     malloc(SIZE), touch every page, keep it
 *                       -> leak_b   the same, for every EVERY-th block (if set)
 *
 * Nothing is ever freed: each block's first word links it to the previous
 * one and the list head is a volatile global, so the compiler can neither
 * drop the malloc nor the writes. leak() touches its block with a loop of
 * its own (one write per page) rather than memset(): glibc's memset has no
 * frame pointer, so page faults taken inside it would be charged to leak's
 * caller (see docs/usage.md on frame-pointer unwinding).
 *
 * Every PACE_MS the process allocates RATE * PACE_MS / 1000 bytes (in
 * SIZE-byte blocks) and appends `CLOCK_REALTIME-ns total-bytes` to LOG, so a
 * test can compute exactly how much was allocated in any time window.
 * The total is bounded by LIMIT bytes (default 1 GiB), after which the
 * process only sleeps.
 *
 * With EVERY > 0, every EVERY-th block is allocated by leak_b instead: a
 * regular pattern of two call sites, which a sampler that takes every N-th
 * byte would alias with (always landing on the same call site).
 *
 * Usage: leak LOG [SIZE [RATE [LIMIT [EVERY]]]]
 * Defaults: 4096 16777216 1073741824 0
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define PACE_MS 10
#define PAGE 4096

static void *volatile head;
static unsigned long total;

/* Touches every page of a new block and links it into the list. A macro,
 * not an inline function, so the page faults are charged to the allocating
 * function itself rather than to an inlined frame inside it. */
#define KEEP(p, size)                                               \
	do {                                                        \
		for (size_t off = 0; off < (size); off += PAGE)     \
			((volatile char *)(p))[off] = 1;            \
		((volatile char *)(p))[(size) - 1] = 1;             \
		*(void **)(p) = head;                               \
		head = (p);                                         \
	} while (0)

__attribute__((noipa)) void leak(size_t size)
{
	char *p = malloc(size);
	if (!p) {
		perror("malloc");
		exit(1);
	}
	KEEP(p, size);
}

__attribute__((noipa)) void leak_b(size_t size)
{
	char *p = malloc(size);
	if (!p) {
		perror("malloc");
		exit(1);
	}
	KEEP(p, size);
}

static unsigned long long now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

__attribute__((noipa)) void leak_loop(FILE *log, size_t size, unsigned long rate, unsigned long limit,
				      unsigned long every)
{
	unsigned long n = 0;
	unsigned long long next = now_ns(CLOCK_MONOTONIC);
	double owed = 0;
	for (;;) {
		owed += (double)rate * PACE_MS / 1000.0;
		while (owed >= (double)size && total + size <= limit) {
			if (every && ++n % every == 0)
				leak_b(size);
			else
				leak(size);
			total += size;
			owed -= (double)size;
		}
		fprintf(log, "%llu %lu\n", now_ns(CLOCK_REALTIME), total);
		fflush(log);
		next += PACE_MS * 1000000ULL;
		struct timespec ts = { .tv_sec = (time_t)(next / 1000000000ULL),
				       .tv_nsec = (long)(next % 1000000000ULL) };
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: leak LOG [SIZE [RATE [LIMIT [EVERY]]]]\n");
		return 2;
	}
	size_t size = argc > 2 ? strtoul(argv[2], NULL, 0) : 4096;
	unsigned long rate = argc > 3 ? strtoul(argv[3], NULL, 0) : 16UL << 20;
	unsigned long limit = argc > 4 ? strtoul(argv[4], NULL, 0) : 1UL << 30;
	unsigned long every = argc > 5 ? strtoul(argv[5], NULL, 0) : 0;
	if (size < sizeof(void *) || rate == 0) {
		fprintf(stderr, "leak: SIZE must be at least %zu and RATE positive\n", sizeof(void *));
		return 2;
	}
	FILE *log = fopen(argv[1], "w");
	if (!log) {
		perror(argv[1]);
		return 1;
	}
	leak_loop(log, size, rate, limit, every);
	return 0;
}
