"""The per-epoch metrics log (CSV) that ``lstm-numba train --log`` writes.
"""

from __future__ import annotations

import csv
import json
import os


class MetricsLog:
    """Per-epoch records to a ``.csv`` or ``.jsonl`` file. A new run truncates the file; a
    resumed run rewrites it from the checkpoint's history first, so the log always matches
    the epochs the weights went through."""

    def __init__(self, path, history=()):
        self.path = os.fspath(path)
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in (".csv", ".jsonl"):
            raise ValueError(f"--metrics {self.path}: use a .csv or .jsonl file name")
        self.format = ext[1:]
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self.fields = None
        with open(self.path, "w", encoding="utf-8", newline=""):
            pass
        for record in history:
            self.write(record)

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            if self.format == "jsonl":
                f.write(json.dumps(record) + "\n")
                return
            if self.fields is None:
                self.fields = list(record)
                csv.writer(f).writerow(self.fields)
            csv.writer(f).writerow(["" if record.get(k) is None else record.get(k) for k in self.fields])
