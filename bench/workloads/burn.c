/*
 * burn: the benchmark's CPU-bound workload, with a throughput the bench can
 * read at any moment.
 *
 *     main / worker -> burn_loop -> spin_a (2/3 of the work)
 *                              -> spin_b (1/3 of the work)
 *
 * Every burning thread adds one to its own counter (its own cache line, so
 * threads never share a line) per round of ~4096 multiply-adds. A reporter
 * thread blocks on stdin: for each line it reads, it prints
 * `<CLOCK_MONOTONIC ns> <total rounds>`, so the bench takes a reading at the
 * start and the end of any window without signals or polling. The reporter
 * sleeps in read(2) between requests and costs nothing; EOF on stdin ends
 * the process.
 *
 * Frame pointers and noipa functions, like tests/workloads/cpu_split.c, so
 * both profilers see the same small, stable call graph.
 *
 * Build: gcc -O1 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
 *            -fno-inline -pthread -o burn burn.c
 * Usage: burn THREADS
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256
#define ROUND 4096UL

struct counter {
	_Atomic unsigned long rounds;
	char pad[64 - sizeof(unsigned long)];
};

static struct counter counters[MAX_THREADS] __attribute__((aligned(64)));
static volatile unsigned long sink;

__attribute__((noipa)) void publish(unsigned long x)
{
	sink = x;
}

/* Non-leaf (ends with a call) so gcc keeps the frame-pointer prologue. */
__attribute__((noipa)) void spin_a(unsigned long iters)
{
	unsigned long x = sink;
	for (unsigned long i = 0; i < iters; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	publish(x);
}

__attribute__((noipa)) void spin_b(unsigned long iters)
{
	unsigned long x = sink;
	for (unsigned long i = 0; i < iters; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	publish(x);
}

__attribute__((noipa)) void burn_loop(struct counter *c)
{
	for (;;) {
		spin_a(2 * ROUND / 3);
		spin_b(ROUND / 3);
		atomic_fetch_add_explicit(&c->rounds, 1, memory_order_relaxed);
	}
}

static void *worker(void *arg)
{
	burn_loop(arg);
	return NULL;
}

static void *reporter(void *arg)
{
	long threads = (long)arg;
	char line[64];
	while (fgets(line, sizeof line, stdin) != NULL) {
		struct timespec ts;
		unsigned long total = 0;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		for (long i = 0; i < threads; i++)
			total += atomic_load_explicit(&counters[i].rounds, memory_order_relaxed);
		printf("%llu %lu\n", (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec, total);
		fflush(stdout);
	}
	exit(0);
}

int main(int argc, char **argv)
{
	long threads = argc > 1 ? atol(argv[1]) : 0;
	if (threads < 1 || threads > MAX_THREADS) {
		fprintf(stderr, "usage: %s THREADS (1 to %d)\n", argv[0], MAX_THREADS);
		return 2;
	}
	pthread_t tid;
	if (pthread_create(&tid, NULL, reporter, (void *)threads) != 0) {
		perror("pthread_create");
		return 1;
	}
	for (long i = 1; i < threads; i++) {
		if (pthread_create(&tid, NULL, worker, &counters[i]) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	burn_loop(&counters[0]);
	return 0;
}
