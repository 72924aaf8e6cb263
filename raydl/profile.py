"""Start-up marks for benchmarks/startup_profile.py.

When RAYDL_PROFILE names a file, `mark(name)` appends one JSON line {"mark", "t", "pid"}
to it; otherwise it does nothing. Ray's processes (runner actors, Ray Train workers) inherit
the variable from the driver that starts Ray, so one file collects every process's marks
and the benchmark lays them on one time line.
"""

from __future__ import annotations

import json
import os
import time


def process_start() -> float | None:
    """When this process started (seconds since the epoch), from /proc; None elsewhere."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as fh:  # /proc/stat's btime is whole seconds only
            boot = time.time() - float(fh.read().split()[0])
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def mark(name: str) -> None:
    """Record that this process reached `name` now (only under RAYDL_PROFILE), with the
    process's own start time so the time it took to get here is seen too."""
    path = os.environ.get("RAYDL_PROFILE")
    if not path:
        return
    line = json.dumps({"mark": name, "t": time.time(), "pid": os.getpid(), "started": process_start()})
    with open(path, "a") as fh:  # one short append per line: lines from processes stay whole
        fh.write(line + "\n")
