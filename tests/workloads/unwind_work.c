/*
 * unwind_work: call graphs that a frame-pointer walk gets wrong, for the
 * unwind-table tests. Built with and without frame pointers (-O2).
 *
 *   cpu SECONDS     thread_main -> work_loop -> leaf_a (75 %), leaf_b (25 %)
 *                   leaf_a/leaf_b are true leaves: gcc 12 gives them no
 *                   frame even with -mno-omit-leaf-frame-pointer, so a
 *                   frame-pointer walk sampling in them loses work_loop.
 *   offcpu SECONDS  three threads blocked through glibc's frameless
 *                   wrappers: sleeper_main -> wait_for_io -> nanosleep,
 *                   reader_main -> read_pipe -> read (a pipe main writes
 *                   to every 20 ms), waiter_main -> wait_cond ->
 *                   pthread_cond_wait (main signals every 20 ms); main
 *                   sleeps in nanosleep between the two.
 *   qsort SECONDS   main -> sort_loop -> qsort (libc, no frame pointers)
 *                   -> compare_ints (this file): the callback's callers.
 *   alloc SECONDS   main -> alloc_loop -> alloc_leaf -> malloc
 *   dlopen SECONDS LIB
 *                   after 1.5 s, dlopen()s LIB (unwind_plugin.c) and loops
 *                   in it: main -> run_plugin -> plugin_work -> plugin_leaf.
 *   exec SECONDS PROGRAM ARGS...
 *                   spins in spin_before_exec for SECONDS, then execv()s
 *                   PROGRAM ARGS (the same pid runs another program).
 *   signal SECONDS  main -> interrupted_loop -> leaf_a, interrupted every
 *                   2 ms of CPU by SIGPROF, whose handler on_prof ->
 *                   handler_work -> leaf_b runs on the same stack, above
 *                   glibc's __restore_rt signal frame.
 *   paths SECONDS   main -> paths_loop -> path_a (75 %) | path_b (25 %)
 *                   -> climb x 10 -> leaf_a: the same ten frames, at the
 *                   same stack addresses, under two callers in turn (a
 *                   thread's remembered stack base must not be taken for
 *                   the other path's).
 *   deep SECONDS DEPTH
 *                   main -> descend x DEPTH -> leaf_a: a stack of
 *                   DEPTH + 3 frames or so (the stack maps keep stacks of
 *                   up to 31 frames apart from longer ones; 127 at most).
 *
 * Usage: unwind_work MODE SECONDS (0: until killed)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1UL << 20)

static volatile unsigned long sink;
static double deadline;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int done(void)
{
	return deadline > 0 && now() >= deadline;
}

__attribute__((noipa)) unsigned long leaf_a(unsigned long x, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	return x;
}

__attribute__((noipa)) unsigned long leaf_b(unsigned long x, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	return x;
}

/* A random length per round of a 3:1 loop (CHUNK/8 to 3*CHUNK/8): a
 * strictly periodic loop phase-locks with the sampling clock on a quiet
 * host; the expected split stays exactly 3:1. Always inlined: no frame of
 * its own in the loops' call graphs. */
static inline __attribute__((always_inline)) unsigned long round_length(unsigned long x)
{
	return CHUNK / 8 + (x >> 33) % (CHUNK / 4);
}

__attribute__((noipa)) void work_loop(void)
{
	unsigned long x = sink;
	while (!done()) {
		unsigned long n = round_length(x);
		x = leaf_a(x, 3 * n);
		x = leaf_b(x, n);
		sink = x;
	}
}

/* Not a tail call (the store after it), so each level keeps its frame. */
__attribute__((noipa)) unsigned long descend(int depth, unsigned long x)
{
	if (depth <= 1) {
		while (!done())
			x = leaf_a(x, CHUNK / 8);
		return x;
	}
	x = descend(depth - 1, x);
	sink = x;
	return x + (unsigned long)depth;
}

/* DEPTH levels that run leaf_a once and return (no tail calls: each
 * level keeps its frame). */
__attribute__((noipa)) unsigned long climb(int depth, unsigned long x, unsigned long n)
{
	if (depth <= 1)
		x = leaf_a(x, n);
	else
		x = climb(depth - 1, x, n);
	sink = x;
	return x + (unsigned long)depth;
}

/* Two callers of the same frame size, not folded into one (the bodies
 * differ): climb's frames sit at the same addresses under either. */
__attribute__((noipa)) unsigned long path_a(unsigned long x, unsigned long n)
{
	x = climb(10, x, n);
	sink = x;
	return x + 1;
}

__attribute__((noipa)) unsigned long path_b(unsigned long x, unsigned long n)
{
	x = climb(10, x, n);
	sink = x;
	return x + 2;
}

__attribute__((noipa)) void paths_loop(void)
{
	unsigned long x = sink;
	while (!done()) {
		unsigned long n = round_length(x);
		x = path_a(x, 3 * n);
		x = path_b(x, n);
		sink = x;
	}
}

__attribute__((noipa)) void *thread_main(void *arg)
{
	(void)arg;
	work_loop();
	return NULL;
}

