"""OpenMP's idle threads sleep instead of spinning, in every reelsense process (imported by the
`flows`, `ranker` and `extractors` packages before any of them loads torch or LightGBM).

OpenMP runtimes keep idle worker threads spinning for a while, waiting for the next parallel region.
Where another process holds the cores, each process's spinning threads take the time the other's
work needs: one sasrec epoch of the bundled sample took 76.0 s beside a MicroLens benchmark, and 4.0 s
with passive waits (3.3 s on one thread); on idle cores 3.6-4.2 s against 3.8-4.4 s (2 cores,
2026-12-06; README, "Shared machines"). The policy changes when a thread waits, never what it
computes. It is read once, when the runtime loads: a program that imports torch before reelsense, or
sets OMP_WAIT_POLICY itself, keeps its own.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
