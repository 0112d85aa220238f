/*
 * cpu_split: a CPU burner with a known call graph and a known time split.
 *
 *     main (or worker, in extra threads) -> loop_fn -> hot_a   (75% of the time)
 *                                                 -> hot_b   (25% of the time)
 *
 * hot_a and hot_b run the very same loop (one multiply-add dependency chain
 * per iteration), so cost per iteration is equal and the 3:1 iteration ratio
 * is a 3:1 time ratio. Each is `noipa` (implies noinline, and stops gcc from
 * folding the two identical bodies into one symbol).
 *
 * Frame pointers: gcc 12 (Debian 12) ignores -mno-omit-leaf-frame-pointer for
 * a leaf that needs no stack, so a leaf hot_a would not push %rbp and a
 * frame-pointer unwinder sampling inside it would lose loop_fn. hot_a and
 * hot_b therefore end with a call to publish(), which makes them non-leaf
 * (they keep the prologue) at the cost of one call per ~ms of work.
 *
 * Build: gcc -O1 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
 *            -fno-inline -pthread -o cpu_split cpu_split.c
 * Usage: cpu_split [SECONDS [THREADS]]   SECONDS 0 or absent: run until killed.
 *                                        THREADS: total burning threads (default 1).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Iterations per hot_b call: about a millisecond of work on a current core. */
#define CHUNK (1UL << 20)

static volatile unsigned long sink;
static double deadline; /* CLOCK_MONOTONIC seconds; 0 = never */

__attribute__((noipa)) void publish(unsigned long x)
{
	sink = x;
}

__attribute__((noipa)) void hot_a(unsigned long iters)
{
	unsigned long x = sink;
	for (unsigned long i = 0; i < iters; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	publish(x);
}

__attribute__((noipa)) void hot_b(unsigned long iters)
{
	unsigned long x = sink;
	for (unsigned long i = 0; i < iters; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	publish(x);
}

/* Each round's length varies (CHUNK/8 to 3*CHUNK/8 for hot_b, three times
 * that for hot_a): a strictly periodic 3:1 loop beats against a 99 Hz
 * sampling clock on a quiet host (phase locking: one sample in the same
 * place of the cycle every time), and the measured split drifts far from
 * 3:1. A random length per round keeps the expected split exactly 3:1. */
static __thread unsigned long rng = 0x9e3779b97f4a7c15UL;

static unsigned long next_chunk(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return CHUNK / 8 + rng % (CHUNK / 4);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noipa)) void loop_fn(void)
{
	for (;;) {
		unsigned long chunk = next_chunk();
		hot_a(3 * chunk);
		hot_b(chunk);
		if (deadline != 0 && now() >= deadline)
			return;
	}
}

__attribute__((noipa)) void *worker(void *arg)
{
	(void)arg;
	loop_fn();
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 0;
	long threads = argc > 2 ? atol(argv[2]) : 1;
	if (seconds < 0 || threads < 1 || threads > 1024) {
		fprintf(stderr, "usage: %s [SECONDS [THREADS]]\n", argv[0]);
		return 2;
	}
	if (seconds > 0)
		deadline = now() + seconds;

	pthread_t tids[1024];
	for (long i = 1; i < threads; i++) {
		if (pthread_create(&tids[i], NULL, worker, NULL) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	loop_fn();
	for (long i = 1; i < threads; i++)
		pthread_join(tids[i], NULL);
	return 0;
}
