"""A multi-process workload: a parent, a forked child, a pipe between them, a thread.

The child writes the numbers 1..N into a pipe, one every DELAY seconds; a thread
of the parent reads them and writes each to stdout and to OUT (append mode).
The parent exits with EXIT_CODE once the child is done.
usage: pipeline.py N DELAY OUT EXIT_CODE
"""

import os
import sys
import threading
import time

count, delay, out, exit_code = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
read_end, write_end = os.pipe()
child = os.fork()
if child == 0:
    os.close(read_end)
    for i in range(1, count + 1):
        os.write(write_end, f"{i}\n".encode())
        time.sleep(delay)
    os._exit(0)
os.close(write_end)


def consume() -> None:
    with os.fdopen(read_end) as pipe, open(out, "a", buffering=1) as f:
        for line in pipe:
            f.write(line)
            sys.stdout.write(line)
            sys.stdout.flush()


reader = threading.Thread(target=consume)
reader.start()
reader.join()
os.waitpid(child, 0)
sys.exit(exit_code)
