"""Slurm job and node state names, in named sets.

Job states are the long names squeue's State field and scontrol print
(PENDING, RUNNING, ...). Node states are sinfo's long names in lower case
with their flag suffixes removed (see parse.parse_sinfo).
"""

from __future__ import annotations

# A job whose batch process runs and can be checkpointed.
RUNNING = frozenset({"RUNNING"})
# Waiting to (re)start.
PENDING = frozenset(
    {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING"}
)
# Between states: present in Slurm but not checkpointable right now.
TRANSITIONAL = frozenset(
    {"COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING", "SPECIAL_EXIT"}
)
# Over for good unless requeued.
FINISHED = frozenset(
    {
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "REVOKED",
    }
)
# Finished through no fault of the job itself: a restart from an image makes sense.
INTERRUPTED = frozenset({"NODE_FAIL", "PREEMPTED", "TIMEOUT", "BOOT_FAIL"})
# Ended for good: a cancel or a normal end is never a reason to run a job again.
NEVER_REQUEUED = frozenset({"CANCELLED", "COMPLETED"})
# The states a requeue may be configured for (`[requeue] causes`), and the default.
REQUEUE_CAUSES = FINISHED - NEVER_REQUEUED
DEFAULT_REQUEUE_CAUSES = frozenset({"FAILED", "OUT_OF_MEMORY", "NODE_FAIL"})
JOB_STATES = RUNNING | PENDING | TRANSITIONAL | FINISHED

# Nodes that can run jobs.
NODE_UP = frozenset({"idle", "mixed", "allocated", "completing", "reserved", "planned"})
# Nodes that take no new jobs but keep running ones (an admin's drain).
NODE_DRAINING = frozenset({"draining", "drained", "drain"})
# Nodes that are gone or not usable; their jobs are lost or requeued.
NODE_DOWN = frozenset(
    {"down", "fail", "failing", "unknown", "future", "inval", "powered_down", "power_down"}
)
NODE_STATES = NODE_UP | NODE_DRAINING | NODE_DOWN
