"""ckpt-admin's client of slurm-ckptd's API (`service/api.py`), for every caller but root.

Each question is one POST whose body is a MUNGE credential made for this
process's uid, with `{"op": ..., "args": ...}` as its payload; the service
decides what that uid may see and do. Settings on this side only choose where
the service is (`[api] url`): they grant nothing. Replies are rebuilt into
the records root's ckpt-admin gets from the catalog, so every command prints
the same either way.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from slurm_ckpt import munge
from slurm_ckpt.cli.errors import CliError, ExitCode
from slurm_ckpt.db.catalog import ActionRecord
from slurm_ckpt.errors import MungeUnavailable
from slurm_ckpt.service import wire
from slurm_ckpt.service.imagecheck import Progress
from slurm_ckpt.service.ops import (
    GcPlan,
    JobCheckpoints,
    JobDetail,
    JobListing,
    JobQuery,
    VerifyOptions,
    VerifyReport,
)

PATH = "/v1"
TIMEOUT = 60.0  # seconds for one answer
VERIFY_TIMEOUT = 3600.0  # --read-data hashes whole images on the service host
MAX_REPLY = 512 << 20  # list-jobs of every job, as an admin sees it, fits easily

# Error kinds the service sends that are not exit code names.
_KINDS = {
    "unauthenticated": ExitCode.NOT_ALLOWED,
    "busy": ExitCode.CATALOG_UNAVAILABLE,
    "service_unavailable": ExitCode.CATALOG_UNAVAILABLE,
}


class RemoteError(CliError):
    """The service refused or failed a request; the exit code is its verdict's."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ServiceUnreachable(CliError):
    """slurm-ckptd's API cannot be reached (or is not configured)."""

    exit_code = ExitCode.CATALOG_UNAVAILABLE


class RemoteBackend:
    """`service.ops.Backend` over the service's API."""

    def __init__(self, url: str | None, *, sign: Callable[[bytes], bytes] = munge.encode) -> None:
        self.url = url
        self.sign = sign

    def list_jobs(self, *, cluster: str, query: JobQuery) -> list[JobListing]:
        args = {
            "cluster": cluster,
            "user": query.user_name,
            "states": sorted(query.states),
            "node": query.node,
            "all": query.include_ended,
        }
        return wire.load(list[JobListing], self._call("list-jobs", args))

    def show(self, *, cluster: str, job_id: int, events: int) -> JobDetail:
        args = {"cluster": cluster, "job_id": job_id, "events": events}
        return wire.load(JobDetail, self._call("show", args))

    def checkpoints(self, *, cluster: str, job_id: int) -> JobCheckpoints:
        args = {"cluster": cluster, "job_id": job_id}
        return wire.load(JobCheckpoints, self._call("checkpoints", args))

    def checkpoint(self, *, cluster: str, job_id: int) -> ActionRecord:
        return self._action("checkpoint", {"cluster": cluster, "job_id": job_id})

    def requeue(self, *, cluster: str, job_id: int, checkpoint_first: bool) -> ActionRecord:
        args = {"cluster": cluster, "job_id": job_id, "checkpoint_first": checkpoint_first}
        return self._action("requeue", args)

    def drain(self, *, cluster: str, node: str, reason: str | None) -> ActionRecord:
        return self._action("drain", {"cluster": cluster, "node": node, "reason": reason})

    def gc(self, *, cluster: str) -> ActionRecord:
        return self._action("gc", {"cluster": cluster})

    def gc_plan(self, *, cluster: str) -> GcPlan:
        return wire.load(GcPlan, self._call("gc-plan", {"cluster": cluster}))

    def action(self, *, action_id: int) -> ActionRecord:
        return self._action("action", {"action_id": action_id})

    def verify(
        self, *, cluster: str, job_id: int, options: VerifyOptions, progress: Progress | None = None
    ) -> VerifyReport:
        # The service reads the images; no progress comes back, only the report.
        read_data = options.read_data
        args = {"cluster": cluster, "job_id": job_id, "read_data": read_data, "seq": options.seq}
        timeout = VERIFY_TIMEOUT if read_data else TIMEOUT
        return wire.load(VerifyReport, self._call("verify", args, timeout=timeout))

    def _action(self, op: str, args: dict[str, Any]) -> ActionRecord:
        return wire.load(ActionRecord, self._call(op, args))

    def _call(self, op: str, args: dict[str, Any], *, timeout: float = TIMEOUT) -> Any:
        """The result of `op`, or the service's refusal as a CliError."""
        if self.url is None:
            raise ServiceUnreachable(
                "the service's API is not configured: set [api] url (or [api] host and "
                "port) in the configuration; only root may use the catalog directly"
            )
        payload = json.dumps({"op": op, "args": args}, separators=(",", ":")).encode()
        try:
            credential = self.sign(payload)
        except MungeUnavailable as err:
            raise ServiceUnreachable(f"{err}: ckpt-admin proves who you are with MUNGE") from err
        status, body = _post(self.url, credential, timeout)
        try:
            reply = json.loads(body)
        except (ValueError, RecursionError):
            reply = None
        if not isinstance(reply, dict):
            raise CliError(
                f"slurm-ckptd at {self.url} sent a reply that is not JSON (HTTP {status})"
            )
        if status == 200 and "result" in reply:
            return reply["result"]
        error = reply.get("error")
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            raise CliError(f"slurm-ckptd at {self.url} answered HTTP {status} without a reason")
        text = "".join(ch if ch.isprintable() else " " for ch in error["message"])
        raise RemoteError(" ".join(text.split()), _exit_code(error.get("kind")))


def _post(url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    # http.client, not urllib: straight to the service, never through a $http_proxy.
    conn = kind(parts.netloc, timeout=timeout)
    try:
        conn.request("POST", PATH, body=body, headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        data = response.read(MAX_REPLY + 1)
    except (OSError, http.client.HTTPException) as err:
        raise ServiceUnreachable(_unreachable(url, err)) from err
    finally:
        conn.close()
    if len(data) > MAX_REPLY:
        raise CliError(f"slurm-ckptd at {url} sent a reply above {MAX_REPLY >> 20} MiB")
    return response.status, data


def _exit_code(kind: object) -> ExitCode:
    if isinstance(kind, str):
        if kind in _KINDS:
            return _KINDS[kind]
        if kind.upper() in ExitCode.__members__:
            return ExitCode[kind.upper()]
    return ExitCode.ERROR


def _unreachable(url: str, err: BaseException) -> str:
    if isinstance(err, socket.timeout | TimeoutError):
        why = "no answer in time"
    elif isinstance(err, ConnectionRefusedError):
        why = "connection refused"
    else:
        why = " ".join(str(err).split()) or type(err).__name__
    return (
        f"slurm-ckptd's API at {url} cannot be reached ({why}): check that slurm-ckptd "
        "runs with [api] port set, and that [api] url names it"
    )
