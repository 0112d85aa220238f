"""Blocks the calling thread in a function whose name and line the tests know."""

import time


def wait_here():
    time.sleep(3600)  # MARK: wait_here
