"""Load on the HTTP service: N concurrent clients on loopback for a bounded time.

Starts ``osteolens serve``'s app (uvicorn, one process) on a free loopback port with the
shipped model, then each client uploads real BTXRD radiographs in a loop until the time is up.
Prints throughput, p50/p95/p99 latency and the error count; writes
benchmarks/results/service_load.json. Target (issue 4): 0 errors, p95 under 300 ms at 8
concurrent clients on 2 cores.

Usage: python benchmarks/service_load.py [--clients 8] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from osteolens.service.app import create_app, serve_in_background

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--model", default="osteolens-radiograph")
    ap.add_argument("--concurrent", type=int, default=1, help="analyses the service runs at once")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "btxrd256"))
    args = ap.parse_args()
    images = [p.read_bytes() for p in sorted((Path(args.data) / "images").glob("*.png"))[:50]]
    app = create_app(args.model, api_keys={"bench"}, concurrent_analyses=args.concurrent)
    base, server = serve_in_background(app)
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
    server.should_exit = True
    lat = np.array([x for r in results for x in r[0]])
    errors = sum(r[1] for r in results)
    row = {"clients": args.clients, "seconds": round(wall, 1), "requests": int(lat.size), "errors": int(errors),
           "throughput_per_s": round(lat.size / wall, 2), "p50_ms": round(float(np.percentile(lat, 50)), 1),
           "p95_ms": round(float(np.percentile(lat, 95)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
           "concurrent_analyses": args.concurrent, "cpu_count": os.cpu_count()}
    print(" ".join(f"{k}={v}" for k, v in row.items()))
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "service_load.json").write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
