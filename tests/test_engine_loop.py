"""EngineLoop's fault handling with an engine that fails on cue (the real engine's faults, a killed or
stopped EngineCore process, are in test_faults_engine.py): every failure of the engine is reported
once, with the pages in flight, and is never an answer; a stuck step is caught by the watchdog."""
import threading
import time

import pytest

from pipeline.engine.loop import EngineLoop, EngineStopped


class Output:
    def __init__(self, request_id):
        self.request_id, self.finished = request_id, True


class FakeEngine:
    """enqueue_chat / step / has_unfinished_requests like vllm.LLM + LLMEngine. A step finishes the
    oldest request; `fail` makes the next step raise; `hang` makes it block."""

    def __init__(self, steps_per_request=3):
        self.llm_engine = self
        self.unfinished: list[list] = []
        self.counter = 0
        self.fail = threading.Event()
        self.hang = threading.Event()
        self.steps_per_request = steps_per_request
        self.most_in_flight = 0

    def enqueue_chat(self, messages, params, use_tqdm=False):
        self.counter += 1
        self.unfinished.append([str(self.counter), self.steps_per_request])
        self.most_in_flight = max(self.most_in_flight, len(self.unfinished))
        return [f"{self.counter}-abcdefgh"]

    def has_unfinished_requests(self):
        return bool(self.unfinished)

    def step(self):
        if self.fail.is_set():
            raise RuntimeError("a transient CUDA error")
        while self.hang.is_set():
            time.sleep(0.05)
        time.sleep(0.005)
        head = self.unfinished[0]
        head[1] -= 1
        if head[1] == 0:
            self.unfinished.pop(0)
            return [Output(head[0])]
        return []

    def abort_request(self, ids, internal=False):
        pass


def _failures():
    seen = []
    return seen, lambda reason, in_flight, exclusive: seen.append((reason, sorted(in_flight), exclusive))


def test_an_exception_from_step_is_the_engines_failure_reported_with_the_pages_in_flight():
    engine, (seen, on_failure) = FakeEngine(steps_per_request=10**6), _failures()
    loop = EngineLoop(engine, on_failure=on_failure)
    result = {}
    caller = threading.Thread(target=lambda: result.setdefault("a", _raises(loop, [[{}], [{}]], ["p#0", "p#1"])))
    caller.start()
    while engine.counter < 2:
        time.sleep(0.01)
    engine.fail.set()
    caller.join(timeout=10)
    assert isinstance(result["a"], EngineStopped) and "transient CUDA error" in str(result["a"])  # not an answer
    assert seen == [("RuntimeError: a transient CUDA error", ["p#0", "p#1"], [])]
    with pytest.raises(EngineStopped):
        loop.submit([[{}]], [None])


def _raises(loop, messages, keys, exclusive=False):
    try:
        return loop.submit(messages, [None] * len(messages), keys, exclusive)
    except EngineStopped as exc:
        return exc


def test_a_step_that_does_not_return_is_caught_by_the_watchdog():
    engine, (seen, on_failure) = FakeEngine(), _failures()
    engine.hang.set()
    loop = EngineLoop(engine, step_timeout_s=0.5, on_failure=on_failure)
    began = time.monotonic()
    assert isinstance(_raises(loop, [[{}]], ["p#0"]), EngineStopped)
    assert time.monotonic() - began < 3 and "step_timeout_s=0.5" in seen[0][0] and seen[0][1] == ["p#0"]
    engine.hang.clear()


def test_a_dead_engine_core_is_caught_by_the_watchdog():
    engine, (seen, on_failure) = FakeEngine(steps_per_request=10**6), _failures()
    gone = threading.Event()
    loop = EngineLoop(engine, core_alive=lambda: "the engine core process 42 died" if gone.is_set() else None,
                      on_failure=on_failure)
    threading.Timer(0.3, gone.set).start()
    assert isinstance(_raises(loop, [[{}]], ["p#0"]), EngineStopped)
    assert seen[0][0] == "the engine core process 42 died"


