/*
 * syscalls: spends most of its time in the kernel so that kernel frames
 * (entry_SYSCALL_64, __x64_sys_*, ksys_read/ksys_write, ...) show up under
 * user frames in a profile.
 *
 *     main -> syscall_loop -> do_getppid   (raw getppid(2): glibc does not cache it)
 *                          -> do_write     (write(2) of 4 KiB to /dev/null)
 *                          -> do_read      (read(2) of 64 KiB from /dev/zero: page-copy heavy)
 *
 * Build: gcc -O1 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer
 *            -fno-inline -o syscalls syscalls.c
 * Usage: syscalls [SECONDS]   0 or absent: run until killed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static char buf[64 * 1024];
static volatile long sink;

__attribute__((noipa)) void do_getppid(void)
{
	sink += syscall(SYS_getppid);
}

__attribute__((noipa)) void do_write(int fd)
{
	sink += write(fd, buf, 4096);
}

__attribute__((noipa)) void do_read(int fd)
{
	sink += read(fd, buf, sizeof buf);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noipa)) void syscall_loop(int null_fd, int zero_fd, double deadline)
{
	for (;;) {
		for (int i = 0; i < 1000; i++) {
			do_getppid();
			do_write(null_fd);
			do_read(zero_fd);
		}
		if (deadline != 0 && now() >= deadline)
			return;
	}
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 0;
	int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	int zero_fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	if (null_fd < 0 || zero_fd < 0) {
		perror("open");
		return 1;
	}
	syscall_loop(null_fd, zero_fd, seconds > 0 ? now() + seconds : 0);
	return 0;
}
