/*
 * offcpu_block: a thread that is off the CPU almost all the time, with a
 * known split of its blocked time between two functions.
 *
 *     blocker -> block_loop -> block_a   sleeps A_US per round (75% by default)
 *                           -> block_b   sleeps B_US per round (25% by default)
 *
 * Each round is one nanosleep in block_a and one in block_b, so the blocked
 * time splits A_US : B_US; the CPU time between sleeps is a few microseconds.
 *
 * block_a and block_b enter the kernel themselves, with an inline `syscall`
 * instruction, instead of calling glibc's nanosleep(). glibc is built without
 * frame pointers, so when the thread blocks inside a libc wrapper the
 * frame-pointer walk goes from the wrapper straight to the caller's caller
 * and the function that called the wrapper (the one a reader is looking for)
 * is missing from the stack. block_libc does exactly that, on purpose, so
 * the tests can show the limitation (it runs only with MODE "libc").
 * Each blocking function also calls publish() afterwards: gcc 12 drops the
 * frame of a leaf function even with -mno-omit-leaf-frame-pointer, and a
 * frameless block_a would lose block_loop the same way.
 *
 * The main thread waits in pthread_join for the whole run, so it is off the
 * CPU too, but switched out once before any capture starts.
 *
 * Usage: offcpu_block [A_US [B_US [MODE]]]   defaults 3000 1000 asm
 *   MODE "asm": block_a and block_b as above; "libc": block_libc(A_US) and
 *   block_b(B_US). The blocker is the process's second thread.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
static long a_us = 3000, b_us = 1000;
static int libc_mode;

__attribute__((noipa)) void publish(unsigned long x)
{
	sink = x;
}

/* nanosleep(2) by hand: the `syscall` instruction is inside the caller. */
static inline __attribute__((always_inline)) long raw_nanosleep(const struct timespec *ts)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"((long)SYS_nanosleep), "D"(ts), "S"(0L)
			 : "rcx", "r11", "memory");
	return ret;
}

static struct timespec us_to_ts(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
	return ts;
}

__attribute__((noipa)) void block_a(long us)
{
	struct timespec ts = us_to_ts(us);
	long ret = raw_nanosleep(&ts);
	publish((unsigned long)ret);
}

__attribute__((noipa)) void block_b(long us)
{
	struct timespec ts = us_to_ts(us);
	long ret = raw_nanosleep(&ts);
	publish((unsigned long)ret + 1);
}

/* Blocks through glibc: the frame-pointer walk loses this function. */
__attribute__((noipa)) void block_libc(long us)
{
	struct timespec ts = us_to_ts(us);
	int ret = nanosleep(&ts, NULL);
	publish((unsigned long)ret + 2);
}

__attribute__((noipa)) void block_loop(void)
{
	for (;;) {
		if (libc_mode)
			block_libc(a_us);
		else
			block_a(a_us);
		block_b(b_us);
	}
}

static void *blocker(void *arg)
{
	(void)arg;
	block_loop();
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		a_us = atol(argv[1]);
	if (argc > 2)
		b_us = atol(argv[2]);
	if (argc > 3)
		libc_mode = strcmp(argv[3], "libc") == 0;
	if (a_us <= 0 || b_us <= 0) {
		fprintf(stderr, "usage: offcpu_block [A_US [B_US [asm|libc]]]\n");
		return 2;
	}
	/* No timer slack: the sleeps last what was asked, so the split is A:B. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	pthread_t t;
	if (pthread_create(&t, NULL, blocker, NULL) != 0) {
		perror("pthread_create");
		return 1;
	}
	pthread_join(t, NULL);
	return 0;
}