def test_an_exclusive_job_runs_alone_and_the_others_wait_for_it():
    engine = FakeEngine(steps_per_request=5)
    loop = EngineLoop(engine)
    threads = [threading.Thread(target=loop.submit, args=([[{}]] * 4, [None] * 4, [f"a#{i}" for i in range(4)]))]
    threads[0].start()
    while engine.counter < 4:
        time.sleep(0.005)
    during = []

    def alone():
        results, _ = loop.submit([[{}]], [None], ["suspect#0"], exclusive=True)
        during.append(results)
    threads.append(threading.Thread(target=alone))
    threads[1].start()
    time.sleep(0.02)
    threads.append(threading.Thread(target=loop.submit, args=([[{}]] * 3, [None] * 3, [f"b#{i}" for i in range(3)])))
    threads[2].start()
    order = []
    while any(t.is_alive() for t in threads):
        order.append(len(engine.unfinished))
        time.sleep(0.001)
    assert during and engine.counter == 8
    # the suspect (request 5) entered an empty engine and nothing joined it until it was done
    assert engine.most_in_flight == 4


def test_the_enter_hook_fires_as_a_request_enters_and_a_waiting_suspect_enters_only_an_empty_engine():
    """The poison fault (kill_core_when) fires through this hook: a suspect that waits for its turn
    alone must not enter, and so must not break the engine, while another suspect runs alone.
    Firing it where a batch is submitted convicted a healthy page that happened to run alone then."""
    engine, (seen, on_failure) = FakeEngine(steps_per_request=40), _failures()
    entered = []

    def on_enter(key):
        entered.append((key, len(engine.unfinished)))
        if key.startswith("poison"):
            engine.fail.set()  # the page breaks the engine when it is in it
    loop = EngineLoop(engine, on_failure=on_failure, on_enter=on_enter)
    results = {}
    healthy = threading.Thread(target=lambda: results.setdefault("healthy", _raises(loop, [[{}]], ["healthy#0"],
                                                                                  exclusive=True)))
    healthy.start()
    while engine.counter < 1:
        time.sleep(0.001)
    poison = threading.Thread(target=lambda: results.setdefault("poison", _raises(loop, [[{}]], ["poison#0"],
                                                                                exclusive=True)))
    poison.start()
    healthy.join(timeout=10)
    poison.join(timeout=10)
    assert entered == [("healthy#0", 1), ("poison#0", 1)]  # each alone in the engine when it entered
    assert isinstance(results["healthy"], tuple) and isinstance(results["poison"], EngineStopped)
    assert seen == [("RuntimeError: a transient CUDA error", ["poison#0"], ["poison#0"])]


def test_the_queue_depth_is_reported_while_requests_wait_and_run(monkeypatch):
    """The docintel_engine_queue_depth gauge: the loop tells it, every watchdog interval, how many
    requests are in or waiting for the engine (the actor hands it the job's metric)."""
    from pipeline.engine import loop as engine_loop

    monkeypatch.setattr(engine_loop, "WATCHDOG_INTERVAL_S", 0.05)
    depths = []
    engine = FakeEngine(steps_per_request=40)  # 5 ms a step: each request ~0.2 s in the engine
    loop = EngineLoop(engine, report_depth=depths.append)
    loop.submit([[{"role": "user", "content": "x"}]] * 6, [None] * 6)
    time.sleep(0.2)
    loop.stop()
    assert max(depths) >= 5 and depths[-1] == 0, depths  # a queue, then drained


def test_an_empty_submission_returns_at_once():
    loop = EngineLoop(FakeEngine())
    assert loop.submit([], []) == ([], [])
    loop.stop()


def test_a_slow_step_while_the_core_computes_is_not_a_failure_until_the_hard_limit():
    from pipeline.engine import loop as engine_loop

    engine, (seen, on_failure) = FakeEngine(), _failures()
    engine.hang.set()
    cpu = {"s": 0.0}

    def busy_core():  # the core keeps computing: its CPU time grows
        cpu["s"] += 0.5
        return cpu["s"]

    loop = EngineLoop(engine, step_timeout_s=0.5, core_cpu_s=busy_core, on_failure=on_failure)
    began = time.monotonic()
    result = {}
    caller = threading.Thread(target=lambda: result.setdefault("a", _raises(loop, [[{}]], ["p#0"])))
    caller.start()
    time.sleep(1.6)  # well past step_timeout_s (0.5), before the hard limit (2.5)
    assert seen == []
    caller.join(timeout=10)
    took = time.monotonic() - began
    assert isinstance(result["a"], EngineStopped)
    assert engine_loop.STEP_HARD_LIMIT * 0.5 <= took < engine_loop.STEP_HARD_LIMIT * 0.5 + 3
    assert "although the engine core is busy" in seen[0][0]
    engine.hang.clear()


