/*
 * shift: a workload whose hot function changes at a known time, the flight
 * recorder's known answer.
 *
 *   shift ALPHA_SECONDS [THREADS]
 *       For ALPHA_SECONDS, one thread runs alpha a third of the time (1 ms
 *       of its CPU time, 2 ms asleep) while the other THREADS - 1 sleep;
 *       then all THREADS (default 1) run beta all the time, at least three
 *       times the CPU, until killed:
 *           worker -> run_alpha -> alpha      then      worker -> run_beta -> beta
 *
 * alpha and beta end with a call so they are not leaves and keep their
 * frame pointer under gcc 12 (as in cpu_split.c).
 *
 * Build: gcc -O1 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
 *            -fno-inline -pthread -o shift shift.c
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Iterations per call: a few microseconds of work. */
#define CHUNK (1UL << 12)

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

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 1 ms of this thread's CPU in alpha, then 2 ms asleep: at most a third of
 * a CPU whatever the machine's speed. */
__attribute__((noinline)) static void run_alpha(double seconds)
{
    double end = now() + seconds;
    while (now() < end) {
        double until = thread_cpu() + 0.001;
        while (thread_cpu() < until)
            alpha();
        usleep(2000);
    }
}

__attribute__((noinline)) static void run_beta(void)
{
    for (;;)
        beta();
}

static double alpha_seconds;

static void *worker(void *arg)
{
    if (arg == NULL)
        run_alpha(alpha_seconds);
    else
        usleep((useconds_t)(alpha_seconds * 1e6));
    run_beta();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: shift ALPHA_SECONDS [THREADS]\n");
        return 2;
    }
    alpha_seconds = atof(argv[1]);
    int threads = argc == 3 ? atoi(argv[2]) : 1;
    for (int i = 1; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, &alpha_seconds) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    worker(NULL);
    return 0;
}
