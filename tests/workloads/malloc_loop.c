/*
 * malloc_loop: an allocation-heavy benchmark load. One thread calls
 * malloc(SIZE), writes the block's first byte and frees it, as fast as it
 * can:
 *
 *     main -> alloc_loop -> alloc_one   malloc + touch, then free
 *
 * glibc serves this from its per-thread cache, so an iteration costs tens of
 * nanoseconds: any fixed cost added to malloc shows in full.
 * Waits DELAY seconds (time for a profiler to attach), runs for SECONDS,
 * then prints `mallocs_per_sec N` on stdout.
 *
 * Usage: malloc_loop SECONDS [SIZE [DELAY]]   SIZE defaults to 64
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *volatile sink;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noipa)) void *alloc_one(size_t size)
{
	char *p = malloc(size);
	if (!p) {
		perror("malloc");
		exit(1);
	}
	*(volatile char *)p = 1;
	return p;
}

__attribute__((noipa)) unsigned long alloc_loop(double seconds, size_t size)
{
	unsigned long n = 0;
	double end = now() + seconds;
	while (now() < end) {
		for (int i = 0; i < 4096; i++) {
			sink = alloc_one(size);
			free(sink);
		}
		n += 4096;
	}
	return n;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 10;
	size_t size = argc > 2 ? strtoul(argv[2], NULL, 0) : 64;
	double delay = argc > 3 ? atof(argv[3]) : 0;
	if (seconds <= 0 || size == 0 || delay < 0) {
		fprintf(stderr, "usage: malloc_loop SECONDS [SIZE [DELAY]]\n");
		return 2;
	}
	struct timespec pause = { .tv_sec = (time_t)delay, .tv_nsec = (long)((delay - (double)(time_t)delay) * 1e9) };
	nanosleep(&pause, NULL);
	double start = now();
	unsigned long n = alloc_loop(seconds, size);
	printf("mallocs_per_sec %.0f\n", (double)n / (now() - start));
	return 0;
}