def test_a_step_whose_core_stops_computing_fails_at_the_step_timeout():
    engine, (seen, on_failure) = FakeEngine(), _failures()
    engine.hang.set()
    loop = EngineLoop(engine, step_timeout_s=0.5, core_cpu_s=lambda: 7.0, on_failure=on_failure)  # SIGSTOPped
    began = time.monotonic()
    assert isinstance(_raises(loop, [[{}]], ["p#0"]), EngineStopped)
    assert time.monotonic() - began < 3 and "did no work meanwhile" in seen[0][0]
    engine.hang.clear()


def test_the_engine_steps_while_a_large_submission_is_still_being_added():
    """Adding a request preprocesses its image (slow, one thread): the loop steps the engine on the
    requests it already has instead of adding hundreds first (the GPU would sit idle meanwhile)."""
    from pipeline.engine import loop as engine_loop

    class SlowAdds(FakeEngine):
        def __init__(self):
            super().__init__(steps_per_request=1)
            self.steps_before_last_add = None
            self.stepped = 0

        def enqueue_chat(self, messages, params, use_tqdm=False):
            time.sleep(0.05)
            return super().enqueue_chat(messages, params, use_tqdm)

        def step(self):
            self.stepped += 1
            return super().step()

    engine = SlowAdds()
    loop = EngineLoop(engine)
    n = int(3 * engine_loop.ADD_BUDGET_S / 0.05)  # three budgets' worth of adds
    results, _ = loop.submit([[{}]] * n, [None] * n)
    assert len(results) == n and all(isinstance(r, Output) for r in results)
    assert engine.most_in_flight < n  # answers came back before the last request was added
    loop.stop()


class RenderingEngine(FakeEngine):
    """vllm.LLM's two halves of enqueue_chat: `_preprocess_chat_one` renders a conversation (the page
    image's decoding and resizing), `_add_request` adds it. `render` is called with each conversation
    in the rendering thread."""

    def __init__(self, render):
        super().__init__(steps_per_request=1)
        self.render = render
        self.render_threads: set[str] = set()

    def enqueue_chat(self, messages, params, use_tqdm=False):
        raise AssertionError("the loop renders in the callers' threads, never through enqueue_chat")

    def _preprocess_chat_one(self, conversation):
        self.render_threads.add(threading.current_thread().name)
        self.render(conversation)
        return conversation

    def _add_request(self, prompt, params):
        return super().enqueue_chat([prompt], [params])[0]


def test_requests_are_rendered_in_the_callers_threads_while_the_engine_steps():
    """The engine answers request k-1 while request k is still being rendered: rendering request k
    waits for that answer, so rendering on the engine thread (as vLLM's enqueue_chat would) could
    never finish."""
    answered = [threading.Event() for _ in range(6)]

    def render(conversation):
        k = conversation[0]["k"]
        if k and not answered[k - 1].wait(timeout=20):
            raise TimeoutError(f"request {k - 1} was not answered while request {k} was being rendered")

    class Engine(RenderingEngine):
        def step(self):
            done = super().step()
            for output in done:
                answered[int(output.request_id) - 1].set()
            return done

    engine = Engine(render)
    loop = EngineLoop(engine)
    results, _ = loop.submit([[{"k": k}] for k in range(6)], [None] * 6)
    loop.stop()
    assert all(isinstance(r, Output) for r in results), results
    assert engine.render_threads == {threading.current_thread().name}


