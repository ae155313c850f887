"""Numeric columns from a CSV file; every error names the file, column and line.
"""

from __future__ import annotations

import csv
import math
import os
from typing import NamedTuple, Sequence

import numpy as np


def read_table(path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line_number, cells)`` data rows of a CSV; blank lines are skipped."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected a header row")
        header = [h.strip() for h in header]
        rows = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise ValueError(
                    f"{path}: line {reader.line_num} has {len(cells)} cells, "
                    f"the header has {len(header)}"
                )
            rows.append((reader.line_num, cells))
    if not rows:
        raise ValueError(f"{path}: no data rows after the header")
    return header, rows


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def parse_float(cell: str, path, column: str, line: int) -> float:
    text = cell.strip()
    if not text:
        raise ValueError(f"{path}: empty cell in column {column!r} at line {line}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{path}: non-numeric value {text!r} in column {column!r} at line {line}"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: {text} in column {column!r} at line {line}")
    return value


def column_index(header: list[str], name: str, path) -> int:
    if name not in header:
        raise ValueError(
            f"{path}: no column {name!r}; available: {', '.join(map(repr, header))}"
        )
    return header.index(name)


class Columns(NamedTuple):
    """Numeric columns read from a CSV: ``values`` ``(N, F)`` float64, their ``names``
    (length F), and ``target_index`` (position of the target in ``names``, or None)."""

    values: np.ndarray
    names: list[str]
    target_index: int | None


def read_csv_columns(path, columns: Sequence[str] | None = None,
                     target: str | None = None) -> Columns:
    """Read numeric columns of a CSV with a header row.

    ``columns``: names to read, in that order. None reads every column whose first data cell
    is a number (so a leading ``date`` column is skipped); the rest of such a column must be
    numeric too. ``target``: a column name; it is appended to ``columns`` if missing there.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for an
    unknown column (listing the available ones), an empty, non-numeric, NaN or infinite cell
    (naming column and line), a ragged row, or no data rows.
    """
    header, rows = read_table(path)
    if columns is None:
        first = rows[0][1]
        names = [h for h, cell in zip(header, first) if _is_number(cell.strip())]
        if not names:
            raise ValueError(f"{path}: no numeric column (first data row: {first})")
    else:
        names = list(columns)
    if target is not None and target not in names:
        names.append(target)
    if not names:
        raise ValueError(f"{path}: no columns selected")
    idx = [column_index(header, name, path) for name in names]
    values = np.empty((len(rows), len(names)), dtype=np.float64)
    for r, (line, cells) in enumerate(rows):
        for c, (i, name) in enumerate(zip(idx, names)):
            values[r, c] = parse_float(cells[i], path, name, line)
    return Columns(values, names, None if target is None else names.index(target))
