"""Checks of the chapters' parameters: a bad value is one line naming the parameter, before anything runs.

The list parameters of the ablation chapters are checked by `mmpiqa.workbook.ablation.axis_values`."""

from __future__ import annotations

import numbers
from typing import Any

from mmpiqa.config import ConfigError


def whole_number(
    name: str, value: Any, low: int, high: int | None = None, *, what: str = "", why: str = ""
) -> int:
    """`value` if it is a whole number (not a bool) from `low` to `high` (None: no upper bound), else a one-line
    ConfigError "<name>=<value>: <what>, a whole number from <low> to <high> (<why>)". The check of the small
    integer parameters of the chapters and of the workbook functions they call."""
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not whole or value < low or (high is not None and value > high):
        accepted = f">= {low}" if high is None else f"from {low} to {high}"
        what = f"{what}, " if what else ""
        why = f" ({why})" if why else ""
        raise ConfigError(f"{name}={value!r}: {what}a whole number {accepted}{why}")
    return int(value)
