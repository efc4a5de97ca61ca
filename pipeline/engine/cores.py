"""The engine-core processes of one engine actor: found, recorded, and killed only while they are that
actor's.

An engine actor kills engine cores in three places (pipeline/engine/actor.py): its own when its engine
failed, its own half-started ones when the start failed, and the ones its predecessor left. The
predecessor's pids come from the health ledger (pipeline/engine/health.py), and the restarted actor
may land on another node. In containers pid numbers repeat across nodes, and on one node a pid is
reused once its process is gone; so a bare pid can name another replica's engine core. Each core is
therefore recorded as a `CoreRecord` (its node, its pid and create time, its parent's pid and create
time) and `may_kill` decides from that record and what is seen now of the pid.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

ENGINE_CORE = "EngineCore"  # vLLM titles its core process VLLM::EngineCore...
# psutil's create time is the process's start in clock ticks since boot (10 ms) plus the boot time
# of /proc/stat, whole seconds recomputed from the wall clock at every read: two reads of one process
# can differ by a second when the clock was adjusted in between. A pid reused within that second by
# another engine core of the same parentage would need the node's whole pid range to wrap first.
CREATE_TIME_SLACK_S = 1.0


@dataclass(frozen=True)
class CoreRecord:
    """An engine core as its actor saw it when the engine was ready."""

    node: str  # Ray's node id, or local_node_id() without Ray
    pid: int
    create_time: float  # epoch seconds (psutil): with the pid, this very process
    parent_pid: int  # the process that started it (the engine actor's)
    parent_create_time: float


@dataclass(frozen=True)
class SeenProcess:
    """What is seen now of a recorded core's pid (None when no process or a zombie holds it)."""

    name: str
    cmdline: str
    create_time: float
    parent_pid: int | None  # its parent now
    parent_create_time: float | None
    starter_create_time: float | None  # of the live process holding record.parent_pid now, if any


def is_engine_core(name: str, cmdline: str) -> bool:
    return ENGINE_CORE in name or ENGINE_CORE in cmdline


def _same_time(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) <= CREATE_TIME_SLACK_S


def may_kill(record: CoreRecord, node: str, seen: SeenProcess | None) -> bool:
    """Whether the process now holding `record.pid`, seen from `node`, is the recorded engine core.

    The rule, in order:
    * another node: its pids are not this node's, and the process there cannot be seen from here;
    * nothing (or a zombie) holds the pid: nothing to kill;
    * not an engine core by name or command line: not ours;
    * another create time: the pid was reused by another process;
    * then the parent. While the process that started the core (pid and create time as recorded)
      is alive, the core is its child: a process changes parent only when its parent dies. So a
      live starter that is not the parent means this is not the recorded core. When the starter is
      gone (the predecessor actor died; its pid free or held by a process of another create time),
      the kernel has reparented its core to init or a subreaper, and the parent says nothing: the
      core is known by its pid and create time alone, which were checked above.
    """
    if record.node != node or seen is None:
        return False
    if not is_engine_core(seen.name, seen.cmdline) or not _same_time(seen.create_time, record.create_time):
        return False
    starter_alive = _same_time(seen.starter_create_time, record.parent_create_time)
    child_of_starter = seen.parent_pid == record.parent_pid and _same_time(seen.parent_create_time,
                                                                          record.parent_create_time)
    return child_of_starter or not starter_alive


def local_node_id() -> str:
    """This machine in this boot, for a ledger without Ray: the hostname (containers on one host each
    have their own, as they have their own pid numbers) and the kernel's boot id (new at every boot,
    when pids start over; /proc/stat's boot time can move by a second, see CREATE_TIME_SLACK_S). Where
    there is no boot id (not Linux), the boot time in whole seconds."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        import psutil

        boot = str(int(psutil.boot_time()))
    return f"{socket.gethostname()}/{boot}"


def _live_create_time(pid: int) -> float | None:
    """The create time of the live process `pid`; None when there is none (or only a zombie)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc.create_time()
    except psutil.Error:
        return None


def _seen(proc, starter_pid: int) -> SeenProcess | None:
    import psutil

    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        parent_pid = proc.ppid()
        return SeenProcess(name=proc.name(), cmdline=" ".join(proc.cmdline()), create_time=proc.create_time(),
                           parent_pid=parent_pid, parent_create_time=_live_create_time(parent_pid),
                           starter_create_time=_live_create_time(starter_pid))
    except psutil.Error:  # gone, or not ours to read: not ours to kill either
        return None


def children_cores(node: str) -> list[CoreRecord]:
    """The engine cores vLLM started under this process (with tensor parallelism, workers hang below)."""
    import psutil

    cores = []
    for child in psutil.Process().children(recursive=True):
        try:
            if not is_engine_core(child.name(), " ".join(child.cmdline())):
                continue
            parent_pid = child.ppid()
            cores.append(CoreRecord(node=node, pid=child.pid, create_time=child.create_time(), parent_pid=parent_pid,
                                    parent_create_time=psutil.Process(parent_pid).create_time()))
        except psutil.Error:
            continue
    return cores


def kill_cores(records: list[CoreRecord], node: str) -> list[int]:
    """SIGKILL the recorded cores that may_kill allows from `node`; returns the pids killed."""
    import psutil

    killed = []
    for record in records:
        try:
            proc = psutil.Process(record.pid)
            if may_kill(record, node, _seen(proc, record.parent_pid)):
                proc.kill()  # psutil refuses if the pid changed hands since `proc` was made
                killed.append(record.pid)
        except psutil.Error:
            continue
    return killed
