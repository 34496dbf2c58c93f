"""How many threads each process of the studio may use, chosen on purpose rather than defaulted.

torch, OpenMP, MKL and numba each start one thread per core by default. On a 2-core machine a
training worker beside the studio, or beside any other busy process, then runs its threads on
cores that are already taken, and a head-mode run went 6x slower than with one thread. Every
process the studio starts calls `configure_threads(role)` first: it counts the cores this
process may use, subtracts what other work is known to need, and sets every library's pool.

The studio passes its own share down: a worker it launches gets `FER_STUDIO_THREADS` in its
environment, so a worker never competes with the GUI that started it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

THREADS_ENV = "FER_STUDIO_THREADS"  # an explicit thread count for this process (the studio sets it)
# Environment variables read by native libraries when they start their pools: set before the
# library loads, so a library imported later still follows the plan.
POOL_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
ROLES = ("worker", "studio", "tool")


@dataclass(frozen=True)
class ThreadPlan:
    role: str
    cores: int  # the cores this process may run on
    threads: int  # compute threads for torch / OpenMP / numba in this process
    reason: str  # how it was chosen, for logs and benchmarks

    def describe(self) -> str:
        return f"{self.threads} compute thread(s) of {self.cores} core(s) ({self.reason})"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_threads(role: str, *, reserved: int = 0) -> ThreadPlan:
    """The thread count for a process of this role. `reserved`: cores other known work of the
    studio needs (the GUI and its thumbnail loader, another run)."""
    if role not in ROLES:
        raise ValueError(f"unknown thread role {role!r}; one of {', '.join(ROLES)}")
    cores = usable_cores()
    explicit = os.environ.get(THREADS_ENV, "").strip()
    if explicit:
        try:
            count = int(explicit)
            if count < 1:
                raise ValueError
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={explicit!r}: expected a whole number of threads, 1 or more") from None
        return ThreadPlan(role, cores, count, f"{THREADS_ENV}={count}")
    if role == "studio":
        # The GUI thread plus a small pool for thumbnails and background reads; compute is left to
        # the worker process.
        return ThreadPlan(role, cores, 1, "the studio leaves compute to its worker")
    count = max(1, cores - max(0, reserved))
    return ThreadPlan(role, cores, count, f"{cores} usable core(s), {reserved} reserved for other work")


def configure_threads(role: str, *, reserved: int = 0) -> ThreadPlan:
    """Choose and apply this process's thread plan: the pool variables for libraries not yet
    loaded, and torch's own pools if torch is loaded already. Call it first in a process."""
    plan = plan_threads(role, reserved=reserved)
    for name in POOL_ENV:
        os.environ[name] = str(plan.threads)
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        apply_to_torch(torch, plan)
    return plan


def apply_to_torch(torch, plan: ThreadPlan) -> None:
    """torch's intra-op pool follows the plan; its inter-op pool is set once per process and only
    before any parallel work, so it is set when still possible and left otherwise."""
    torch.set_num_threads(plan.threads)
    try:
        torch.set_num_interop_threads(max(1, min(2, plan.threads)))
    except RuntimeError:  # already used in this process: it cannot change any more
        pass


def child_environment(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker process that may use `threads` compute threads."""
    env = dict(os.environ if base is None else base)
    env[THREADS_ENV] = str(max(1, int(threads)))
    for name in POOL_ENV:
        env[name] = env[THREADS_ENV]
    return env
