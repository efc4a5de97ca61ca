"""The tests' faults and engine double, switched on by the tests alone: the product reads no test
variable and has no fault hook, so nothing set in a production environment can make a run answer with
a stand-in, kill a process, write outside its output or sleep.

The faults that come from outside (SIGKILL or SIGSTOP of a real engine core, killed Ray workers, storage
broken on the wire) need nothing here. The ones that must happen inside the product's processes come
from this module, which a test runs as the program's entry point (tests/harness.py does it whenever a
test sets DOCINTEL_FAULTS, a JSON object):

    python -m faults_plugin docintel ARGS...     the CLI, with the faults below
    python -m faults_plugin SCRIPT.py ARGS...    a script (bench/synthetic_run.py commit), driver faults only

In the driver it installs the driver's faults, then adds to the CLI's arguments the settings that carry
the rest as ordinary job settings: `engine.backend` naming the engine double, its step time in
`engine.engine_kwargs`, and `ray.runtime_env` with this module's `install_worker` as Ray's
worker_process_setup_hook and the faults in its env_vars, so that every Ray worker of the job installs
the worker's faults before it runs anything.

  {"engine": "engine_double:EngineDouble", "step_s": 0.05, "steps": 1}
      the engine double (tests/engine_double.py) answers instead of vLLM; its rows say so in model_id
  {"kill_core_when": "poison.pdf"}                    (a worker: the engine actor)
      whenever a request for a page whose source_uri contains the text enters the engine, the engine-core
      process is SIGKILLed there and then: a request that kills the engine, every time. It fires where
      the request enters, not where a batch is submitted: a batch waiting for its turn alone in the engine
      must not kill the engine while another page runs alone in it
  {"step_error_once": "/tmp/marker"}                  (a worker: the engine actor)
      the first engine step after the warm-up (the marker file makes it once per job, across actor
      restarts) raises RuntimeError: a transient error inside the loop
  {"render_delay_s": 0.5}                             (a worker: the split stage)
      each page takes this much longer to render
  {"pause_at": "commit_move", "pause_s": 120}         (the driver)
      the commit prints "docintel fault injection: paused at commit_move" just before it moves the
      run's files into place (step 4) and sleeps there, so that a test can kill the driver at that point
"""
from __future__ import annotations

import functools
import json
import os
import runpy
import signal
import sys
import time

VARIABLE = "DOCINTEL_FAULTS"
DOUBLE = "engine_double:EngineDouble"


def faults() -> dict:
    return json.loads(os.environ.get(VARIABLE) or "{}")


# ---- the driver ----------------------------------------------------------------------------------

def job_settings(config: dict) -> list[str]:
    """The CLI settings that carry `config` into the job: the double as engine.backend, the worker faults
    through Ray's worker_process_setup_hook."""
    settings = []
    if config.get("engine"):
        backend = config["engine"] if isinstance(config["engine"], str) else DOUBLE
        options = {k: config[k] for k in ("step_s", "steps") if k in config}
        settings += ["--set", f"engine.backend={backend}", "--set", f"engine.engine_kwargs={json.dumps(options)}"]
    if any(k in config for k in ("kill_core_when", "step_error_once", "render_delay_s")):
        env = {"worker_process_setup_hook": "faults_plugin.install_worker",  # (this file runs as __main__)
               "env_vars": {VARIABLE: json.dumps(config)}}
        settings += ["--set", f"ray.runtime_env={json.dumps(env)}"]
    return settings


def install_driver(config: dict) -> None:
    if config.get("pause_at") == "commit_move":
        from pipeline.store import fileio

        move = fileio.move_files
        paused = []

        @functools.wraps(move)
        def pausing_move(*args, **kwargs):
            if not paused:
                paused.append(True)
                print("docintel fault injection: paused at commit_move", flush=True)
                time.sleep(float(config.get("pause_s", 120)))
            return move(*args, **kwargs)

        fileio.move_files = pausing_move


def main(argv: list[str]) -> None:
    config = faults()
    install_driver(config)
    program, args = argv[0], argv[1:]
    if program == "docintel":
        from pipeline.cli import main as cli

        sys.exit(cli([*args, *job_settings(config)] if args and args[0] in ("run", "eval", "submit") else args))
    sys.argv = [program, *args]
    runpy.run_path(program, run_name="__main__")


# ---- every Ray worker of the job ------------------------------------------------------------------

def install_worker() -> None:
    """Ray's worker_process_setup_hook: the worker's faults, before the worker runs any task."""
    config = faults()
    if config.get("render_delay_s"):
        _slow_rendering(float(config["render_delay_s"]))
    if config.get("kill_core_when"):
        _kill_core_when(config["kill_core_when"])
    if config.get("step_error_once"):
        _step_error_once(config["step_error_once"])


def _slow_rendering(delay: float) -> None:
    from pipeline.ingest import render_guard

    iter_guarded = render_guard.iter_guarded

    @functools.wraps(iter_guarded)
    def slow(*args, **kwargs):
        for page in iter_guarded(*args, **kwargs):
            time.sleep(delay)
            yield page

    render_guard.iter_guarded = slow


def _kill_core_when(needle: str) -> None:
    from pipeline.engine import actor, cores

    loop_class = actor.EngineLoop

    def loop_that_kills(*args, **kwargs):
        pids = [core.pid for core in cores.children_cores("")]  # the actor has just started them

        def entered(key: str) -> None:
            if needle in key:
                print(f"docintel fault injection: killing the engine core {pids} (a request for {needle!r} "
                      "entered it)", flush=True)
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        return loop_class(*args, **kwargs, on_enter=entered)

    actor.EngineLoop = loop_that_kills


def _step_error_once(marker: str) -> None:
    from pipeline.engine.actor import EngineActor

    warm_up = EngineActor._warm_up

    def warm_up_then_fail_once(self) -> None:
        warm_up(self)
        engine = self.llm.llm_engine
        step = engine.step

        def failing_step(*args, **kwargs):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return step(*args, **kwargs)
            os.close(fd)
            engine.step = step
            raise RuntimeError("docintel fault injection: a transient error inside engine.step()")

        engine.step = failing_step

    EngineActor._warm_up = warm_up_then_fail_once


if __name__ == "__main__":
    main(sys.argv[1:])
