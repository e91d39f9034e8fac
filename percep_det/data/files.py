"""Checks shared by the loaders of list-file datasets (VOC + SBD, NYU Depth v2)."""

import os
from typing import Dict, Sequence

__all__ = ["require_listed_files"]


def require_listed_files(
    records: Sequence[Dict], keys: Sequence[str], list_file: str, remedy: str, dataset: str = ""
) -> None:
    """Raise ``FileNotFoundError`` when a file named by ``records[i][key]`` (for each of ``keys``)
    does not exist: how many of the listed files are missing, a few of them, the list file, the
    dataset and ``remedy`` (how to prepare the data)."""
    for key in keys:
        missing = [r[key] for r in records if not os.path.isfile(r[key])]
        if missing:
            of = f" (dataset '{dataset}')" if dataset else ""
            raise FileNotFoundError(
                f"{len(missing)} of the {len(records)} files listed in '{list_file}' are missing"
                f"{of}, e.g. {missing[:3]}; {remedy}"
            )
