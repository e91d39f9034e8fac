"""Training helpers shared by ``tools/train_net.py`` and by projects that reuse percep_det."""
from .checks import check_config_file, check_datasets, check_device, check_sem_seg_labels
from .ddp import cpu_aware_ddp
from .resume import TrainingState, build_resumable_train_loader
from .checkpoint import PercepCheckpointer, atomic_write
from .safe_load import CorruptFileError, UnsafeFileError, trusted_files
from .checks import NUM_CLASSES_KEYS, check_dataset_contents

__all__ = [
    "TrainingState",
    "build_resumable_train_loader",
    "check_config_file",
    "check_datasets",
    "check_device",
    "check_sem_seg_labels",
    "cpu_aware_ddp",
    "PercepCheckpointer",
    "atomic_write",
    "CorruptFileError",
    "UnsafeFileError",
    "trusted_files",
    "NUM_CLASSES_KEYS",
    "check_dataset_contents",
]
