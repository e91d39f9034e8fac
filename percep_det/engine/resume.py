"""Training that ``--resume`` continues exactly where it stopped.

detectron2's ``DefaultTrainer`` restores weights, optimizer, scheduler and iteration on resume, but
the data stream starts again from its beginning (``TrainingSampler`` is re-created, with a new
random seed if ``SEED`` < 0), the random augmentations restart from a new worker seed, and the global
torch RNG (used e.g. by CondInst's ``MAX_PROPOSALS`` sampling) is not restored. Three pieces fix that:

* :class:`ResumableTrainingSampler`: the seeded infinite index stream of ``TrainingSampler`` that
  yields ``(position, index)`` pairs and can start at a given position;
* :class:`PositionSeededDataset`: maps ``(position, index)`` to ``mapper(dataset[index])`` with the
  augmentation RNGs seeded from ``(seed, position)``, so an example's augmentation depends on where
  it is in the stream, not on which worker or run draws it;
* :class:`TrainingState`: a checkpointable holding the data seed and the RNG states of the process,
  saved in every checkpoint and restored on resume.

With one process on the CPU, a run interrupted and resumed ends with the same weights as an
uninterrupted one (tested). With several processes, each rank's data position is exact, but only
rank 0's RNG state is in the checkpoint (other ranks reseed deterministically), and CUDA kernels
may not be deterministic anyway; with aspect-ratio grouping of mixed image shapes, the examples
buffered in a group at the interruption are skipped.
"""
import itertools
import random
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from detectron2.data import build_detection_train_loader
from detectron2.data.build import _train_loader_from_config
from detectron2.data.samplers import TrainingSampler
from detectron2.utils import comm
from torch.utils.data import Dataset

from ..data.mappers import name_files_on_error

__all__ = [
    "PositionSeededDataset",
    "ResumableStream",
    "ResumableTrainingSampler",
    "TrainingState",
    "build_resumable_train_loader",
]


def _mix(seed: int, position: int) -> int:
    """A 32-bit seed from (seed, position); numpy's SeedSequence mixes them well."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, position]).generate_state(1)[0])


class ResumableTrainingSampler(TrainingSampler):
    """``TrainingSampler`` yielding ``(position, index)``; ``start`` skips this rank's first
    ``start`` items (set it before the data loader's iterator is created)."""

    def __init__(self, size: int, seed: int):
        super().__init__(size, shuffle=True, seed=seed)
        self.start = 0

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        stream = enumerate(self._infinite_indices())  # (global position, dataset index)
        first = self._rank + self.start * self._world_size
        yield from itertools.islice(stream, first, None, self._world_size)


class PositionSeededDataset(Dataset):
    """``dataset[(position, index)] = mapper(dataset_dicts[index])`` with seeded augmentations.

    The global ``random``, numpy and torch RNGs (which detectron2's augmentations use) are seeded
    from ``(seed, position)`` for the call and restored afterwards, so the caller's RNG streams are
    untouched. A file that fails to read raises an error naming the record's files
    (:class:`~percep_det.data.mappers.NameFilesOnError`).
    """

    def __init__(self, dataset_dicts: List[Dict], mapper: Callable[[Dict], Optional[Dict]], seed: int):
        self.dataset_dicts = dataset_dicts
        self.mapper = name_files_on_error(mapper)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset_dicts)

    def __getitem__(self, item: Tuple[int, int]) -> Dict:
        position, index = item
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            for attempt in range(10):
                s = _mix(self.seed, position * 10 + attempt)
                random.seed(s)
                np.random.seed(s)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(s)
                    out = self.mapper(self.dataset_dicts[index])
                if out is not None:
                    return out
                # the mapper rejected this example (e.g. an empty crop): take another, chosen
                # deterministically from the position
                index = _mix(self.seed + 1, position * 10 + attempt) % len(self.dataset_dicts)
            raise RuntimeError(f"the dataset mapper rejected 10 examples in a row at {position}")
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class ResumableStream:
    """The data position/seed handles of a loader built by :func:`build_resumable_train_loader`."""

    def __init__(self, sampler: ResumableTrainingSampler, dataset: PositionSeededDataset):
        self.sampler = sampler
        self.dataset = dataset

    @property
    def seed(self) -> int:
        return self.dataset.seed

    def set_seed(self, seed: int) -> None:
        self.sampler._seed = int(seed)
        self.dataset.seed = int(seed)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` examples of this rank (before the first batch is drawn)."""
        self.sampler.start = int(start)


class TrainingState:
    """Checkpointable data seed and RNG states (python, numpy, torch, CUDA) of the main process.

    Stored as tensors and plain numbers only, so checkpoints load with ``torch.load``'s
    ``weights_only`` default.
    """

    def __init__(self, stream: ResumableStream):
        self.stream = stream

    def state_dict(self) -> Dict:
        version, py_state, gauss = random.getstate()
        _, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "data_seed": self.stream.seed,
            "python": torch.tensor(py_state, dtype=torch.int64),
            "python_meta": [int(version), gauss],
            "numpy": torch.from_numpy(keys.astype(np.int64)),
            "numpy_meta": [int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Dict) -> None:
        """Restore the data seed now; the RNG states wait for :meth:`apply_rng_state` (called
        once the trainer has rebuilt everything whose construction draws random numbers)."""
        self.stream.set_seed(int(state["data_seed"]))
        self._pending = state

    def apply_rng_state(self) -> None:
        state, self._pending = getattr(self, "_pending", None), None
        if state is None:
            return
        if comm.get_rank() != 0:  # only rank 0's states are saved: reseed the others from them
            torch.manual_seed(_mix(int(state["torch"].sum()), comm.get_rank()))
            return
        version, gauss = state["python_meta"]
        random.setstate((version, tuple(int(v) for v in state["python"].tolist()), gauss))
        pos, has_gauss, cached = state["numpy_meta"]
        keys = state["numpy"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), float(cached)))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            if len(state["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(state["cuda"])


def build_resumable_train_loader(cfg, mapper=None):
    """detectron2's training loader (same config keys) with a resumable, seeded data stream.

    Returns the loader; its ``stream`` attribute (a :class:`ResumableStream`) sets the start
    position and seed before the first batch is drawn.
    """
    kwargs = _train_loader_from_config(cfg, mapper)
    dataset = kwargs["dataset"]
    if type(kwargs["sampler"]) is not TrainingSampler:
        raise NotImplementedError(
            f"DATALOADER.SAMPLER_TRAIN={cfg.DATALOADER.SAMPLER_TRAIN}: exact resume supports "
            "only TrainingSampler"
        )
    data_seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
    sampler = ResumableTrainingSampler(len(dataset), data_seed)
    mapped = PositionSeededDataset(dataset, kwargs.pop("mapper"), data_seed)
    kwargs.update(sampler=sampler, dataset=mapped)
    # seed: the DataLoader draws its workers' base seed from its own generator, not from the
    # global torch RNG (whose state the checkpoint restores)
    loader = build_detection_train_loader(mapper=None, seed=data_seed, **kwargs)
    loader.stream = ResumableStream(sampler, mapped)
    return loader
