/*
 * phases: a workload that changes behaviour on a schedule, so trigger tests
 * can check that nothing fires before the change and that a capture follows
 * it.
 *
 *   phases cpu IDLE_SECONDS [THREADS [BUSY_SECONDS]]
 *       Sleeps IDLE_SECONDS (using no CPU), then burns THREADS threads
 *       (default 1) for BUSY_SECONDS (0 or absent: until killed):
 *           main (or worker) -> burn_phase -> phase_hot
 *
 *   phases grow STEP_KIB PERIOD_MS MAX_MIB
 *       Every PERIOD_MS, allocates STEP_KIB and writes one byte per page, so
 *       resident memory grows steadily until MAX_MIB; then holds it until
 *       killed. The page faults come from
 *           main -> grow_phase -> touch_pages
 *       and the allocations from grow_phase -> malloc.
 *
 * As in cpu_split.c, phase_hot ends with a call so it is not a leaf and keeps
 * its frame pointer under gcc 12.
 *
 * Build: gcc -O1 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
 *            -fno-inline -pthread -o phases phases.c
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
/* Iterations per phase_hot call: about a millisecond of work. */
#define CHUNK (1UL << 20)

static volatile unsigned long sink;
static double deadline; /* CLOCK_MONOTONIC seconds; 0 = never */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_seconds(double seconds)
{
	struct timespec ts;
	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0)
		;
}

__attribute__((noipa)) void publish(unsigned long x)
{
	sink = x;
}

__attribute__((noipa)) void phase_hot(unsigned long iters)
{
	unsigned long x = sink;
	for (unsigned long i = 0; i < iters; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	publish(x);
}

__attribute__((noipa)) void burn_phase(void)
{
	for (;;) {
		phase_hot(CHUNK);
		if (deadline != 0 && now() >= deadline)
			return;
	}
}

__attribute__((noipa)) void *worker(void *arg)
{
	(void)arg;
	burn_phase();
	return NULL;
}

static int cpu_mode(int argc, char **argv)
{
	double idle = argc > 2 ? atof(argv[2]) : 0;
	long threads = argc > 3 ? atol(argv[3]) : 1;
	double busy = argc > 4 ? atof(argv[4]) : 0;
	if (idle < 0 || busy < 0 || threads < 1 || threads > 1024) {
		fprintf(stderr, "usage: %s cpu IDLE_SECONDS [THREADS [BUSY_SECONDS]]\n", argv[0]);
		return 2;
	}
	sleep_seconds(idle);
	if (busy > 0)
		deadline = now() + busy;
	pthread_t tids[1024];
	for (long i = 1; i < threads; i++) {
		if (pthread_create(&tids[i], NULL, worker, NULL) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	burn_phase();
	for (long i = 1; i < threads; i++)
		pthread_join(tids[i], NULL);
	return 0;
}

/* Writes one byte per page: each first write is a page fault here. */
__attribute__((noipa)) void touch_pages(volatile char *p, unsigned long bytes)
{
	for (unsigned long off = 0; off < bytes; off += PAGE)
		p[off] = (char)off;
	publish((unsigned long)p);
}

__attribute__((noipa)) void grow_phase(unsigned long step, unsigned long period_us, unsigned long max)
{
	unsigned long total = 0;
	while (total + step <= max) {
		char *p = malloc(step);
		if (p == NULL) {
			perror("malloc");
			exit(1);
		}
		touch_pages(p, step);
		total += step;
		usleep(period_us);
	}
}

static int grow_mode(int argc, char **argv)
{
	long step_kib = argc > 2 ? atol(argv[2]) : 0;
	long period_ms = argc > 3 ? atol(argv[3]) : 0;
	long max_mib = argc > 4 ? atol(argv[4]) : 0;
	if (step_kib < 4 || period_ms < 1 || max_mib < 1) {
		fprintf(stderr, "usage: %s grow STEP_KIB PERIOD_MS MAX_MIB\n", argv[0]);
		return 2;
	}
	grow_phase((unsigned long)step_kib << 10, (unsigned long)period_ms * 1000, (unsigned long)max_mib << 20);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "cpu") == 0)
		return cpu_mode(argc, argv);
	if (argc > 1 && strcmp(argv[1], "grow") == 0)
		return grow_mode(argc, argv);
	fprintf(stderr, "usage: %s cpu IDLE_SECONDS [THREADS [BUSY_SECONDS]] | grow STEP_KIB PERIOD_MS MAX_MIB\n",
		argv[0]);
	return 2;
}
