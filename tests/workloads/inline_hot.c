/*
 * inline_hot: a CPU burner whose hot function does its work in an
 * always_inline helper, for checking that inlined frames are reported.
 *
 *     main -> hot -> mix (inlined into hot: no frame, no symbol of its own)
 *
 * Nearly all the time goes to mix's multiply-add chain, whose instructions
 * DWARF attributes to mix (inline_hot.c, inside mix) inlined at the call in
 * hot. hot ends with a call to publish() so it keeps its frame-pointer
 * prologue (gcc 12 drops it in a leaf that needs no stack), and the
 * unwinder finds main above it; -fno-optimize-sibling-calls keeps that
 * call a call rather than a jump, which would drop the frame all the same.
 *
 * Build: gcc -O2 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
 *            -fno-optimize-sibling-calls -o inline_hot inline_hot.c
 * Usage: inline_hot [SECONDS]   SECONDS 0 or absent: run until killed.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

__attribute__((noipa)) void publish(unsigned long x)
{
	sink = x;
}

static inline __attribute__((always_inline)) unsigned long mix(unsigned long x)
{
	for (int i = 0; i < 256; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL; /* MIX */
	return x;
}

__attribute__((noipa)) void hot(unsigned long iters)
{
	unsigned long x = sink;
	for (unsigned long i = 0; i < iters; i++)
		x = mix(x) ^ i; /* CALL */
	publish(x);
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
		hot(4096);
		if (deadline != 0 && now() >= deadline)
			return 0;
	}
}
