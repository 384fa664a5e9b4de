"""Warm execute round trips through jupyter_client's BlockingKernelClient.

Starts one kernel of the given kernelspec with jupyter_client.KernelManager. Each execution is
timed from just before its execute_request is sent until both its execute_reply and its iopub
`idle` status have arrived (execute_interactive's completion rule, the same one runcell's
KernelExecutor uses).

One-shot mode (prints one JSON object, {"ok": true, "samples_ms": {snippet: [ms, ...]}, ...}):
    jupyter_client_roundtrip.py --snippets '["pass", "1+1"]' [--iterations 500] [--warmup 50]

Serve mode (--serve), used by bench/run.ts to interleave blocks of executions with runcell's:
prints {"ok": true, "start_ms": ..., "versions": {...}} once the kernel is ready, then answers
each JSON line on stdin, {"code": "...", "iterations": N}, with {"ok": true, "samples_ms": [...]}
(or {"ok": false, "error": "..."}). A {"quit": true} line or the end of stdin shuts down.

Diagnostics go to stderr. The kernel is shut down on every exit path, SIGTERM included.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any


def _terminate(signum: int, _frame: Any) -> None:
    # Turn SIGTERM into SystemExit so the `finally` in main() shuts the kernel down.
    raise SystemExit(128 + signum)


def _versions() -> dict[str, str]:
    import ipykernel
    import jupyter_client
    import zmq

    return {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "jupyter_client": jupyter_client.__version__,
        "ipykernel": ipykernel.__version__,
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
    }


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _run_once(client: Any, code: str, timeout: float) -> None:
    outputs: list[dict[str, Any]] = []
    reply = client.execute_interactive(
        code,
        store_history=True,
        allow_stdin=False,
        stop_on_error=False,
        timeout=timeout,
        output_hook=outputs.append,
    )
    status = reply["content"].get("status")
    if status != "ok":
        raise RuntimeError(f"execution of {code!r} ended {status}: {reply['content']}")


def measure(client: Any, code: str, iterations: int, timeout: float) -> list[float]:
    """Milliseconds per execution of `code`, `iterations` times in a row."""
    timings: list[float] = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        _run_once(client, code, timeout)
        timings.append((time.perf_counter() - t0) * 1000.0)
    return timings


def serve(client: Any, timeout: float) -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("quit"):
            return
        try:
            samples = measure(client, str(request["code"]), int(request["iterations"]), timeout)
        except Exception as error:  # noqa: BLE001 - reported to the caller, who decides
            _emit({"ok": False, "error": f"{type(error).__name__}: {error}"})
        else:
            _emit({"ok": True, "samples_ms": samples})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", help="JSON list of code snippets (one-shot mode)")
    parser.add_argument("--serve", action="store_true", help="take requests on stdin")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-execution timeout, seconds")
    args = parser.parse_args()
    if args.serve == (args.snippets is not None):
        parser.error("give exactly one of --serve and --snippets")

    signal.signal(signal.SIGTERM, _terminate)

    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=args.kernel)
    client = None
    try:
        started = time.perf_counter()
        # The same in-memory IPython history runcell (and nbclient) give their kernels, so both
        # engines drive an identical kernel and the comparison measures the clients alone.
        km.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"])
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        start_ms = (time.perf_counter() - started) * 1000.0

        if args.serve:
            _emit({"ok": True, "start_ms": start_ms, "versions": _versions()})
            serve(client, args.timeout)
            return 0

        samples: dict[str, list[float]] = {}
        for code in json.loads(args.snippets):
            measure(client, code, args.warmup, args.timeout)
            samples[code] = measure(client, code, args.iterations, args.timeout)
        _emit({"ok": True, "start_ms": start_ms, "versions": _versions(), "samples_ms": samples})
        return 0
    finally:
        if client is not None:
            client.stop_channels()
            # Dropped now: at interpreter exit its __del__ would log through a torn-down logging.
            client = None
        if km.has_kernel:
            try:
                km.shutdown_kernel(now=False)
            except Exception as error:  # noqa: BLE001 - the kernel must not outlive this script
                print(f"polite shutdown failed ({error}); killing the kernel", file=sys.stderr)
                km.shutdown_kernel(now=True)


if __name__ == "__main__":
    sys.exit(main())