def test_two_batches_render_at_the_same_time_and_a_page_that_cannot_be_rendered_fails_alone():
    """The actor's batch threads render in parallel (each render waits for the other batch's render
    to be under way at the same time), and a render error is that request's answer only."""
    both = threading.Barrier(2, timeout=20)

    def render(conversation):
        if conversation[0].get("broken"):
            raise ValueError("cannot identify image file")
        both.wait()

    engine = RenderingEngine(render)
    loop = EngineLoop(engine)
    out = {}

    def batch(name, conversations):
        out[name] = loop.submit(conversations, [None] * len(conversations))[0]

    batches = {"a": [[{}], [{}]], "b": [[{}], [{"broken": True}], [{}]]}  # two renders each meet
    threads = [threading.Thread(target=batch, args=item, name=item[0]) for item in batches.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    loop.stop()
    assert all(isinstance(r, Output) for r in out["a"]), out["a"]
    assert isinstance(out["b"][1], ValueError) and isinstance(out["b"][0], Output) and isinstance(out["b"][2], Output)
    assert engine.render_threads == {"a", "b"}


def test_an_engine_without_the_two_halves_renders_on_the_engine_thread_and_warns_once(caplog, monkeypatch):
    """A vLLM that dropped `_preprocess_chat_one` (pipeline/core/compat.py) still answers, through
    enqueue_chat on the engine thread, and the actor's log says so once; vLLM's LLM warns of nothing."""
    from pipeline.core import compat

    class WholeEngine(FakeEngine):  # enqueue_chat only, as a vLLM without the two halves
        def __init__(self):
            super().__init__(steps_per_request=1)
            self.threads: set[str] = set()

        def enqueue_chat(self, messages, params, use_tqdm=False):
            self.threads.add(threading.current_thread().name)
            return super().enqueue_chat(messages, params, use_tqdm)

    monkeypatch.setattr(compat, "_warned", set())
    caplog.set_level("WARNING", logger=compat.__name__)
    EngineLoop(RenderingEngine(lambda conversation: None)).stop()
    assert not caplog.records, caplog.records
    for _ in range(2):  # two engines, one warning
        engine = WholeEngine()
        loop = EngineLoop(engine)
        results, _ = loop.submit([[{}], [{}]], [None, None])
        loop.stop()
        assert all(isinstance(r, Output) for r in results) and engine.threads == {"docintel-engine-loop"}
    warned = [r.getMessage() for r in caplog.records if "_preprocess_chat_one" in r.getMessage()]
    assert warned == ["vLLM LLM._preprocess_chat_one is missing: requests are rendered on the engine thread, "
                      "which capped a GPU at ~20 requests/s (pipeline/engine/loop.py)"]


class SlottedEngine(RenderingEngine):
    """vLLM's scheduler in small: `slots` sequences run at once (max_num_seqs), the others wait in
    arrival order; every step advances each running sequence by one token."""

    def __init__(self, render, slots, tokens):
        super().__init__(render)
        self.slots, self.tokens = slots, tokens
        self.entered: dict[str, str] = {}  # request id -> the conversation's job name
        self.most_held = 0

    def _add_request(self, prompt, params):
        self.counter += 1
        self.unfinished.append([str(self.counter), self.tokens])
        self.entered[str(self.counter)] = prompt[0]["job"]
        self.most_held = max(self.most_held, len(self.unfinished))
        return f"{self.counter}-abcdefgh"

    def step(self):
        time.sleep(0.002)
        done = []
        for request in self.unfinished[:self.slots]:
            request[1] -= 1
            if request[1] == 0:
                done.append(request)
        self.unfinished = [r for r in self.unfinished if r[1] > 0]
        return [Output(r[0]) for r in done]


def test_batches_enter_the_engine_oldest_first_so_they_finish_one_after_another():
    """Four batches render side by side (their requests become ready interleaved). With an admission
    limit the engine holds at most that many, and the rest enter oldest batch first: the first batch
    is answered while the last batch still has requests that never entered the engine, so the engine
    has the next batch's prompts while the first one's caller fetches more work. Without the limit all
    of them entered interleaved at once and the four batches finished together."""
    def render(conversation):
        time.sleep(0.001)

    def run(limit):
        engine = SlottedEngine(render, slots=4, tokens=6)
        loop = EngineLoop(engine, admit_limit=limit)
        answered, start = [], threading.Barrier(4, timeout=20)

        def batch(name):
            start.wait()
            loop.submit([[{"job": name}] for _ in range(8)], [None] * 8)
            entered = list(engine.entered.values())
            answered.append((name, {job: entered.count(job) for job in "abcd"}))

        threads = [threading.Thread(target=batch, args=(name,), name=name) for name in "abcd"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        loop.stop()
        return answered, engine

    answered, engine = run(limit=5)
    assert engine.most_held <= 5 and len(engine.entered) == 32
    first, entered_then = answered[0]
    assert min(entered_then.values()) < 8, f"every request had entered when batch {first} was answered: {answered}"

    answered, engine = run(limit=None)  # the shape this replaces: everything enters as soon as it is rendered
    assert engine.most_held > 5
    assert min(answered[0][1].values()) == 8, answered
