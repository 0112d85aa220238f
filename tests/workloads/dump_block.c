/*
 * dump_block: threads parked in known functions, for `stackwatch dump`.
 *
 *     main -> wait_for_workers -> pthread_join            (the main thread)
 *     "sw-reader": reader_main -> block_in_read -> read   (an empty pipe)
 *     "sw-locker": locker_main -> block_on_mutex -> pthread_mutex_lock
 *                                                       (a mutex main holds)
 *     "sw-sleeper": sleeper_main -> block_in_sleep -> nanosleep
 *
 * Every thread blocks inside glibc, which is built without frame pointers:
 * a frame-pointer walk from the wrapper skips the function that called it,
 * so these stacks show whether the dump walks glibc's unwind tables.
 * Prints "ready" once every thread is about to block. Runs until killed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int pipe_fds[2];
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t started;
static volatile long sink;

__attribute__((noinline)) void block_in_read(void)
{
	char c;
	sink += read(pipe_fds[0], &c, 1);
}

__attribute__((noinline)) void block_on_mutex(void)
{
	pthread_mutex_lock(&held);
	sink++;
	pthread_mutex_unlock(&held);
}

__attribute__((noinline)) void block_in_sleep(void)
{
	struct timespec ts = { 3600, 0 };
	sink += nanosleep(&ts, NULL);
}

static void *reader_main(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&started);
	for (;;)
		block_in_read();
	return NULL;
}

static void *locker_main(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&started);
	for (;;)
		block_on_mutex();
	return NULL;
}

static void *sleeper_main(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&started);
	for (;;)
		block_in_sleep();
	return NULL;
}

__attribute__((noinline)) void wait_for_workers(pthread_t *threads, int n)
{
	for (int i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
}

int main(void)
{
	static void *(*const mains[])(void *) = { reader_main, locker_main, sleeper_main };
	static const char *const names[] = { "sw-reader", "sw-locker", "sw-sleeper" };
	pthread_t threads[3];
	if (pipe(pipe_fds) != 0)
		return 1;
	pthread_mutex_lock(&held);
	pthread_barrier_init(&started, NULL, 4);
	for (int i = 0; i < 3; i++) {
		if (pthread_create(&threads[i], NULL, mains[i], NULL) != 0)
			return 1;
		pthread_setname_np(threads[i], names[i]);
	}
	pthread_barrier_wait(&started);
	printf("ready\n");
	fflush(stdout);
	wait_for_workers(threads, 3);
	return 0;
}
