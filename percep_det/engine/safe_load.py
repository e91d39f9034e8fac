"""Loading weight files without running code from them.

A pickle (detectron2's ``.pkl`` model-zoo files, and ``torch.save`` files underneath) can name any
Python callable and have it called while loading: opening an untrusted weights file with
``pickle.load`` or ``torch.load(weights_only=False)`` runs whatever it asks for. percep_det loads

* ``.pkl`` weights (MODEL.WEIGHTS, teachers' WEIGHTS) with :func:`load_pickle`, a restricted
  unpickler that accepts what detectron2, AdelaiDet and MSRA / Caffe2 weight files hold: dicts,
  lists, tuples, sets, numbers, strings, bytes, ``collections.OrderedDict`` and numpy arrays,
  scalars and dtypes; anything else is refused with :class:`UnsafeFileError` naming the file and
  the global it asked for;
* ``.pth`` / ``.pyth`` files with :func:`load_torch`: ``torch.load(..., weights_only=True)``
  (tensors, plain containers and numbers: what percep_det's checkpoints hold, see
  :class:`percep_det.engine.TrainingState`);
* YAML configs with ``yaml.safe_load`` (see :func:`percep_det.config.get_percep_cfg`).

An empty, truncated or otherwise unreadable file is a :class:`CorruptFileError` naming it.

The one opt-out, for files you trust: the environment variable ``PERCEP_DET_TRUSTED_FILES=1``
(see :func:`trusted_files`) loads with pickle's full loader, ``weights_only=False`` and allows
Python tags in YAML configs.
"""

import os
import pickle
import re
from typing import Any, Optional

import torch

__all__ = [
    "TRUSTED_FILES_ENV",
    "CorruptFileError",
    "UnsafeFileError",
    "load_pickle",
    "load_torch",
    "trusted_files",
]

TRUSTED_FILES_ENV = "PERCEP_DET_TRUSTED_FILES"

# (module, name) of the globals a weights pickle may name. Python 2 pickles (Detectron1 / MSRA)
# spell builtins "__builtin__"; numpy >= 2 writes "numpy._core" where numpy 1 writes "numpy.core".
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),  # ndarray.__reduce__
    ("numpy.core.multiarray", "scalar"),  # numpy scalars (np.float32(1.0), ...)
    ("numpy.core.numeric", "_frombuffer"),  # ndarray.__reduce_ex__ with pickle protocol 5
}
_SAFE_PICKLE_GLOBALS = frozenset(
    {("collections", "OrderedDict"), ("_codecs", "encode")}  # encode: bytes in protocol <= 2
    | {(b, n) for b in ("builtins", "__builtin__") for n in ("set", "frozenset", "complex")}
    | {(b, "bytearray") for b in ("builtins", "__builtin__")}
    | _NUMPY_GLOBALS
    | {(m.replace("numpy.core", "numpy._core"), n) for m, n in _NUMPY_GLOBALS}
)


def trusted_files() -> bool:
    """True if ``PERCEP_DET_TRUSTED_FILES`` is set to 1 / true / yes: the user trusts every weights
    and config file of this run, and they are loaded with the full, code-executing loaders."""
    return os.environ.get(TRUSTED_FILES_ENV, "").strip().lower() in ("1", "true", "yes")


def _opt_out_hint() -> str:
    return (
        f"If you trust this file, set {TRUSTED_FILES_ENV}=1 to load it with the full loader, "
        "which can run code"
    )


class UnsafeFileError(RuntimeError):
    """A weights or config file asks for a Python object that percep_det does not load from
    untrusted files (it could run code). The message names the file, the object and the opt-out."""


class CorruptFileError(RuntimeError):
    """A weights or checkpoint file is empty, truncated or not a file of the expected format. The
    message names the file."""


def _check_not_empty(path: str) -> None:
    if os.path.getsize(path) == 0:
        raise CorruptFileError(
            f"{path} is empty (0 bytes): an interrupted download or copy, or a checkpoint whose "
            "writing was killed. Download or copy it again, or point to another file"
        )


class _RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`_SAFE_PICKLE_GLOBALS`."""

    def __init__(self, file, path: str):
        super().__init__(file, encoding="latin1")  # Python 2 (Caffe2 / MSRA) pickles
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_PICKLE_GLOBALS:
            raise UnsafeFileError(
                f"{self.path}: refused to load: the pickle asks for the Python object "
                f"'{module}.{name}', which percep_det does not load from weights files (it could "
                "run code; weights may only hold dicts, lists, numbers, strings and numpy arrays). "
                + _opt_out_hint()
                + ", or convert the file to a plain dict of arrays"
            )
        return super().find_class(module, name)  # (maps Python 2 names, e.g. __builtin__)


def load_pickle(path: str) -> Any:
    """The object pickled in ``path`` (e.g. a detectron2 ``.pkl`` model), built only from the
    allowed types (see the module docstring); with ``PERCEP_DET_TRUSTED_FILES=1``, ``pickle.load``.

    Raises:
        UnsafeFileError: the pickle names another Python object (nothing of it ran).
        CorruptFileError: the file is empty, truncated or not a pickle.
    """
    _check_not_empty(path)
    with open(path, "rb") as f:
        try:
            if trusted_files():
                return pickle.load(f, encoding="latin1")
            return _RestrictedUnpickler(f, path).load()
        except UnsafeFileError:
            raise
        except Exception as e:  # EOFError, UnpicklingError, ValueError, ... of a broken file
            raise CorruptFileError(
                f"{path} is not a readable pickle (truncated or corrupt?): "
                f"{type(e).__name__}: {e}"
            ) from e


# torch's weights_only error messages: the refused global, and the unpickler's own complaint
_TORCH_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_TORCH_COMPLAINT = re.compile(r"WeightsUnpickler error:\s*(.*?)(?:\n\n|$)", re.S)


def load_torch(path: str, map_location: Optional[Any] = "cpu") -> Any:
    """``torch.load(path, map_location, weights_only=True)`` with errors that name the file; with
    ``PERCEP_DET_TRUSTED_FILES=1``, ``weights_only=False``.

    Raises:
        UnsafeFileError: the file holds a Python object that ``weights_only`` does not allow.
        CorruptFileError: the file is empty, truncated or not written by ``torch.save``.
    """
    _check_not_empty(path)
    weights_only = not trusted_files()
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as e:
        refused = _TORCH_GLOBAL.search(str(e))
        if weights_only and refused:
            raise UnsafeFileError(
                f"{path}: refused to load: it holds the Python object '{refused.group(1)}', which "
                "torch.load(weights_only=True) does not load (it could run code; checkpoints may "
                "only hold tensors, containers and numbers). " + _opt_out_hint()
            ) from None
        complaint = _TORCH_COMPLAINT.search(str(e))
        detail = complaint.group(1).strip() if complaint else str(e).splitlines()[0]
        raise CorruptFileError(
            f"{path} is not a readable torch file (truncated or corrupt, or not written by "
            f"torch.save): {detail}"
        ) from None
    except Exception as e:  # EOFError, RuntimeError (a truncated zip), ... of a broken file
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise CorruptFileError(
            f"{path} is not a readable torch file (truncated or corrupt?): "
            f"{type(e).__name__}: {first_line}"
        ) from e
