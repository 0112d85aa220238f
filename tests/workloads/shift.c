/*
 * shift: a workload whose hot function changes at a known time, the flight
 * recorder's known answer.
 *
 *   shift ALPHA_SECONDS
 *       For ALPHA_SECONDS, one thread runs alpha about a third of the time
 *       (1 ms of work, 2 ms asleep); then it runs beta all the time (three
 *       times the CPU) until killed:
 *           main -> run_alpha -> alpha      then      main -> run_beta -> beta
 *
 * alpha and beta end with a call so they are not leaves and keep their
 * frame pointer under gcc 12 (as in cpu_split.c).
 *
 * Build: gcc -O1 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
 *            -fno-inline -pthread -o shift shift.c
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Iterations per call: about a millisecond of work. */
#define CHUNK (1UL << 20)

static volatile unsigned long sink;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static void touch(unsigned long x)
{
    sink = x;
}

__attribute__((noinline)) static void alpha(void)
{
    unsigned long x = sink;
    for (unsigned long i = 0; i < CHUNK; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    touch(x);
}

__attribute__((noinline)) static void beta(void)
{
    unsigned long x = sink;
    for (unsigned long i = 0; i < CHUNK; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    touch(x);
}

__attribute__((noinline)) static void run_alpha(double seconds)
{
    double end = now() + seconds;
    while (now() < end) {
        alpha();
        usleep(2000);
    }
}

__attribute__((noinline)) static void run_beta(void)
{
    for (;;)
        beta();
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: shift ALPHA_SECONDS\n");
        return 2;
    }
    run_alpha(atof(argv[1]));
    printf("beta\n");
    fflush(stdout);
    run_beta();
    return 0;
}
