"""CPU-bound Python for the profiler's end-to-end tests.

Usage: py_split.py [--exit-after SECONDS] [--alloc] [--single]. The main thread runs caller(),
which spends three times as long in hot_a() as in hot_b() (three calls of
the same work against one, each call far shorter than a sampling period,
so the loop cannot alias with the sampling clock); the "sorter" thread sorts with a Python key
function, so the interpreter calls Python from C (sorted) called from
Python; the "napper" thread sleeps in nap(); with --alloc, the
"allocator" thread allocates 64 KiB buffers (from malloc: larger than
pymalloc's objects) in grow(), about 64 MiB/s; with --single, only the
main thread runs (no sorter, no napper). Prints "ready" once every
thread runs. Lines the tests check carry a "MARK:" comment: the tests find
them in this file. Runs on CPython 3.8 and later.
"""

import sys
import threading
import time


def hot_a():
    x = 0
    for i in range(2000):
        x = (x * 31 + i) % 1000003  # MARK: hot_a
    return x


def hot_b():
    x = 0
    for i in range(2000):
        x = (x * 31 + i) % 1000003  # MARK: hot_b
    return x


def caller(deadline):
    while time.monotonic() < deadline:
        hot_a()  # MARK: caller
        hot_a()
        hot_a()
        hot_b()


def key_fn(x):
    y = x
    for i in range(200):
        y = (y * 31 + i) % 1000003  # MARK: key_fn
    return y


def sort_loop():
    data = list(range(300))
    while True:
        sorted(data, key=key_fn)  # MARK: sort_loop
        time.sleep(0.002)


def nap():
    # Short sleeps: each wake-up and switch-out is an off-CPU interval the
    # capture sees from its start.
    while True:
        time.sleep(0.05)  # MARK: nap


def grow():
    held = []
    while True:
        held.append(bytearray(65536))  # MARK: grow
        if len(held) >= 64:
            held.clear()
        time.sleep(0.001)


def main():
    exit_after = 3600.0
    if "--exit-after" in sys.argv:
        exit_after = float(sys.argv[sys.argv.index("--exit-after") + 1])
    threads = [] if "--single" in sys.argv else [("sorter", sort_loop), ("napper", nap)]
    if "--alloc" in sys.argv:
        threads.append(("allocator", grow))
    for name, target in threads:
        threading.Thread(target=target, name=name, daemon=True).start()
    print("ready", flush=True)
    caller(time.monotonic() + exit_after)


if __name__ == "__main__":
    main()
