"""Shared by the benchmarks: a simulated utility of a given size, and small /proc helpers."""

from __future__ import annotations

import math
import os
from pathlib import Path

from devtools.simulator import DEFAULTS, SimConfig, Simulator


def sim_for(meters: int, days: float, batch: int, *, seed: int = 42, scenario: str | None = None) -> Simulator:
    """The simulator's default topology (2 feeders, 8 meters per transformer) with enough transformers per
    feeder for at least ``meters`` meters (rounded up to a whole transformer on every feeder)."""
    feeders, per_tr = DEFAULTS["feeders"], DEFAULTS["meters_per_transformer"]
    tpf = max(1, math.ceil(meters / (feeders * per_tr)))
    return Simulator(SimConfig(seed=seed, feeders=feeders, transformers_per_feeder=tpf,
                               meters_per_transformer=per_tr, hours=days * 24.0, batch=batch,
                               scenario=scenario))


_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process (its threads included), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the command name: state is fields[0], so utime (field 14) is fields[11], stime fields[12]
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores, from /proc/stat."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already in user
    return (total - idle) / _TICK, total / _TICK


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def code_version() -> str:
    """The commit the measured code is at, and which of its source folders have uncommitted changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "streams", "detectors",
                                "gridwatch", "notifiers"], capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"commit {head or '?'}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")
