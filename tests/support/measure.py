"""Run a command with a memory ceiling and a deadline; report its peak RSS.

``python measure.py REPORT.json SECONDS -- CMD...``: runs CMD (stdout and stderr inherited),
kills it with SIGKILL when it is still running after SECONDS, and writes
``{"code", "seconds", "killed", "max_rss_kb"}`` to REPORT.json. The peak RSS is the largest of
CMD and the children it waited for (``RUSAGE_CHILDREN``). ``RLIMIT_DATA`` is lowered to
``MEASURE_DATA_LIMIT_MB`` (default 1024) first, so a runner that reads a bomb into memory gets
a MemoryError instead of taking the machine.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    report, seconds, sep, *cmd = argv
    if sep != "--" or not cmd:
        print(__doc__, file=sys.stderr)
        return 2
    limit = int(os.environ.get("MEASURE_DATA_LIMIT_MB", "1024")) * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    started = time.monotonic()
    proc = subprocess.Popen(cmd)
    killed = False
    try:
        code = proc.wait(float(seconds))
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
        killed = True
    elapsed = time.monotonic() - started
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(report, "w") as f:
        json.dump({"code": code, "seconds": elapsed, "killed": killed, "max_rss_kb": rss}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
