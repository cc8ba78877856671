"""A workload that keeps its state in a data file updated in place, as HDF5
datasets, numpy memmaps and databases do.

It fills DATA afresh with SIZE_KIB KiB of a fixed pattern, then
for steps 1..STEPS: reads one 4 KiB page at a step-dependent offset, prints the
page's checksum to stdout, and rewrites the page from it, sleeping DELAY seconds
in between. Every line depends on every earlier write, so a data file that is
not exactly as it was at a checkpoint changes every line after a restore. At the
end it prints the checksum of the whole file.
usage: in_place.py DATA SIZE_KIB STEPS DELAY
"""

import hashlib
import os
import sys
import time

data, size_kib, steps, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
pages = size_kib // 4
fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
pattern = bytes(range(256)) * 16
for page in range(pages):
    os.pwrite(fd, pattern, page * 4096)
for step in range(1, steps + 1):
    offset = (step * 7919 % pages) * 4096
    page = os.pread(fd, 4096, offset)
    print(f"step {step} {hashlib.sha256(page).hexdigest()[:16]}", flush=True)
    os.pwrite(fd, hashlib.sha256(page + bytes([step % 256])).digest() * 128, offset)
    time.sleep(delay)
whole = hashlib.sha256()
os.lseek(fd, 0, os.SEEK_SET)
while chunk := os.read(fd, 1 << 20):
    whole.update(chunk)
print("data", whole.hexdigest(), flush=True)
