"""Warm compile workers, seen from the tool.

``WorkerPool`` starts N compile workers (``worker.py``) in the interpreter the
user chose, feeds them ``Job``s from a queue (one thread per worker) and yields
``(job, CompileResult)`` as results come in, in completion order: ``run`` for
a list of jobs, ``feed`` for jobs that keep coming while earlier ones compile
(a scan infers each kernel's specs while the kernels before it compile).  A worker
that dies (the server itself, not a compile child, which the worker handles)
is restarted and its job recorded as a crash, so one bad compile never stops a
scan.

Spec checks (``specs/resolve.py`` ``validate``) go through the same pool: a
``Job`` with ``stop_after="frontend"`` runs the frontend only, and
``Settings.target="cuda"`` with the reference venv's python checks on upstream
Triton (``compile/reference.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from tritriage.model import NOT_RUN, STAGES, CompileResult, Inventory, Kernel, Spec, StageResult

# Directory that holds the ``tritriage`` package: the worker's PYTHONPATH, so
# that it runs in an interpreter where tritriage is not installed.
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])

# How long a worker may take to import triton and say it is ready.
STARTUP_TIMEOUT = 120.0
# Beyond the per-compile timeout (and its one retry), how long the tool waits
# for a worker's answer before it declares the worker itself dead.
ANSWER_GRACE = 30.0


@dataclass(frozen=True)
class Settings:
    """What every compile of a scan shares."""

    python: str = sys.executable
    arch: str = "Ascend910B"
    timeout: float = 120.0
    memory_mb: int | None = 8192
    # How the binary stage runs: ``stages.binary_plan()`` of the compile
    # interpreter (mode cann / bishengir / None, the bishengir-compile used).
    binary: Mapping = field(default_factory=dict)
    adapter: str | None = None  # stand-in for triton-adapter-opt (tests)
    retry_crashes: bool = True
    # triton.compile in one piece, stages told apart afterwards: what the worker
    # falls back to when triton-ascend's internals differ (tests force it).
    blackbox: bool = False
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment for the workers
    # The compiler the workers' python holds: "ascend" (triton-ascend), or
    # "cuda" (upstream Triton, the reference: spec checks only).
    target: str = "ascend"
    # Other source trees the checkout imports jit helpers from (vLLM's, for a plugin).
    roots: tuple[str, ...] = ()

    def cache_fields(self) -> dict:
        """The settings that can change a verdict."""
        fields = {"arch": self.arch, "binary": {k: self.binary.get(k) for k in ("mode", "version", "source")},
                  "adapter": self.adapter,
                  "memory_mb": self.memory_mb, "timeout": self.timeout}
        if self.roots:
            fields["roots"] = list(self.roots)
        return fields


@dataclass(frozen=True)
class Job:
    kernel: Kernel
    spec: Spec
    checkout: str
    artifacts_dir: str | None = None
    cache_key: str = ""
    id: int = 0
    # "frontend": a spec check, worded for a verdict (worker.check_job).
    stop_after: str | None = None
    # stage -> (seconds, why): the hang policy's budget per stage
    # (compile/hangs.py), set when the job is sent.
    stage_budgets: Mapping | None = None

    def wire(self, settings: Settings) -> dict:
        return {
            "id": self.id,
            "kernel": self.kernel.id,
            "checkout": self.checkout,
            "file": self.kernel.file,
            "qualname": self.kernel.qualname,
            "spec": self.spec.to_dict(),
            "arch": settings.arch,
            "timeout": settings.timeout,
            "memory_mb": settings.memory_mb,
            "binary": dict(settings.binary),
            "adapter": settings.adapter,
            "retry_crashes": settings.retry_crashes,
            "blackbox": settings.blackbox,
            "artifacts_dir": self.artifacts_dir,
            "stop_after": self.stop_after,
            "target": settings.target,
            "roots": list(settings.roots),
            "stage_budgets": dict(self.stage_budgets or {}),
        }


# How many fresh workers a job gets after its worker died under it.
WORKER_RETRIES = 3


class WorkerDied(Exception):
    pass


class WorkerProcess:
    """One fork server, spoken to over its stdin/stdout."""

    def __init__(self, settings: Settings):
        self.settings = settings
        env = dict(os.environ)
        env.update(settings.env)
        env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.jobs_dir = tempfile.mkdtemp(prefix="tritriage-worker-")
        env["TRITRIAGE_JOBS_DIR"] = self.jobs_dir
        # The worker's stderr is a file, not a pipe nobody reads: a chatty
        # compiler would otherwise fill the pipe and stall the worker.
        self.stderr = tempfile.TemporaryFile(prefix="tritriage-worker-")
        self.proc = subprocess.Popen(
            [settings.python, "-u", "-m", "tritriage.sandbox.worker", "--target", settings.target],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            env=env, bufsize=0,
            start_new_session=True,  # Ctrl-C in the terminal is the tool's to handle
        )
        self.info: dict = {}
        self.error: str | None = None
        self._buf = bytearray()

    def wait_ready(self) -> dict:
        msg = self._read(STARTUP_TIMEOUT)
        if msg.get("op") != "ready":
            raise WorkerDied(f"worker sent {msg!r} instead of ready")
        self.info = msg.get("info") or {}
        self.error = msg.get("error")
        return self.info

    def compile(self, job: dict) -> dict:
        self._send({"op": "compile", "job": job})
        # Up to two attempts (the crash retry) plus slack.
        limit = 2 * float(job.get("timeout") or 120) + ANSWER_GRACE
        while True:
            msg = self._read(limit)
            if msg.get("op") == "result":
                return msg["result"]
            if msg.get("op") == "error":
                raise WorkerDied(msg.get("error", "worker error"))

    def _send(self, msg: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(msg, default=str) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WorkerDied(f"worker is gone ({e}){self._stderr_tail()}") from None

    def _read(self, timeout: float) -> dict:
        """The worker's next message.  Reads the pipe's fd directly: select on a
        buffered file would miss a line already sitting in its buffer."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = bytes(self._buf[:nl]), self._buf[nl + 1:]
                try:
                    return json.loads(line)
                except ValueError:
                    continue  # not ours; the protocol channel should be clean, but never trust it
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerDied(f"worker did not answer within {timeout:g} s")
            if not select.select([fd], [], [], left)[0]:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                raise WorkerDied(f"worker exited with status {self.proc.returncode}{self._stderr_tail()}")
            self._buf += chunk

    def _stderr_tail(self) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 4000))
            tail = self.stderr.read().decode("utf-8", errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return f":\n{tail}" if tail else ""

    def close(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            if not kill:
                try:
                    self._send({"op": "exit"})
                    self.proc.stdin.close()
                    self.proc.wait(timeout=5)
                except (WorkerDied, OSError, subprocess.TimeoutExpired, ValueError):
                    pass
            if self.proc.poll() is None:
                # SIGTERM: the worker kills its compile child's group, then exits.
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, ValueError, AttributeError):
                pass
        self.stderr.close()
        # What a killed worker could not clean up (its compile's work dir).
        shutil.rmtree(self.jobs_dir, ignore_errors=True)


def start_worker(settings: Settings) -> WorkerProcess:
    w = WorkerProcess(settings)
    try:
        w.wait_ready()
    except WorkerDied:
        w.close(kill=True)
        raise
    return w


def crash_result(job: Job, why: str) -> CompileResult:
    """The record of a job whose worker died under it."""
    return CompileResult(
        kernel=job.kernel.id, spec=job.spec.name, outcome="crash", error=why,
        stages=tuple(StageResult(s, NOT_RUN, "worker died") for s in STAGES),
    )


_DONE = object()


class WorkerPool:
    """N warm workers; ``run(jobs)`` yields ``(job, CompileResult)`` as they finish."""

    def __init__(self, settings: Settings, size: int | None = None):
        self.settings = settings
        self.size = max(1, size or os.cpu_count() or 1)
        self._workers: list[WorkerProcess] = []
        self._idle: list[WorkerProcess] = []  # warm, between two run() calls
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.restarts = 0  # workers lost (died or stopped answering) and replaced
        self.retried = 0  # jobs sent again to a fresh worker after theirs was lost
        self.on_start = None  # called (from a feeding thread) with each job as it is sent
        # job -> its stage budgets, asked when the job is sent, so that a
        # budget follows what the run has learnt so far (compile/hangs.py).
        self.budgets = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close(kill=exc[0] is not None)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, CompileResult]]:
        """Compile ``jobs`` in the order given; results in completion order."""
        jobs = list(jobs)
        if not jobs:
            return
        feed = self.feed()
        try:
            for job in jobs:
                feed.put(job)
            feed.close()
            yield from feed.results()
        finally:
            feed.stop()

    def feed(self) -> "Feed":
        """A queue that takes jobs while earlier ones compile (a scan submits
        each kernel's pairs as soon as their specs are inferred)."""
        return Feed(self)

    def _feed(self, todo: queue.PriorityQueue, done: queue.Queue) -> None:
        worker: WorkerProcess | None = None
        try:
            while not self._stop.is_set():
                job = todo.get()[-1]
                if job is None:
                    break
                if worker is None:
                    try:
                        worker = self._start()
                    except (WorkerDied, OSError) as e:
                        done.put(WorkerStartError(f"cannot start a compile worker with {self.settings.python}: {e}"))
                        return
                if self.budgets is not None:
                    job = dataclasses.replace(job, stage_budgets=self.budgets(job))
                if self.on_start is not None:
                    self.on_start(job)
                result = None
                # A compile that crashes kills only its own child (the worker
                # retries it once itself); a worker that dies under a job was
                # killed from outside (the OOM killer, a user), which says
                # nothing of the kernel: the job goes to a fresh worker, up to
                # WORKER_RETRIES times, and only then is a crash recorded.
                for attempt in range(1 + WORKER_RETRIES):
                    if worker is None:
                        try:
                            worker = self._start()
                        except (WorkerDied, OSError) as e:
                            result = crash_result(job, f"compile worker died: cannot restart it: {e}")
                            break
                    if attempt:
                        with self._lock:
                            self.retried += 1
                    try:
                        result = CompileResult.from_dict(worker.compile(job.wire(self.settings)))
                        break
                    except WorkerDied as e:
                        worker.close(kill=True)
                        self._forget(worker)
                        worker = None
                        self.restarts += 1
                        result = crash_result(job, f"compile worker died{' again' if attempt else ''}: {e}")
                done.put((job, result))
        except BaseException as e:  # noqa: BLE001 - surface in the main thread
            done.put(e)
        finally:
            if worker is not None:
                with self._lock:
                    self._idle.append(worker)
            done.put(_DONE)

    def _start(self) -> WorkerProcess:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        w = start_worker(self.settings)
        with self._lock:
            if not self._stop.is_set():
                self._workers.append(w)
                return w
        # The pool closed while this worker was starting: nobody would close it.
        w.close(kill=True)
        raise WorkerDied("the pool is closed")

    def warm_up(self) -> None:
        """Start every worker now, in parallel (benchmarks; otherwise lazy)."""
        with self._lock:
            missing = self.size - len(self._workers)
        started: list = []
        threads = [threading.Thread(target=lambda: started.append(start_worker(self.settings)))
                   for _ in range(max(0, missing))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with self._lock:
            self._workers.extend(started)
            self._idle.extend(started)

    def _forget(self, w: WorkerProcess) -> None:
        with self._lock:
            if w in self._workers:
                self._workers.remove(w)
            if w in self._idle:
                self._idle.remove(w)

    def close(self, kill: bool = False) -> None:
        self._stop.set()
        with self._lock:
            workers, self._workers, self._idle = self._workers, [], []
        for w in workers:
            w.close(kill=kill)


# Seconds a thread holding the GIL keeps it while a feeding thread waits.
SWITCH_INTERVAL = 0.0005

# Orders the queue: a job's priority, then the order it came in; the end
# marker sorts after every job, so workers finish what was submitted first.
_END = (float("inf"),)


class Feed:
    """Jobs go in with ``put`` while earlier ones compile; ``ready`` takes the
    results finished so far without waiting, ``results`` (after ``close``)
    waits for the rest.  Among queued jobs, the lowest ``priority`` goes first.
    One thread per worker; a worker starts with its thread's first job, so a
    scan whose pairs all come from the cache starts none."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool
        self.todo: queue.PriorityQueue = queue.PriorityQueue()
        self.done: queue.Queue = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.seq = 0
        self.interval: float | None = None  # the switch interval to give back
        self.pending = 0  # submitted, result not yet handed out
        self.ended = 0  # threads gone

    def put(self, job: Job, priority: tuple = ()) -> None:
        if not self.threads:
            # The feeding threads only wait on pipes, but each needs the GIL
            # to hand an idle worker its next job while the main thread infers
            # specs: at Python's default 5 ms switch interval, each handoff
            # could leave a worker idle that long.
            self.interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self.interval, SWITCH_INTERVAL))
            self.pool._stop.clear()
            self.threads = [threading.Thread(target=self.pool._feed, args=(self.todo, self.done), daemon=True)
                            for _ in range(self.pool.size)]
            for t in self.threads:
                t.start()
        self.seq += 1
        self.pending += 1
        self.todo.put((tuple(priority), self.seq, job))

    def close(self) -> None:
        """No more jobs: each thread ends once the queue is empty."""
        for _ in self.threads:
            self.seq += 1
            self.todo.put((_END, self.seq, None))

    def ready(self) -> list[tuple[Job, CompileResult]]:
        out = []
        while self.pending:
            try:
                item = self.done.get_nowait()
            except queue.Empty:
                break
            self._take(item, out)
        return out

    def results(self) -> Iterator[tuple[Job, CompileResult]]:
        while self.pending and self.ended < len(self.threads):
            out: list = []
            self._take(self.done.get(), out)
            yield from out

    def _take(self, item, out: list) -> None:
        if item is _DONE:
            self.ended += 1
            return
        if isinstance(item, BaseException):
            raise item
        self.pending -= 1
        out.append(item)

    def stop(self) -> None:
        """Whatever is still queued is dropped; threads end after their current job."""
        if self.interval is not None:
            sys.setswitchinterval(self.interval)
            self.interval = None
        self.pool._stop.set()
        while True:
            try:
                self.todo.get_nowait()
            except queue.Empty:
                break
        for _ in self.threads:
            self.seq += 1
            self.todo.put((_END, self.seq, None))


class WorkerStartError(Exception):
    pass
