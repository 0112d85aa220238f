/*
 * inuse: a process whose allocations go through two call sites, one that
 * frees everything it allocates (churn) and one that keeps it (hold), so a
 * memory profile's in-use view can be told from its allocation view.
 *
 *     main -> inuse_loop -> churn   malloc(SIZE), realloc to 2*SIZE, free
 *                        -> hold    calloc(1, SIZE), kept
 *
 * Every PACE_MS the process churns CHURN_RATE * PACE_MS / 1000 bytes (counted
 * as SIZE per churn() call) and holds HOLD_RATE * PACE_MS / 1000 bytes, and
 * appends `CLOCK_REALTIME-ns held-bytes` to LOG (the format of leak.c's log),
 * so a test knows how much was kept in any time window. Held blocks are
 * linked through their first word from a volatile global, so the compiler
 * can drop none of the calls. The held total is bounded by LIMIT bytes.
 *
 * Usage: inuse LOG SIZE CHURN_RATE HOLD_RATE [LIMIT]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define PACE_MS 10

static void *volatile head;
static void *volatile sink;
static unsigned long held;

static unsigned long long now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

static void *must(void *p)
{
	if (!p) {
		perror("inuse");
		exit(1);
	}
	return p;
}

__attribute__((noipa)) void churn(size_t size)
{
	char *p = must(malloc(size));
	p[0] = 1;
	p = must(realloc(p, 2 * size));
	p[2 * size - 1] = 1;
	sink = p;
	free(p);
}

__attribute__((noipa)) void hold(size_t size)
{
	void **p = must(calloc(1, size));
	*p = head;
	head = p;
}

__attribute__((noipa)) void inuse_loop(FILE *log, size_t size, unsigned long churn_rate, unsigned long hold_rate,
				       unsigned long limit)
{
	unsigned long long next = now_ns(CLOCK_MONOTONIC);
	double churn_owed = 0, hold_owed = 0;
	for (;;) {
		churn_owed += (double)churn_rate * PACE_MS / 1000.0;
		hold_owed += (double)hold_rate * PACE_MS / 1000.0;
		while (churn_owed >= (double)size) {
			churn(size);
			churn_owed -= (double)size;
		}
		while (hold_owed >= (double)size && held + size <= limit) {
			hold(size);
			held += size;
			hold_owed -= (double)size;
		}
		fprintf(log, "%llu %lu\n", now_ns(CLOCK_REALTIME), held);
		fflush(log);
		next += PACE_MS * 1000000ULL;
		struct timespec ts = { .tv_sec = (time_t)(next / 1000000000ULL),
				       .tv_nsec = (long)(next % 1000000000ULL) };
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: inuse LOG SIZE CHURN_RATE HOLD_RATE [LIMIT]\n");
		return 2;
	}
	size_t size = strtoul(argv[2], NULL, 0);
	unsigned long churn_rate = strtoul(argv[3], NULL, 0);
	unsigned long hold_rate = strtoul(argv[4], NULL, 0);
	unsigned long limit = argc > 5 ? strtoul(argv[5], NULL, 0) : 1UL << 30;
	if (size < sizeof(void *) || churn_rate == 0 || hold_rate == 0) {
		fprintf(stderr, "inuse: SIZE must be at least %zu and the rates positive\n", sizeof(void *));
		return 2;
	}
	FILE *log = fopen(argv[1], "w");
	if (!log) {
		perror(argv[1]);
		return 1;
	}
	inuse_loop(log, size, churn_rate, hold_rate, limit);
	return 0;
}
