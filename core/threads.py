"""How many threads each process of the studio may use, chosen on purpose rather than defaulted.

torch, OpenMP, MKL, OpenBLAS, OpenCV and numba each start one thread per core by default, and
OpenMP's threads spin while they wait. On a 2-core machine a training worker beside the studio,
or beside any other busy process, then runs its threads on cores that are already taken: the
demo's head-mode run went 5x slower than with one thread (docs/benchmarks.md, "Thread
discipline"). Every process the studio starts calls `configure_threads(role)` first: it counts
the cores this process may use, subtracts what other work is known to need and what other
processes are busy with right now, and sets every library's pool.

How a worker learns about other work: the studio knows what it runs (its GUI, a training, a
feature job) and passes each worker its share in FER_STUDIO_THREADS (`studio_worker_threads`,
`child_environment`); a worker started by hand measures how busy the machine's cores are over a
moment (`busy_cores`) and leaves those to whoever uses them.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

THREADS_ENV = "FER_STUDIO_THREADS"  # an explicit thread count for this process (the studio sets it)
# Environment variables read by native libraries when they start their pools: set before the
# library loads, so a library imported later still follows the plan.
POOL_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
# How OpenMP threads wait between parallel regions. Spinning without end is ruinous beside a busy
# process (the demo's 200 steps: 2 threads at OpenMP's defaults 88 s, 2 passive 13 s, 1 thread
# 11 s), sleeping at once is slow on free cores (alone: passive 9.9 s, a short spin 7.4 s, 1 thread
# 11.2 s). One thread has no team to wait for; a team spins briefly, then sleeps: beside a busy
# process that appears later it took 19.5 s (docs/benchmarks.md, "Thread discipline").
SINGLE_THREAD_WAIT_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
TEAM_WAIT_ENV = {"GOMP_SPINCOUNT": "10000"}
ROLES = ("worker", "studio", "tool")
BUSY_SAMPLE_S = 0.2  # how long the machine's load is watched before choosing
BUSY_ROUNDING = 0.3  # another process counts for a core once it keeps this much of one busy
GUI_CORES = 1  # what the studio keeps for its GUI and thumbnails when it runs workers
MAX_THUMBNAIL_THREADS = 4
# The studio's warm worker runs this much below normal priority: a key press during a refit gets a
# core first (the studio's key-press latency, docs/benchmarks.md "Studio responsiveness"), while
# beside another busy process the refit still gets a fair part of a core (nice 10 would get a tenth).
WARM_WORKER_NICENESS = 5

_configured: ThreadPlan | None = None


@dataclass(frozen=True)
class ThreadPlan:
    role: str
    cores: int  # the cores this process may run on
    threads: int  # compute threads for torch / OpenMP / numba / ONNX Runtime in this process
    reason: str  # how it was chosen, for logs and benchmarks

    def describe(self) -> str:
        return f"{self.threads} compute thread(s) of {self.cores} core(s) ({self.reason})"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def busy_cores(sample_s: float = BUSY_SAMPLE_S) -> float:
    """How many of the machine's cores other processes keep busy, watched for `sample_s` while
    this process sleeps; 0.0 where it cannot be read."""
    before, own_before, clock_before = _cpu_times(), _own_cpu_seconds(), time.monotonic()
    if before is None:
        return 0.0
    time.sleep(sample_s)
    after, own_after, clock_after = _cpu_times(), _own_cpu_seconds(), time.monotonic()
    if after is None or after[1] <= before[1]:
        return 0.0
    share = (after[0] - before[0]) / (after[1] - before[1])
    # This process's own threads (a library's helper threads still busy after an import) are not
    # other work: a 0.3-core blip of them once made an idle machine look busy.
    own = (own_after - own_before) / max(clock_after - clock_before, 1e-6)
    return max(0.0, share * (os.cpu_count() or 1) - own)


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _explicit_threads() -> int | None:
    explicit = os.environ.get(THREADS_ENV, "").strip()
    if not explicit:
        return None
    try:
        count = int(explicit)
        if count < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"{THREADS_ENV}={explicit!r}: expected a whole number of threads, 1 or more") from None
    return count


def plan_threads(role: str, *, reserved: int = 0, busy: float | None = None) -> ThreadPlan:
    """The thread count for a process of this role. `reserved`: cores other known work of the
    studio needs (the GUI and its thumbnail loader, another run). `busy`: cores other processes
    keep busy (measured for a worker when not given; a tool does not wait to measure)."""
    if role not in ROLES:
        raise ValueError(f"unknown thread role {role!r}; one of {', '.join(ROLES)}")
    cores = usable_cores()
    explicit = _explicit_threads()
    if explicit is not None:
        return ThreadPlan(role, cores, explicit, f"{THREADS_ENV}={explicit}")
    if role == "studio":
        # The GUI thread plus a small pool for thumbnails and background reads; compute is left to
        # the worker process.
        return ThreadPlan(role, cores, 1, "the studio leaves compute to its worker")
    if busy is None:
        busy = busy_cores() if role == "worker" and cores > 1 else 0.0
    taken = int(busy + 1 - BUSY_ROUNDING) if busy > 0 else 0
    count = max(1, cores - max(0, reserved) - taken)
    reason = f"{cores} usable core(s), {reserved} reserved for other work"
    if taken:
        reason += f", {taken} busy with other processes ({busy:.1f} cores)"
    return ThreadPlan(role, cores, count, reason)


def configure_threads(role: str, *, reserved: int = 0, busy: float | None = None) -> ThreadPlan:
    """Choose and apply this process's thread plan: the pool variables for libraries not yet
    loaded, and the pools of torch, OpenCV and BLAS where they are loaded already. Call it first
    in a process (numpy and OpenCV are loaded by the command line parser already: their pools
    are narrowed where they stand)."""
    global _configured
    plan = plan_threads(role, reserved=reserved, busy=busy)
    for name in POOL_ENV:
        os.environ[name] = str(plan.threads)
    for name, value in wait_environment(plan.threads).items():
        os.environ.setdefault(name, value)
    apply_to_loaded_libraries(plan.threads)
    _configured = plan
    return plan


def compute_threads() -> int:
    """This process's compute threads: its configured plan, else what a tool would get."""
    return _configured.threads if _configured is not None else plan_threads("tool").threads


