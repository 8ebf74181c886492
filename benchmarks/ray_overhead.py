"""Per-stage overhead of the Ray executor against the local one, on this machine.

    python benchmarks/ray_overhead.py [--seeds 4] [--cpus 1]

Runs one small config (the interrupt tests' hashed-trigram encoder, the naive strategy: 4 stages per seed) with
each executor into a fresh store, in-process, with one thread per stage, and prints the wall time of each run and
the per-stage difference. The Ray instance is local with ``--cpus`` CPUs (1: the stages run one at a time, as the
local executor runs them, so the difference is the executor's own cost, not parallelism). The first Ray run pays
for starting the job's worker processes (torch, the plugins, the data in each); the second, in the same driver,
finds them warm: that is the steady-state cost per stage of a long sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import ray
    import slow_plugin
    from test_reliability import write_slow_config

    from w2s_harness._cli.cli import main as cli

    tmp = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    cfg = write_slow_config(tmp)
    seeds = ",".join(str(s) for s in range(args.seeds))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "tests"), os.environ.get("PYTHONPATH", "")])
    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    startup = time.perf_counter() - t

    def run(name: str, *extra: str) -> dict:
        out = tmp / name
        t0 = time.perf_counter()
        code = cli(["run", "--config", str(cfg), "-o", str(out), "--seeds", seeds, "--threads", "1",
                    "--workers", "1", *extra], plugins=[slow_plugin])
        wall = time.perf_counter() - t0
        assert code == 0, code
        res = json.loads((out / "results.json").read_text())
        return {"wall": wall, "stages": len(res["stages"]), "in_stage": res["timings"]["computed_seconds"],
                "numbers": [s["metrics"] for s in res["stages"]]}

    try:
        local_first = run("local-first")  # pays this process's one-time imports and warm-ups
        cold = run("ray-cold", "--executor", "ray")  # pays the Ray job's worker start-up
        locals_ = [run(f"local-{i}") for i in range(args.repeat)]
        warms = [run(f"ray-warm-{i}", "--executor", "ray") for i in range(args.repeat)]
    finally:
        ray.shutdown()
    assert all(r["numbers"] == local_first["numbers"] for r in (cold, *locals_, *warms))
    n = local_first["stages"]
    local = min(locals_, key=lambda r: r["wall"])
    warm = min(warms, key=lambda r: r["wall"])
    print(f"config: naive, {args.seeds} seeds, {n} stages; Ray instance: {args.cpus} CPU(s), started in "
          f"{startup:.2f} s; best of {args.repeat} for the warm rows")
    print(f"{'run':<24} {'wall s':>8} {'in stages s':>12} {'wall/stage ms':>14} {'vs local, ms/stage':>19}")
    for name, r in (("local (first in process)", local_first), ("ray (cold job)", cold), ("local (warm)", local),
                    ("ray (warm job)", warm)):
        print(f"{name:<24} {r['wall']:>8.2f} {r['in_stage']:>12.2f} {1000 * r['wall'] / n:>14.1f} "
              f"{1000 * (r['wall'] - local['wall']) / n:>19.1f}")


if __name__ == "__main__":
    main()
