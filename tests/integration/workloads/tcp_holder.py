"""A workload holding a TCP connection to a server outside its process tree,
which CRIU refuses to dump (established connections need --tcp-established).

usage: tcp_holder.py HOST PORT SECONDS OUT
"""

import socket
import sys
import time

host, port, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
conn = socket.create_connection((host, port))
with open(out, "a", buffering=1) as f:
    f.write("connected\n")
    time.sleep(seconds)
    f.write("done\n")
conn.close()
