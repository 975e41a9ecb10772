"""The request loop the benchmarks' Python references share (driven by PythonReference in bench/harness.ts).

One JSON request per line on stdin, one JSON reply per line on stdout; an exception becomes {"error": message}.
"""

import json
import sys
import time


def run_once(state):
    """The "run" request: runs the workload that "setup" prepared once; answers its wall-clock ms and its value."""
    if state.get("run") is None:
        raise ValueError("run before setup")
    start = time.perf_counter()
    value = state["run"]()
    return {"ms": (time.perf_counter() - start) * 1000, "value": value}


def serve(answer):
    """Answers requests with answer(request, state) until stdin closes."""
    state = {}
    for line in sys.stdin:
        try:
            reply = answer(json.loads(line), state)
        except Exception as error:  # reported to the caller, which fails the benchmark section
            reply = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(reply), flush=True)
