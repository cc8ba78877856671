"""Run by test_criu_smoke as an ordinary user: start a counter process, dump it with
unprivileged CRIU through pycriu (swrk mode), restore it as our child, wait for it.

Prints one JSON object with what happened; the test judges it.
usage: criu_roundtrip_as_user.py WORKDIR CRIU_BINARY
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time

import pycriu

PR_SET_NO_NEW_PRIVS = 38
COUNT = 60

COUNTER = f"""
import time
with open("counter.txt", "a", buffering=1) as f:
    for i in range(1, {COUNT} + 1):
        f.write(f"{{i}}\\n")
        time.sleep(0.05)
"""


def no_new_privs() -> None:
    # Only the workload gets no_new_privs: criu needs its file capability.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def criu_client(binary: str, images: int, log_name: str) -> pycriu.criu.criu:
    client = pycriu.criu()
    client.use_binary(binary)
    client.opts.images_dir_fd = images
    client.opts.log_file = log_name
    client.opts.log_level = 4
    client.opts.unprivileged = True
    client.opts.manage_cgroups = True
    client.opts.manage_cgroups_mode = pycriu.rpc.IGNORE
    return client


def counted() -> list[int]:
    try:
        with open("counter.txt") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def main() -> None:
    workdir, binary = sys.argv[1], sys.argv[2]
    os.chdir(workdir)
    os.mkdir("images", 0o700)
    images = os.open("images", os.O_DIRECTORY)
    os.set_inheritable(images, True)

    counter = subprocess.Popen(
        ["/usr/bin/python3", "-c", COUNTER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=no_new_privs,
    )
    while len(counted()) < 10:
        time.sleep(0.02)

    dumper = criu_client(binary, images, "dump.log")
    dumper.opts.pid = counter.pid
    t0 = time.monotonic()
    dumper.dump()
    dump_seconds = time.monotonic() - t0
    counter.wait()  # the dump killed it; reap it so its PID is free for the restore
    lines_at_dump = len(counted())

    restorer = criu_client(binary, images, "restore.log")
    restorer.opts.rst_sibling = True
    t0 = time.monotonic()
    restored = restorer.restore()
    restore_seconds = time.monotonic() - t0
    _, status = os.waitpid(restored.pid, 0)

    print(
        json.dumps(
            {
                "uid": os.getuid(),
                "original_pid": counter.pid,
                "restored_pid": restored.pid,
                "lines_at_dump": lines_at_dump,
                "lines": counted(),
                "exit_status": os.waitstatus_to_exitcode(status),
                "dump_seconds": dump_seconds,
                "restore_seconds": restore_seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
