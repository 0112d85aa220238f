/*
 * many_threads: a crowd of threads that mostly sleep, the load on which the
 * capture window must still close on time and totals stay physically
 * possible. THREADS threads each loop
 *
 *     crowd_thread -> churn   malloc + touch + free of a small block
 *                  -> nap     a 5 ms nanosleep (off-CPU)
 *
 * and every SPIN_EVERY-th thread also spins for about 1 ms per round:
 *
 *     crowd_thread -> spin    busy loop on the clock
 *
 * so the process has thousands of switch-outs per second, allocations on
 * every thread and a few CPU-bound threads. Every thread is up before
 * `ready N` is printed on stdout; the process runs until killed (or for
 * SECONDS, then exits 0).
 *
 * Usage: many_threads [THREADS [SPIN_EVERY [SECONDS]]]   defaults 2000 50 0 (forever)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void *volatile sink;
static pthread_barrier_t all_up;
static long spin_every;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noipa)) void churn(size_t size)
{
	char *p = malloc(size);
	if (!p) {
		perror("malloc");
		exit(1);
	}
	*(volatile char *)p = 1;
	sink = p;
	free(p);
}

__attribute__((noipa)) void nap(long ns)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = ns };
	nanosleep(&ts, NULL);
}

__attribute__((noipa)) void spin(double seconds)
{
	double end = now() + seconds;
	while (now() < end)
		;
}

__attribute__((noipa)) void *crowd_thread(void *arg)
{
	long index = (long)arg;
	int spins = spin_every > 0 && index % spin_every == 0;
	pthread_barrier_wait(&all_up);
	for (;;) {
		churn(64 + (size_t)(index % 16) * 16);
		if (spins)
			spin(0.001);
		nap(5 * 1000 * 1000);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long threads = argc > 1 ? atol(argv[1]) : 2000;
	spin_every = argc > 2 ? atol(argv[2]) : 50;
	double seconds = argc > 3 ? atof(argv[3]) : 0;
	if (threads <= 0 || spin_every < 0 || seconds < 0) {
		fprintf(stderr, "usage: many_threads [THREADS [SPIN_EVERY [SECONDS]]]\n");
		return 2;
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	/* 64 KiB stacks: 2000 default 8 MiB stacks would reserve 16 GiB. */
	pthread_attr_setstacksize(&attr, 64 * 1024);
	pthread_barrier_init(&all_up, NULL, (unsigned)threads + 1);
	for (long i = 0; i < threads; i++) {
		pthread_t t;
		if (pthread_create(&t, &attr, crowd_thread, (void *)i) != 0) {
			fprintf(stderr, "pthread_create failed at thread %ld\n", i);
			return 1;
		}
	}
	pthread_barrier_wait(&all_up);
	printf("ready %ld\n", threads);
	fflush(stdout);
	if (seconds > 0) {
		struct timespec ts = { .tv_sec = (time_t)seconds,
				       .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9) };
		nanosleep(&ts, NULL);
		return 0;
	}
	for (;;)
		pause();
}
