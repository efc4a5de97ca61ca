"""An engine actor kills an engine core only when it is that actor's (pipeline/engine/cores.py): the
decision from a recorded core and what is seen now of its pid, then the same with real processes,
among them the orphaned core of a dead actor."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import psutil

from pipeline.engine.cores import CREATE_TIME_SLACK_S, CoreRecord, SeenProcess, children_cores, kill_cores, \
    local_node_id, may_kill

NODE = "node-a"
CORE = CoreRecord(node=NODE, pid=4242, create_time=1_000.0, parent_pid=77, parent_create_time=900.0)
SLEEP = "import time; time.sleep(600)"


def seen(**changes) -> SeenProcess:
    """The recorded core as it is seen while its actor runs, but for `changes`."""
    return SeenProcess(**{**dict(name="VLLM::EngineCore", cmdline="VLLM::EngineCore", create_time=1_000.0,
                                 parent_pid=77, parent_create_time=900.0, starter_create_time=900.0), **changes})


def test_the_core_of_this_actor_on_its_node_is_killed():
    assert may_kill(CORE, NODE, seen())
    assert may_kill(CORE, NODE, seen(name="python3", cmdline="python3 -c ... VLLM::EngineCore"))  # by its command


def test_a_core_recorded_on_another_node_is_never_killed_here():
    assert not may_kill(CORE, "node-b", seen())  # the same pid here is another replica's process


def test_a_reused_pid_is_not_the_recorded_core():
    assert not may_kill(CORE, NODE, seen(create_time=1_000.0 + 30))
    assert not may_kill(CORE, NODE, seen(create_time=1_000.0 - 30))
    # /proc/stat's boot time, which psutil adds to every create time, may have moved by a second
    assert may_kill(CORE, NODE, seen(create_time=1_000.0 + CREATE_TIME_SLACK_S))


def test_a_process_that_is_no_engine_core_or_no_process_is_not_killed():
    assert not may_kill(CORE, NODE, seen(name="raylet", cmdline="/ray/core/src/ray/raylet/raylet --node"))
    assert not may_kill(CORE, NODE, None)  # gone, a zombie, or not ours to read


def test_the_orphaned_core_of_a_dead_actor_is_known_by_its_pid_and_create_time():
    orphan = dict(parent_pid=1, parent_create_time=0.0)  # reparented to init (or a subreaper)
    assert may_kill(CORE, NODE, seen(**orphan, starter_create_time=None))  # its actor's pid is free
    assert may_kill(CORE, NODE, seen(**orphan, starter_create_time=5_000.0))  # ... or held by a newer process
    assert not may_kill(CORE, NODE, seen(**orphan, starter_create_time=None, create_time=2_000.0))  # pid reused


def test_a_core_whose_starter_lives_but_is_not_its_parent_is_another_process():
    # a process changes parent only when its parent dies: this pid holds some other actor's core
    assert not may_kill(CORE, NODE, seen(parent_pid=88, parent_create_time=950.0))


def _gone(proc: psutil.Process, within_s: float = 60) -> bool:
    """Whether `proc` ends (or lies dead, a zombie nobody reaped) within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_kill_cores_kills_this_process_s_recorded_core_and_nothing_it_should_not():
    node = local_node_id()
    core = subprocess.Popen([sys.executable, "-c", SLEEP, "EngineCore"])
    other = subprocess.Popen([sys.executable, "-c", SLEEP, "not-a-core"])
    try:
        (record,) = [c for c in children_cores(node) if c.pid in (core.pid, other.pid)]
        assert record.pid == core.pid and record.parent_pid == os.getpid() and record.node == node
        not_recorded_here = [
            dataclasses.replace(record, node="another-node"),
            dataclasses.replace(record, create_time=record.create_time - 60),  # as if the pid had been reused
            dataclasses.replace(record, pid=other.pid, create_time=psutil.Process(other.pid).create_time()),
        ]
        assert kill_cores(not_recorded_here, node) == []
        assert core.poll() is None and other.poll() is None
        assert kill_cores([record], node) == [core.pid]
        assert core.wait(60) == -signal.SIGKILL
    finally:
        for proc in (core, other):
            proc.kill()
            proc.wait(60)


STARTER = f"""
import dataclasses, json, subprocess, sys
from pipeline.engine.cores import children_cores
core = subprocess.Popen([sys.executable, "-c", {SLEEP!r}, "EngineCore"])
print(json.dumps([dataclasses.asdict(c) for c in children_cores(sys.argv[1])]), flush=True)
sys.stdin.read()
"""


def test_the_orphaned_core_of_a_dead_actor_is_killed_by_its_successor_on_that_node():
    node = local_node_id()
    actor = subprocess.Popen([sys.executable, "-c", STARTER, node], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    (record,) = [CoreRecord(**c) for c in json.loads(actor.stdout.readline())]  # as the actor records it
    core = psutil.Process(record.pid)
    try:
        actor.stdin.close()
        assert actor.wait(60) == 0  # the actor is gone; its core lives on under init or a subreaper
        assert core.is_running() and core.ppid() != record.parent_pid
        assert kill_cores([dataclasses.replace(record, node="another-node")], node) == []
        assert kill_cores([record], node) == [record.pid]
        assert _gone(core)
    finally:
        if core.is_running():
            core.kill()
