"""Threads parked in known functions, for reading Python stacks from outside.

Usage: stacks.py [DEPTH] [--busy]. Each thread announces itself on stdout
(one JSON line: name, native thread id, pthread id) just before it blocks;
"ready" comes from the main thread. The "busy" thread, which burns a CPU,
only runs with --busy. Lines
the tests check carry a "MARK:" comment: the tests find them in this file,
so nothing is hard-coded on their side. Runs on CPython 3.8 and later.
"""

import json
import sys
import threading

import sleeper

output = threading.Lock()


def say(line):
    # One write per line, under a lock: print() from several threads
    # interleaves the text and its newline.
    with output:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def announce(name):
    say(json.dumps({"thread": name, "tid": threading.get_native_id(), "pthread": threading.get_ident()}))


class Outer:
    class Inner:
        def method(self):
            announce("nested")
            sleeper.wait_here()  # MARK: method


def slow_key(x):
    if x == 2:
        announce("callback")
        sleeper.wait_here()  # MARK: slow_key
    return x


def sort_with_callback():
    return sorted([3, 1, 2], key=lambda x: slow_key(x))  # MARK: sort_with_callback


def recurse(depth):
    if depth == 0:
        announce("deep")
        sleeper.wait_here()  # MARK: recurse_bottom
    else:
        recurse(depth - 1)  # MARK: recurse


def spin():
    announce("busy")
    n = 0
    while True:  # MARK: spin_start
        n = (n * 31 + 7) % 1000003
        n = n ^ (n >> 3)  # MARK: spin_end


def main():
    args = [a for a in sys.argv[1:] if a != "--busy"]
    depth = int(args[0]) if args else 17
    targets = {
        "sleeper": lambda: (announce("sleeper"), sleeper.wait_here()),
        "nested": lambda: Outer.Inner().method(),
        "callback": sort_with_callback,
        "deep": lambda: recurse(depth),
    }
    if "--busy" in sys.argv:
        targets["busy"] = spin
    for name, target in targets.items():
        threading.Thread(target=target, name=name, daemon=True).start()
    announce("main")
    say("ready")
    sleeper.wait_here()  # MARK: main


if __name__ == "__main__":
    main()  # MARK: module
