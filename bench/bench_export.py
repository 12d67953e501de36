"""Export + simplify + parity of resnext50d_32x4d (random weights) on this CPU: wall time and peak memory.

Runs `resnext-deploy export ... --no-engine` in a child process (so its peak RSS is measured alone)
and prints the stage times from report.json. Targets: under 30 s wall and under 4 GiB peak on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnext50d_32x4d")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-export.") as tmp:
        command = [sys.executable, "-m", "resnext_deploy", "export", args.model, "--weights", "random",
                   "--output", tmp, "--force", "--no-engine"]
        env = os.environ | {"HF_HUB_OFFLINE": "1"}
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux
        report = json.loads((Path(tmp) / "report.json").read_text())
    export = report["export"]
    print(f"{args.model}: export + simplify + parity, {os.cpu_count()} cores ({report['environment']['cpu']})")
    print(f"  wall time   {wall:6.1f} s   (target < 30 s)   {'ok' if wall < 30 else 'MISSED'}")
    print(f"  peak memory {peak_gib:6.2f} GiB (target < 4 GiB) {'ok' if peak_gib < 4 else 'MISSED'}")
    print("  stages      " + ", ".join(f"{k} {v:.1f}s" for k, v in export["seconds"].items())
          + " (the rest is Python start-up, torch/timm import and model construction)")
    print(f"  graph       {export['simplify']['nodes_before']} -> {export['simplify']['nodes_after']} nodes, "
          f"{export['batchnorm']['folded']} BatchNorms folded, parity max abs diff {export['parity']['max_abs_diff']:.1e}")


if __name__ == "__main__":
    main()
