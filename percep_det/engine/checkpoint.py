"""A checkpointer whose files are written atomically, loaded safely, and resumed from robustly.

:class:`PercepCheckpointer` is detectron2's ``DetectionCheckpointer`` (same formats, same c2 name
matching) with three differences:

* **Safe loading** (see :mod:`percep_det.engine.safe_load`): ``.pkl`` weights go through a
  restricted unpickler, ``.pth`` / ``.pyth`` through ``torch.load(weights_only=True)``; empty,
  truncated and refused files are errors that name the file. ``tools/train_net.py`` (training and
  ``--eval-only``) and the teachers (:func:`percep_det.modeling.frozen.load_weights_strict`) load
  every file through it.
* **Atomic saving**: a checkpoint (and the ``last_checkpoint`` tag) is written to a temporary
  file in the same folder, flushed and fsync'ed, then renamed over the final name with
  ``os.replace``. A run killed while saving leaves the previous checkpoint and tag as they were,
  and no partial file with a checkpoint's name.
* **Resume falls back**: ``resume_or_load(path, resume=True)`` tries the file named by
  ``last_checkpoint`` first, then the other ``*.pth`` files of the folder, newest first, and
  resumes from the first one that loads and holds an ``iteration`` (a training checkpoint). It
  logs which file it used and why the ones before it were skipped (``last_checkpoint`` missing,
  empty or naming a missing file; a file empty, truncated or not a training checkpoint). If no
  file is usable it says so in a warning and starts from ``path`` (MODEL.WEIGHTS) at iteration 0,
  as a run without checkpoints would: the checkpoints are left in place for inspection. A file
  refused as unsafe is never skipped: its error stops the run (see ``PERCEP_DET_TRUSTED_FILES``).
"""

import logging
import os
import uuid
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer
from fvcore.common.checkpoint import Checkpointer

from .safe_load import CorruptFileError, load_pickle, load_torch

