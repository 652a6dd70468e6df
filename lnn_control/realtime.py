"""
Process settings for a steady control loop: real-time scheduling, CPU affinity, quiet gc.

ROS-free; ``lnn_control.ros.common.run_node`` applies them once at start. Each setting
is optional and refused with one clear message (never an exception) where the OS does
not permit it: SCHED_FIFO needs CAP_SYS_NICE or an RLIMIT_RTPRIO (a container usually
has neither), affinity needs the CPU to be in the process's allowed set.
"""
from __future__ import annotations

import gc
import os
import time
from typing import Callable


def apply_priority(priority: int) -> tuple[bool, str]:
    """
    Run the calling thread under SCHED_FIFO at ``priority`` (1-99); 0 leaves it as is.

    Only the calling thread (the one that spins the executor and runs the ticks) is
    raised: the middleware's threads keep their normal policy. Returns (applied, message).
    """
    if not priority:
        return False, ''
    if not hasattr(os, 'sched_setscheduler'):
        return False, (f'realtime.priority {priority} refused: this OS has no '
                       'sched_setscheduler; running with normal scheduling')
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
    except (OSError, ValueError) as e:     # EPERM without CAP_SYS_NICE / RLIMIT_RTPRIO
        return False, (f'realtime.priority {priority} refused by the OS ({e}); running '
                       'with normal scheduling (needs CAP_SYS_NICE or an rtprio limit)')
    return True, f'control thread runs under SCHED_FIFO priority {priority}'


def apply_affinity(cpu: int) -> tuple[bool, str]:
    """
    Pin every thread of this process to ``cpu``; a negative value leaves them as they are.

    All threads (the executor's and the middleware's, listed in /proc/self/task), since
    Linux affinity is per thread and threads started later inherit the caller's.
    Returns (applied, message).
    """
    if cpu < 0:
        return False, ''
    if not hasattr(os, 'sched_setaffinity'):
        return False, (f'realtime.cpu_affinity {cpu} refused: this OS has no '
                       'sched_setaffinity; running unpinned')
    try:
        tids = [int(t) for t in os.listdir('/proc/self/task')]
    except OSError:
        tids = [0]
    try:
        for tid in tids:
            try:
                os.sched_setaffinity(tid, {int(cpu)})
            except ProcessLookupError:
                pass            # a thread that ended meanwhile
    except (OSError, ValueError) as e:     # EINVAL: CPU not allowed / absent; EPERM
        allowed = sorted(os.sched_getaffinity(0))
        return False, (f'realtime.cpu_affinity {cpu} refused by the OS ({e}; allowed '
                       f'CPUs {allowed}); running unpinned')
    return True, f'process pinned to CPU {cpu}'


class QuietGc:
    """
    Keep the cyclic garbage collector out of the control loop.

    ``start()`` (after setup): ``gc.freeze()`` moves every object that exists to the
    permanent generation, which collections never traverse, and ``gc.disable()`` stops
    the automatic generational collections, which otherwise run inside whatever
    callback happens to allocate. Reference counting still frees everything that is
    not in a cycle at once; cycles wait for ``collect()``, to be called off the hot path
    (the runner calls it from a 1 Hz timer), which records its pause.
    """

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns):
        self.clock = clock
        self.active = False
        self.collections = 0
        self.collected = 0          # unreachable objects found by collect()
        self.last_pause_ns = 0
        self.max_pause_ns = 0

    def start(self) -> None:
        gc.freeze()
        gc.disable()
        self.active = True

    def stop(self) -> None:
        """Undo ``start()`` (for benchmarks that compare both within one process)."""
        gc.enable()
        gc.unfreeze()
        self.active = False

    def collect(self) -> None:
        """Run a full collection of what was allocated since ``start()``, timed."""
        if not self.active:
            return
        t0 = self.clock()
        self.collected += gc.collect()
        self.last_pause_ns = self.clock() - t0
        self.max_pause_ns = max(self.max_pause_ns, self.last_pause_ns)
        self.collections += 1
