"""lightgbm's fit time by OpenMP thread count, on a trained home's latest lstm-attn, and whether the
trees come out the same (a hash of the model text without its parameters).

    .venv/bin/python benchmarks/lightgbm_threads.py --home HOME [--threads 1,0,2]

0 is OpenMP's default (OMP_NUM_THREADS, else every core). Run it on idle cores and again while
another process holds them (the probe's case): spinning OpenMP threads then take minutes."""

from __future__ import annotations

import argparse
import hashlib
import time
from unittest import mock

import lightgbm as lgb

from ranker import artifacts
from ranker.data import MAX_HISTORY, load_dataset
from ranker.registry import build
from warehouse.store import Warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--threads", default="1,0,2", help="comma-separated num_threads values to time")
    args = parser.parse_args()
    wh = Warehouse(args.home)
    data = load_dataset(wh, MAX_HISTORY)
    base = artifacts.load(wh.models_dir, "lstm-attn", data, {}, "cpu")
    train = lgb.train
    for threads in (int(t) for t in args.threads.split(",")):
        # The fit as ranker/lightgbm_ctr.py runs it, with only num_threads changed.
        with mock.patch("ranker.lightgbm_ctr.lgb.train", lambda params, *a, n=threads, **k: train({**params, "num_threads": n}, *a, **k)):
            model = build("lightgbm", "cpu", {"lstm-attn": base})
            started = time.perf_counter()
            model.fit(data, seed=0)
            seconds = time.perf_counter() - started
        trees = hashlib.sha1(model.booster.model_to_string().split("parameters:")[0].encode()).hexdigest()[:12]
        print(f"num_threads {threads}: fit {seconds:.2f}s, trees {trees}", flush=True)


if __name__ == "__main__":
    main()
