"""How the content-first settings of `sasrec-content` were chosen: validation NDCG@10 after 3
epochs (seed 0) of sasrec, of sasrec-content with id_drop 0.2 / delta_ratio 2.0, and with the
earlier 0.5 / 0.5, on a MicroLens-50K home (benchmarks/results/microlens-50k-history.md).

    .venv/bin/python benchmarks/content_first.py --home HOME [--epochs 3]

Measured 2026-11-29 on 2 cores (first version of the sequence builder): sasrec .0062, .0172, .0248;
0.2 / 2.0: .0126, .0209, .0269; 0.5 / 0.5: .0119, .0137, .0166. Never asserted.
"""

from __future__ import annotations

import argparse
import time

from ranker.data import ensure_samples, load_dataset
from ranker.sasrec import Sasrec, SasrecConfig
from warehouse.store import Warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    ensure_samples(Warehouse(args.home))
    data = load_dataset(Warehouse(args.home))
    for name, content, settings in [
        ("sasrec", False, {}),
        ("content 0.2 / 2.0", True, dict(id_drop=0.2, delta_ratio=2.0)),
        ("content 0.5 / 0.5", True, dict(id_drop=0.5, delta_ratio=0.5)),
    ]:
        model = Sasrec(use_content=content, config=SasrecConfig(max_epochs=args.epochs, **settings))
        started = time.perf_counter()
        model.fit(data, seed=0)
        print(name, [round(h["valid_ndcg@10"], 4) for h in model.history], f"{time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
