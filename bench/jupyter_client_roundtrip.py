"""Warm execute round trips through jupyter_client's BlockingKernelClient.

Starts one kernel of the given kernelspec, then for each snippet runs a warm-up followed by the
measured iterations. Each iteration is timed from just before the execute_request is sent until
both its execute_reply and its iopub `idle` status have arrived (execute_interactive's completion
rule, the same one runcell's KernelExecutor uses).

Prints one JSON object on stdout: {"ok": true, "samples_ms": {snippet: [ms, ...]}, ...}.
Diagnostics go to stderr. The kernel is shut down on every exit path, SIGTERM included.

Usage: jupyter_client_roundtrip.py --snippets JSON_LIST [--iterations N] [--warmup N] [--kernel NAME]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any


def _terminate(signum: int, _frame: Any) -> None:
    # Turn SIGTERM into SystemExit so the `finally` below shuts the kernel down.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", required=True, help="JSON list of code snippets")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-execution timeout, seconds")
    args = parser.parse_args()
    snippets: list[str] = json.loads(args.snippets)

    signal.signal(signal.SIGTERM, _terminate)

    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=args.kernel)
    client = None
    try:
        started = time.perf_counter()
        km.start_kernel()
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        start_ms = (time.perf_counter() - started) * 1000.0

        samples: dict[str, list[float]] = {}
        for code in snippets:
            for _ in range(args.warmup):
                _run_once(client, code, args.timeout)
            timings: list[float] = []
            for _ in range(args.iterations):
                t0 = time.perf_counter()
                _run_once(client, code, args.timeout)
                timings.append((time.perf_counter() - t0) * 1000.0)
            samples[code] = timings

        json.dump(
            {"ok": True, "start_ms": start_ms, "versions": _versions(), "samples_ms": samples},
            sys.stdout,
        )
        sys.stdout.write("\n")
        return 0
    finally:
        if client is not None:
            client.stop_channels()
        if km.has_kernel:
            try:
                km.shutdown_kernel(now=False)
            except Exception as error:  # noqa: BLE001 - the kernel must not outlive this script
                print(f"polite shutdown failed ({error}); killing the kernel", file=sys.stderr)
                km.shutdown_kernel(now=True)


if __name__ == "__main__":
    sys.exit(main())
