"""Build-time checks of the CondInst / FCOS config values that a bad value would otherwise turn
into an obscure error deep in training ("slice step cannot be zero") or a silent no-op. Each error
names the config key, its value and what is expected."""

from typing import Sequence

__all__ = ["check_int", "check_increasing", "check_positive_ints"]


def check_int(key: str, value, minimum: int = 1, allow_minus_one: bool = False) -> None:
    """``value`` (of config ``key``) is an int >= ``minimum`` (or -1 if ``allow_minus_one``)."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and (value >= minimum or (allow_minus_one and value == -1)):
        return
    expected = f"an integer >= {minimum}" + (" (or -1 for 'off')" if allow_minus_one else "")
    raise ValueError(f"{key} must be {expected}, got {value!r}")


def check_positive_ints(key: str, values: Sequence) -> None:
    """``values`` (of config ``key``) is a non-empty sequence of ints >= 1."""
    bad = not len(values) or any(
        not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values
    )
    if bad:
        raise ValueError(f"{key} must be a non-empty list of positive integers, got {list(values)}")


def check_increasing(key: str, values: Sequence) -> None:
    """``values`` (of config ``key``) are positive and strictly increasing."""
    values = list(values)
    if any(not isinstance(v, (int, float)) or v <= 0 for v in values) or any(
        b <= a for a, b in zip(values, values[1:])
    ):
        raise ValueError(f"{key} must be positive and strictly increasing, got {values}")
