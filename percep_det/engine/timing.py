"""Per-step CPU time: a cost measure that other jobs on the machine do not inflate.

detectron2's ``time`` is wall-clock seconds per step; on a shared machine (two experiments on two
cores, a test suite next to them) it mostly measures the contention. ``cpu_time`` is the CPU
seconds the training process itself spent in the step (``time.process_time``: all its threads;
not the data-loader workers, which are other processes), so the ratio between two variants stays
meaningful when the machine is busy. With one thread per process it is close to the step's wall
time on an idle machine.
"""

import time

from detectron2.engine import HookBase

__all__ = ["CPUTimer"]


class CPUTimer(HookBase):
    """Puts ``cpu_time`` (CPU seconds of this process in ``run_step``) into the event storage
    after each step; detectron2's writers log it next to ``time`` (``metrics.json``)."""

    def before_step(self) -> None:
        self._start = time.process_time()

    def after_step(self) -> None:
        self.trainer.storage.put_scalars(cpu_time=time.process_time() - self._start)
