"""Runs started at the same instant get folders of their own. (Issue 16, hostile input: each test failed on the code before its fix.)"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from conftest import SMALL, SMALL_FLAGS, run_core

import core.evaluation.runs as runs
from core.evaluation.runs import load_run, new_run_id, write_run

CFG, FLAGS, cli = SMALL, SMALL_FLAGS, run_core
QUIET = dict(progress=False, log=lambda m: None)


def test_runs_started_at_the_same_instant_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.setattr(runs.time, "time", lambda: 1_700_000_000.25)        # every run starts at this instant
    assert len({new_run_id("paris6k", "tf_efficientnet_lite0/rmac/ss/64-exact", "g") for _ in range(50)}) == 50

    def write(k: int):
        return write_run("same-id", {"run_id": "same-id", "k": k}, pd.DataFrame({"query": ["q"], "ap": [k / 8]}),
                         ["a.jpg", "b.jpg"], np.array([[k % 2, 1 - k % 2]]), {}, root=tmp_path)

    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(write, range(8)))
    assert len(set(folders)) == 8                                          # none shared, none overwritten
    loaded = [load_run(f.name, tmp_path) for f in folders]
    assert sorted(r.summary.protocol_extras["k"] for r in loaded) == list(range(8))
    assert all(r.summary.run_id == r.directory.name and r.ranking[0].tolist() == [r.summary.protocol_extras["k"] % 2,
                                                                                  1 - r.summary.protocol_extras["k"] % 2]
               for r in loaded)
