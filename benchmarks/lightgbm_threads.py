"""lightgbm's fit and predict times by OpenMP thread count, on a trained home's latest lstm-attn, and
whether the trees and predictions come out the same (hashes of the model text without its parameters,
and of the predictions).

    .venv/bin/python benchmarks/lightgbm_threads.py --home HOME [--threads 1,0,2] [--users 2000]

0 is OpenMP's default (OMP_NUM_THREADS, else every core). Run it on idle cores and again while
another process holds them (the probe's case): spinning OpenMP threads then take minutes. The predict
timed is the trees' alone, over the test users' re-ranked candidates (the base model's top_k), as
evaluate and score-batch run it; the base model's scoring is left out."""

from __future__ import annotations

import argparse
import hashlib
import time
from unittest import mock

import lightgbm as lgb
import numpy as np

from ranker import artifacts
from ranker.data import MAX_HISTORY, load_dataset
from ranker.registry import build
from warehouse.store import Warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--threads", default="1,0,2", help="comma-separated num_threads values to time")
    parser.add_argument("--users", type=int, default=2000, help="the first N test users whose candidates predict scores (all items of 50,000 would not fit)")
    args = parser.parse_args()
    wh = Warehouse(args.home)
    data = load_dataset(wh, MAX_HISTORY)
    base = artifacts.load(wh.models_dir, "lstm-attn", data, {}, "cpu")
    train = lgb.train
    test = data.queries.take(np.flatnonzero(data.split == "test")[: args.users])
    candidates = features = None
    for threads in (int(t) for t in args.threads.split(",")):
        # The fit as ranker/lightgbm_ctr.py runs it, with only num_threads changed.
        with mock.patch("ranker.lightgbm_ctr.lgb.train", lambda params, *a, n=threads, **k: train({**params, "num_threads": n}, *a, **k)):
            model = build("lightgbm", "cpu", {"lstm-attn": base})
            started = time.perf_counter()
            model.fit(data, seed=0)
            seconds = time.perf_counter() - started
        trees = hashlib.sha1(model.booster.model_to_string().split("parameters:")[0].encode()).hexdigest()[:12]
        if features is None:  # the same rows for every thread count
            candidates = np.argsort(-base.score_all(data, test), axis=1)[:, : model.top_k]
            features = model.features(data, test, candidates, base.score_items(data, test, candidates))
        started = time.perf_counter()
        raw = model.booster.predict(features, raw_score=True, num_threads=threads)
        predicting = time.perf_counter() - started
        predictions = hashlib.sha1(np.ascontiguousarray(raw).tobytes()).hexdigest()[:12]
        print(
            f"num_threads {threads}: fit {seconds:.2f}s, trees {trees}; predict of {len(features):,} rows "
            f"({len(test):,} test users' candidates) {predicting:.2f}s, predictions {predictions}",
            flush=True,
        )


if __name__ == "__main__":
    main()
