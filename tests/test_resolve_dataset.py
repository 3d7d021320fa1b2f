"""Dataset names or ids for circuit diffs (a fake runner: no graph needed)."""

import pytest

from circuitdb.errors import InputError
from circuitdb.queries import resolve_dataset

ROWS = [
    {"circuit": "c1", "dataset": "pbmc68k_reduced-aaaa", "name": "pbmc68k_reduced", "source": "x", "n_cells": 700},
    {"circuit": "c2", "dataset": "celltypist_pbmc_sample-bbbb", "name": "celltypist_pbmc_sample", "source": "y", "n_cells": 559},
    {"circuit": "c3", "dataset": "twin-1", "name": "twin", "source": "z", "n_cells": 1},
    {"circuit": "c4", "dataset": "twin-2", "name": "twin", "source": "z", "n_cells": 1},
]


class FakeRunner:
    def __init__(self):
        self.calls = []

    def run(self, statement, params=None):
        self.calls.append((statement.name, params))
        assert statement.name == "circuit_datasets"
        return [r for r in ROWS if params["dataset"] is None or r["dataset"] == params["dataset"]]


def test_ids_pass_names_resolve_and_ambiguity_is_an_error():
    r = FakeRunner()
    assert resolve_dataset(r, "CD19+ B", None) is None and r.calls == []
    assert resolve_dataset(r, "CD19+ B", "pbmc68k_reduced-aaaa") == "pbmc68k_reduced-aaaa"
    assert resolve_dataset(r, "CD19+ B", "celltypist_pbmc_sample") == "celltypist_pbmc_sample-bbbb"
    assert resolve_dataset(r, "CD19+ B", "unknown") == "unknown"  # the diff then reports the miss
    with pytest.raises(InputError, match="fits 2 datasets.*twin-1, twin-2"):
        resolve_dataset(r, "CD19+ B", "twin")
    assert all(p == {"cell_type": "CD19+ B", "dataset": None} for _, p in r.calls)
