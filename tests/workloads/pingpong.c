/*
 * pingpong: a context-switch-heavy benchmark load. Two threads pass one byte
 * back and forth over a pair of pipes, so every round trip blocks and wakes
 * each thread once:
 *
 *     main -> ping   write(to_pong), read(from_pong)   (repeat)
 *     pong          read(from_ping), write(to_ping)    (repeat)
 *
 * Waits DELAY seconds (time for a profiler to attach), runs for SECONDS,
 * then prints `round_trips_per_sec N` on stdout.
 *
 * Usage: pingpong SECONDS [DELAY]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int to_pong[2], to_ping[2];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noipa)) void *pong(void *arg)
{
	char c;
	(void)arg;
	while (read(to_pong[0], &c, 1) == 1)
		if (write(to_ping[1], &c, 1) != 1)
			break;
	return NULL;
}

__attribute__((noipa)) unsigned long ping(double seconds)
{
	char c = 'x';
	unsigned long trips = 0;
	double end = now() + seconds;
	while (now() < end) {
		/* Check the clock every 256 round trips only. */
		for (int i = 0; i < 256; i++) {
			if (write(to_pong[1], &c, 1) != 1 || read(to_ping[0], &c, 1) != 1) {
				perror("pipe");
				exit(1);
			}
		}
		trips += 256;
	}
	return trips;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 10;
	double delay = argc > 2 ? atof(argv[2]) : 0;
	if (seconds <= 0 || delay < 0 || pipe(to_pong) != 0 || pipe(to_ping) != 0) {
		fprintf(stderr, "usage: pingpong SECONDS [DELAY]\n");
		return 2;
	}
	struct timespec pause = { .tv_sec = (time_t)delay, .tv_nsec = (long)((delay - (double)(time_t)delay) * 1e9) };
	nanosleep(&pause, NULL);
	pthread_t t;
	if (pthread_create(&t, NULL, pong, NULL) != 0) {
		perror("pthread_create");
		return 1;
	}
	double start = now();
	unsigned long trips = ping(seconds);
	printf("round_trips_per_sec %.0f\n", (double)trips / (now() - start));
	return 0;
}
