/*
 * plt_hot: a CPU burner whose time goes into calls through the PLT, for
 * checking that PLT stubs are named after their callee (`labs@plt`) and
 * never after the symbol before the PLT (`_init`).
 *
 *     main -> plt_loop -> labs@plt -> labs (libc)
 *
 * labs is a few instructions, so the stub's indirect jump is a good part
 * of each call. -fno-builtin keeps gcc from inlining labs; the argument
 * changes every iteration, so the calls cannot be hoisted out of the loop.
 *
 * Build: gcc -O2 -g -fno-omit-frame-pointer -fno-builtin -o plt_hot plt_hot.c
 * Usage: plt_hot [SECONDS]   SECONDS 0 or absent: run until killed.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <time.h>

static volatile long sink;

__attribute__((noipa)) void plt_loop(long n)
{
	long sum = 0;
	for (long i = 0; i < n; i++)
		sum += labs(i - n / 2);
	sink = sum;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 0;
	double deadline = seconds > 0 ? now() + seconds : 0;
	for (;;) {
		plt_loop(1 << 16);
		if (deadline != 0 && now() >= deadline)
			return 0;
	}
}
