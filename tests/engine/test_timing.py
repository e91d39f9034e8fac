"""CPUTimer: CPU seconds per training step in the event storage."""

import time

from detectron2.utils.events import EventStorage

from percep_det.engine.timing import CPUTimer


class _FakeTrainer:
    storage = None


def test_cpu_time_counts_work_not_waiting():
    hook = CPUTimer()
    hook.trainer = _FakeTrainer()
    with EventStorage() as storage:
        hook.trainer.storage = storage
        hook.before_step()
        time.sleep(0.2)  # waiting: no CPU time
        hook.after_step()
        idle = storage.history("cpu_time").latest()
        storage.step()
        hook.before_step()
        start = time.perf_counter()
        x = 0
        while time.perf_counter() - start < 0.2:  # busy: about 0.2 s of CPU
            x += 1
        hook.after_step()
        busy = storage.history("cpu_time").latest()
    assert idle < 0.1
    assert busy > 0.1 and busy > idle
