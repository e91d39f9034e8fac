"""Process memory readings for CPU benchmarks (Linux /proc)."""
import os

__all__ = ["PeakMemory", "peak_rss_bytes", "reset_peak_rss", "rss_bytes"]


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size (VmHWM) since the process started or :func:`reset_peak_rss`."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class PeakMemory:
    """Extra peak memory of the code inside ``with PeakMemory(device) as m:``, in ``m.peak_bytes``.

    CUDA: ``torch.cuda.max_memory_allocated`` over what was allocated on entry. CPU: the rise of
    the process's peak RSS (VmHWM, reset on entry) over its RSS on entry.
    """

    def __init__(self, device):
        import torch

        self.cuda = torch.device(device).type == "cuda"
        self.peak_bytes = 0

    def __enter__(self) -> "PeakMemory":
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            self.before = rss_bytes()
            reset_peak_rss()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() if self.cuda else peak_rss_bytes()
        self.peak_bytes = peak - self.before