__attribute__((noipa)) void wait_for_io(void)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	nanosleep(&ts, NULL);
}

__attribute__((noipa)) void *sleeper_main(void *arg)
{
	(void)arg;
	while (!done())
		wait_for_io();
	return NULL;
}

static int pipe_fds[2];

__attribute__((noipa)) long read_pipe(void)
{
	char c;
	return read(pipe_fds[0], &c, 1);
}

__attribute__((noipa)) void *reader_main(void *arg)
{
	(void)arg;
	while (read_pipe() == 1)
		;
	return NULL;
}

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static unsigned long ticks;

__attribute__((noipa)) void wait_cond(void)
{
	pthread_mutex_lock(&mutex);
	unsigned long seen = ticks;
	while (ticks == seen)
		pthread_cond_wait(&cond, &mutex);
	pthread_mutex_unlock(&mutex);
}

__attribute__((noipa)) void *waiter_main(void *arg)
{
	(void)arg;
	for (;;)
		wait_cond();
	return NULL;
}

__attribute__((noipa)) int compare_ints(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

__attribute__((noipa)) void sort_loop(void)
{
	static int v[4096];
	unsigned long seed = 1;
	while (!done()) {
		for (int i = 0; i < 4096; i++) {
			seed = seed * 6364136223846793005UL + 1442695040888963407UL;
			v[i] = (int)(seed >> 33);
		}
		qsort(v, 4096, sizeof v[0], compare_ints);
	}
}

__attribute__((noipa)) void *alloc_leaf(size_t n)
{
	void *p = malloc(n);
	if (p)
		memset(p, 1, 64);
	return p;
}

__attribute__((noipa)) void alloc_loop(void)
{
	while (!done()) {
		for (int i = 0; i < 1000; i++)
			free(alloc_leaf(4096 + (size_t)i));
		struct timespec ts = { 0, 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

__attribute__((noipa)) unsigned long handler_work(void)
{
	return leaf_b(sink, CHUNK / 8);
}

static void on_prof(int sig)
{
	(void)sig;
	sink = handler_work();
}

__attribute__((noipa)) void interrupted_loop(void)
{
	unsigned long x = sink;
	while (!done())
		x = leaf_a(x, CHUNK);
	sink = x;
}

__attribute__((noipa)) void run_plugin(unsigned long (*work)(unsigned long))
{
	unsigned long x = sink;
	while (!done())
		x = work(x);
	sink = x;
}

__attribute__((noipa)) void spin_before_exec(void)
{
	unsigned long x = sink;
	while (!done())
		x = x * 2862933555777941757UL + 3037000493UL;
	sink = x;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "cpu";
	double seconds = argc > 2 ? atof(argv[2]) : 0;
	if (seconds > 0)
		deadline = now() + seconds;
	pthread_t t[3];
	if (strcmp(mode, "cpu") == 0) {
		pthread_create(&t[0], NULL, thread_main, NULL);
		pthread_join(t[0], NULL);
	} else if (strcmp(mode, "offcpu") == 0) {
		if (pipe(pipe_fds) != 0)
			return 1;
		pthread_create(&t[0], NULL, sleeper_main, NULL);
		pthread_create(&t[1], NULL, reader_main, NULL);
		pthread_create(&t[2], NULL, waiter_main, NULL);
		while (!done()) {
			struct timespec ts = { 0, 20 * 1000 * 1000 };
			nanosleep(&ts, NULL);
			if (write(pipe_fds[1], "x", 1) != 1)
				return 1;
			pthread_mutex_lock(&mutex);
			ticks++;
			pthread_cond_signal(&cond);
			pthread_mutex_unlock(&mutex);
		}
		return 0;
	} else if (strcmp(mode, "paths") == 0) {
		paths_loop();
	} else if (strcmp(mode, "deep") == 0 && argc > 3) {
		sink = descend(atoi(argv[3]), sink);
	} else if (strcmp(mode, "qsort") == 0) {
		sort_loop();
	} else if (strcmp(mode, "alloc") == 0) {
		alloc_loop();
	} else if (strcmp(mode, "dlopen") == 0 && argc > 3) {
		struct timespec ts = { 1, 500 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		void *lib = dlopen(argv[3], RTLD_NOW);
		if (!lib) {
			fprintf(stderr, "%s\n", dlerror());
			return 1;
		}
		unsigned long (*work)(unsigned long) = (unsigned long (*)(unsigned long))dlsym(lib, "plugin_work");
		if (!work)
			return 1;
		run_plugin(work);
	} else if (strcmp(mode, "exec") == 0 && argc > 3) {
		spin_before_exec();
		execv(argv[3], argv + 3);
		perror("execv");
		return 1;
	} else if (strcmp(mode, "signal") == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_prof;
		sigaction(SIGPROF, &sa, NULL);
		struct itimerval it = { { 0, 2000 }, { 0, 2000 } };
		setitimer(ITIMER_PROF, &it, NULL);
		interrupted_loop();
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	return 0;
}