def apply_to_loaded_libraries(threads: int) -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        apply_to_torch(torch, threads)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(threads)
    if "numpy" in sys.modules:
        try:  # numpy's BLAS started its pool when numpy loaded; threadpoolctl narrows it
            from threadpoolctl import threadpool_limits

            threadpool_limits(threads)
        except Exception:  # noqa: BLE001 - threadpoolctl is scikit-learn's; without it BLAS stays as is
            pass
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except Exception:  # noqa: BLE001 - numba's threading layer may not be started yet
            pass


def apply_to_torch(torch, threads: int) -> None:
    """torch's intra-op pool follows the plan; its inter-op pool is set once per process and only
    before any parallel work, so it is set when still possible and left otherwise."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(max(1, min(2, threads)))
    except RuntimeError:  # already used in this process: it cannot change any more
        pass


def studio_worker_threads(running_jobs: int, cores: int | None = None) -> int:
    """Compute threads for each of `running_jobs` worker processes the studio runs at once (a
    training, a feature job): the cores less one for the GUI, shared out, at least one each."""
    cores = usable_cores() if cores is None else cores
    return max(1, (cores - GUI_CORES) // max(1, running_jobs))


def thumbnail_threads(cores: int | None = None) -> int:
    """The studio's thumbnail pool: decoding small files, beside a worker that has the rest."""
    cores = usable_cores() if cores is None else cores
    return max(1, min(MAX_THUMBNAIL_THREADS, cores - GUI_CORES))


def child_environment(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker process that may use `threads` compute threads."""
    env = dict(os.environ if base is None else base)
    env[THREADS_ENV] = str(max(1, int(threads)))
    for name in POOL_ENV:
        env[name] = env[THREADS_ENV]
    for name, value in wait_environment(int(env[THREADS_ENV])).items():
        env.setdefault(name, value)
    return env


def wait_environment(threads: int) -> dict[str, str]:
    """OpenMP's waiting for a process of `threads` compute threads (see TEAM_WAIT_ENV)."""
    return dict(SINGLE_THREAD_WAIT_ENV if threads <= 1 else TEAM_WAIT_ENV)