__all__ = ["PercepCheckpointer", "atomic_write"]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` so that it is either complete or untouched: ``write(f)`` fills a temporary
    file in the same folder (a hidden name ending in ``.tmp``), which is flushed, fsync'ed and
    renamed over ``path``. On any error (or KeyboardInterrupt) the temporary file is removed and
    ``path`` keeps its old content; temporary files that killed writes of ``path`` left behind
    are removed by the next successful one."""
    folder = os.path.dirname(path) or "."
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open with 0o666: the file gets the permissions the umask gives a plain open()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)
    # temporary files of earlier writes of this name that were killed (SIGKILL, power cut)
    prefix = f".{os.path.basename(path)}."
    for name in os.listdir(folder):
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:
                pass


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class PercepCheckpointer(DetectionCheckpointer):
    """
    ``DetectionCheckpointer`` with safe loading, atomic saving and a resume that falls back past
    broken checkpoints (see the module docstring). Same arguments as ``DetectionCheckpointer``.

    Attributes:
        incompatible: the incompatible keys of the last loaded model weights (``load`` only logs
            them; :func:`percep_det.modeling.frozen.load_weights_strict` makes them errors).
        resumed_from: the checkpoint the last ``resume_or_load(resume=True)`` resumed from, or
            None if it started from the given path.
    """

    def __init__(
        self, model, save_dir: str = "", *, save_to_disk: Optional[bool] = None, **checkpointables
    ):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.incompatible = None
        self.resumed_from: Optional[str] = None
        self._broken: Dict[Tuple[str, float, int], str] = {}  # (path, mtime, size) -> why
        self._resuming = False

    @classmethod
    def from_checkpointer(cls, other: Checkpointer) -> "PercepCheckpointer":
        """A PercepCheckpointer with the model, folder, saving rank and checkpointables of
        ``other`` (e.g. the one ``DefaultTrainer.__init__`` creates)."""
        return cls(
            other.model, other.save_dir, save_to_disk=other.save_to_disk, **other.checkpointables
        )

    # ------------------------------------------------------------------------------------------
    # saving
    # ------------------------------------------------------------------------------------------
    def _is_local(self) -> bool:
        return "://" not in self.save_dir

    def save(self, name: str, **kwargs: Any) -> None:
        """Like ``Checkpointer.save``, but atomic (see :func:`atomic_write`) for a local folder."""
        if not self.save_dir or not self.save_to_disk:
            return
        if not self._is_local():  # e.g. a PathManager URL: fvcore's own, non-atomic writing
            super().save(name, **kwargs)
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        assert os.path.basename(save_file) == basename, basename
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Write ``last_checkpoint`` atomically (for a local folder)."""
        if not self._is_local():
            super().tag_last_checkpoint(last_filename_basename)
            return
        atomic_write(
            os.path.join(self.save_dir, LAST_CHECKPOINT),
            lambda f: f.write(last_filename_basename.encode("utf-8")),
        )

    # ------------------------------------------------------------------------------------------
    # loading
    # ------------------------------------------------------------------------------------------
    def _load_file(self, filename: str) -> Dict[str, Any]:
        if filename.endswith(".pkl"):
            data = load_pickle(filename)
            if not isinstance(data, dict):
                raise CorruptFileError(
                    f"{filename} holds a {type(data).__name__}, not a dict of weights"
                )
            # the rest as in DetectionCheckpointer._load_file
            if "model" in data and "__author__" in data:  # detectron2 model zoo format
                self.logger.info(f"Reading a file from '{data['__author__']}'")
                return data
            if "blobs" in data:  # Caffe2 / Detectron1 detection models
                data = data["blobs"]
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth"):  # pycls
            data = self._torch_load(filename)
            if "model_state" not in data:
                raise CorruptFileError(
                    f"{filename}: a .pyth (pycls) checkpoint must contain 'model_state'; it has "
                    f"{sorted(data)[:10]}"
                )
            model_state = {
                k: v
                for k, v in data["model_state"].items()
                if not k.endswith("num_batches_tracked")
            }
            return {"model": model_state, "__author__": "pycls", "matching_heuristics": True}
        loaded = super()._load_file(filename)  # .pth and others: self._torch_load, URL queries
        if self._resuming and "iteration" not in loaded:
            raise CorruptFileError(
                f"{filename} has no 'iteration': weights, not a checkpoint written by training"
            )
        return loaded

    def _torch_load(self, f: str) -> Dict[str, Any]:
        data = load_torch(f)
        if not isinstance(data, dict):
            raise CorruptFileError(f"{f} holds a {type(data).__name__}, not a checkpoint dict")
        return data

    def _load_model(self, checkpoint: Any):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible

    # ------------------------------------------------------------------------------------------
    # resuming
    # ------------------------------------------------------------------------------------------
    def _key(self, path: str) -> Tuple[str, float, int]:
        stat = os.stat(path)
        return (os.path.abspath(path), stat.st_mtime, stat.st_size)

    def resume_candidates(self) -> Tuple[List[Tuple[str, str]], List[str]]:
        """The checkpoints ``resume_or_load`` would try, in order, and the notes on
        ``last_checkpoint`` that explain the order.

        Returns:
            ``[(path, why it is tried)]``: the file named by ``last_checkpoint`` (if it exists),
            then the folder's other ``*.pth`` files, newest (modification time) first; and the
            notes (e.g. "last_checkpoint is empty").
        """
        if not self.save_dir or not self._is_local() or not os.path.isdir(self.save_dir):
            return [], []
        notes, named = [], None
        tag = os.path.join(self.save_dir, LAST_CHECKPOINT)
        if not os.path.isfile(tag):
            notes.append(f"there is no {tag}")
        else:
            with open(tag, encoding="utf-8", errors="replace") as f:
                content = f.read().strip()
            if not content:
                notes.append(f"{tag} is empty")
            elif not os.path.isfile(os.path.join(self.save_dir, content)):
                notes.append(f"{tag} names {content!r}, which does not exist")
            else:
                named = os.path.join(self.save_dir, content)
        others = [
            os.path.join(self.save_dir, f)
            for f in os.listdir(self.save_dir)
            if f.endswith(".pth") and os.path.isfile(os.path.join(self.save_dir, f))
        ]
        others = [
            p for p in others if named is None or os.path.abspath(p) != os.path.abspath(named)
        ]
        others.sort(key=lambda p: (os.path.getmtime(p), os.path.basename(p)), reverse=True)
        candidates = [(named, f"named by {tag}")] if named else []
        why = "the newest other checkpoint" if named else "the newest checkpoint"
        candidates += [(p, why) for p in others]
        return candidates, notes

    def has_checkpoint(self) -> bool:
        """Whether ``resume_or_load(resume=True)`` has a checkpoint to resume from: one of
        :meth:`resume_candidates` that has not failed to load (DefaultTrainer asks this to decide
        whether training continues after the checkpoint's iteration)."""
        if not self._is_local():
            return super().has_checkpoint()
        candidates, _ = self.resume_candidates()
        return any(self._key(p) not in self._broken for p, _ in candidates)

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """With ``resume``, resume from the newest usable checkpoint of ``save_dir`` (see the
        module docstring), else (or if there is none) load the model weights of ``path``.

        Returns:
            the checkpoint's entries that no checkpointable took (as ``Checkpointer.load``).
        """
        self.resumed_from = None
        if not resume:
            return self.load(path, checkpointables=[])
        if not self._is_local():  # a PathManager URL: fvcore's resume (no fallback)
            return super().resume_or_load(path, resume=resume)
        candidates, notes = self.resume_candidates()
        skipped = []
        for candidate, why in candidates:
            key = self._key(candidate)
            if key in self._broken:
                skipped.append(f"{candidate}: {self._broken[key]}")
                continue
            try:
                self._resuming = True
                checkpoint = self.load(candidate)
            except CorruptFileError as e:
                self._parsed_url_during_load = None  # DetectionCheckpointer.load left it set
                self._broken[key] = str(e)
                skipped.append(str(e))
                logger.warning(f"Cannot resume from {candidate}: {e}")
                continue
            finally:
                self._resuming = False
            self.resumed_from = candidate
            reasons = "; ".join(notes + skipped)
            logger.info(f"Resumed from {candidate} ({why}" + (f"; {reasons})" if reasons else ")"))
            return checkpoint
        if candidates:  # there were checkpoints, none of them usable: loud, not silent
            logger.warning(
                f"--resume: no usable checkpoint in {self.save_dir} ("
                + "; ".join(notes + skipped)
                + f"). Starting from MODEL.WEIGHTS {path!r} at iteration 0 instead; the broken "
                "files are left in place"
            )
        else:
            logger.info(f"--resume: no checkpoint in {self.save_dir!r} yet; starting from {path!r}")
        return self.load(path, checkpointables=[])
