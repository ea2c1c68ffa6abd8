"""Load on the HTTP service: N concurrent clients on loopback for a bounded time.

Starts ``osteolens serve`` (uvicorn, its own process, as deployed) on a free loopback port with
the shipped model, then each client (threads of this process) uploads real BTXRD radiographs in
a loop until the time is up. ``--server thread`` runs the app in this process instead, where the
clients compete with it for Python's GIL (slower; for comparison).
After one warm-up request per client (its slowest time reported as ``first_requests_max_ms``),
prints throughput, p50/p95/p99 latency and the error count; writes
benchmarks/results/service_load[_TAG].json. Target (issue 4): 0 errors, p95 under 300 ms at 8
concurrent clients on 2 cores.

Usage: python benchmarks/service_load.py [--clients 8] [--seconds 30] [--server process|thread] [--model M --tag T]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from machine import cpu_description
from osteolens.service.app import create_app, free_port, serve_in_background, wait_for_http

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--model", default="osteolens-radiograph")
    ap.add_argument("--concurrent", type=int, default=None, help="analyses the service runs at once (default: its own)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "btxrd256"))
    ap.add_argument("--server", choices=("process", "thread"), default="process")
    ap.add_argument("--tag", default="", help="suffix of the results file (service_load_<tag>.json)")
    args = ap.parse_args()
    images = [p.read_bytes() for p in sorted((Path(args.data) / "images").glob("*.png"))[:50]]
    proc = server = None
    if args.server == "thread":
        base, server = serve_in_background(create_app(args.model, api_keys={"bench"}, concurrent_analyses=args.concurrent))
    else:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "osteolens.cli", "serve", "--port", str(port), "--model", args.model,
                                 *(["--concurrent-analyses", str(args.concurrent)] if args.concurrent else [])],
                                env={**os.environ, "OSTEOLENS_API_KEYS": "bench"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        if not wait_for_http(base + "/healthz", 30.0):
            proc.kill()
            raise SystemExit("osteolens serve did not start")

    def first_requests() -> list[float]:
        """One request per client at once, before the clock starts: the server's cold start (first
        ONNX runs, lazy imports) is reported on its own, not mixed into the steady-state percentiles."""
        def one(k: int) -> float:
            with httpx.Client(base_url=base, headers={"X-API-Key": "bench"}, timeout=60) as c:
                t0 = time.perf_counter()
                c.post("/v1/analyses", files={"file": (f"warm{k}.png", images[k % len(images)])}).raise_for_status()
                return (time.perf_counter() - t0) * 1000

        with ThreadPoolExecutor(args.clients) as pool:
            return list(pool.map(one, range(args.clients)))

    cold = first_requests()
    deadline = time.perf_counter() + args.seconds

    def client(k: int):
        lat, errors, i = [], 0, k
        with httpx.Client(base_url=base, headers={"X-API-Key": "bench"}, timeout=30) as c:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/analyses", files={"file": (f"img{i}.png", images[i % len(images)])})
                    if r.status_code != 201:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                lat.append((time.perf_counter() - t0) * 1000)
                i += args.clients
        return lat, errors

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        results = list(pool.map(client, range(args.clients)))
    wall = time.perf_counter() - t0
    if server is not None:
        server.should_exit = True
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=10)
    lat = np.array([x for r in results for x in r[0]])
    errors = sum(r[1] for r in results)
    row = {"model": args.model, "clients": args.clients, "seconds": round(wall, 1), "requests": int(lat.size), "errors": int(errors),
           "throughput_per_s": round(lat.size / wall, 2), "p50_ms": round(float(np.percentile(lat, 50)), 1),
           "p95_ms": round(float(np.percentile(lat, 95)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
           "concurrent_analyses": args.concurrent or os.cpu_count(), "server": args.server, "cpu_count": os.cpu_count(),
           "first_requests_max_ms": round(max(cold), 1), "cpu": cpu_description()}
    print(" ".join(f"{k}={v}" for k, v in row.items()))
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"service_load{'_' + args.tag if args.tag else ''}.json").write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
