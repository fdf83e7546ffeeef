"""Per-call overhead of the script worker pool (target: < 1 ms median for a 10 KB order).

    python benchmarks/script_pool.py

Calls a script that returns the order unchanged, N times, through a worker process and, as
the baseline measured in the same run (interleaved), in this process; prints the medians and
the overhead, for a native and a compat script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from integrator.scripting import ScriptPool, load_script
from integrator.scripting.compat import run_compat

SCRIPT = "def process(data, attributes):\n    attributes['log.seen'] = '1'\n    return data\n"
COMPAT = (
    "import json\n"
    "data = json.loads(input_text)\n"
    "session.putAttribute('log.seen', '1')\n"
    "outputStream.write(json.dumps(data))\n"
)


def order_of(size: int) -> dict[str, Any]:
    """An order document of about ``size`` bytes of JSON."""
    items = []
    while len(json.dumps({"number": "1", "orderitem_set": items})) < size:
        n = len(items)
        items.append(
            {"pk": n, "sku": f"SKU-{n:05d}", "name": "Keten Pantolon", "price": "899.00",
             "tax_rate": "20.00", "quantity": 1, "extra_field": {"erp_line_id": None}}
        )  # fmt: skip
    return {"number": "1", "orderitem_set": items}


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--size", type=int, default=10_000, help="order size in bytes of JSON")
    args = ap.parse_args()
    order = order_of(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        native, compat = Path(tmp) / "native.py", Path(tmp) / "compat.py"
        native.write_text(SCRIPT)
        compat.write_text(COMPAT)
        spec = importlib.util.spec_from_file_location("bench_native", native)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        code = compile(COMPAT, str(compat), "exec")
        baselines = {
            # The same call in this process: the function itself, or the compat runtime over
            # the order's JSON (what the worker does for a compat script).
            "native": lambda: module.process(order, {}),
            "compat": lambda: run_compat(code, json.dumps(order).encode(), {}),
        }
        pool = ScriptPool(size=1)
        rows = []
        try:
            for path in (native, compat):
                script, _ = load_script(path, "process", "bench", "script")
                assert script is not None
                script.run(pool, {}, data=order)  # start the worker, load the script
                base, samples = [], []
                for _ in range(args.calls):
                    t = time.perf_counter()
                    baselines[script.runtime]()
                    base.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    script.run(pool, {}, data=order, order=None)
                    samples.append(time.perf_counter() - t)
                rows.append((script.runtime, base, samples))
        finally:
            pool.close()
    print(f"{args.calls} calls each, order of {len(json.dumps(order)):,} bytes of JSON")
    for runtime, base, samples in rows:
        over = median_ms(samples) - median_ms(base)
        p99 = statistics.quantiles(samples, n=100)[98] * 1000
        print(
            f"{runtime:>6}: in process {median_ms(base):.3f} ms, in a worker "
            f"{median_ms(samples):.3f} ms (p99 {p99:.3f} ms): pool overhead {over:.3f} ms median"
        )


if __name__ == "__main__":
    main()
