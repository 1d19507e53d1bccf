"""Load test of attngan-serve on loopback: ``--requests`` POST /v1/generate from ``--clients``
concurrent clients (one caption, one image each, PNG URLs), against the server started as
a subprocess, first with micro-batching (``--max-batch``) and then one request per
generator call (``--max-batch 1``). Prints throughput (requests/s = captions/s), latency
percentiles, responses by status, the server's RSS after warm-up, after the run and at its
peak, and batching's speed-up over one-at-a-time.

    python scripts/bench_serve.py                        # the demo's generator (make demo), CPU
    python scripts/bench_serve.py --random-weights       # a random generator of the demo's shape
    python scripts/bench_serve.py --cfg cfg/eval_bird.yml --random-weights --gpu 0 --stages 256

Without the config's checkpoints (or with --random-weights) the generator and text encoder
get random weights of the config's shape, on a small generated shapes vocabulary: the cost
of a call does not depend on the weights. The warm-up fills the image store (its bounds
are set to what the warm-up writes), so RSS after the run shows whether memory stays flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

from benchmark import make_random_model  # noqa: E402  (scripts/benchmark.py: shapes data, random weights)

from attngan.config import load_config  # noqa: E402
from attngan.sampling import read_caption_file, read_example_list  # noqa: E402


def rss_mb(pid: int) -> dict[str, float]:
    """The process's resident set now (VmRSS) and at its peak (VmHWM), in MiB (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[name].split()[0]) / 1024 for key, name in (("rss", "VmRSS"), ("peak", "VmHWM"))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, bodies: list[dict], clients: int) -> tuple[list[int], list[float], float]:
    """``bodies`` posted by ``clients`` concurrent clients, each sending its next request
    when the last is answered -> (statuses, latencies in s, wall seconds)."""
    statuses, latencies = [0] * len(bodies), [0.0] * len(bodies)
    queue = iter(range(len(bodies)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def worker():
            for i in queue:
                start = time.perf_counter()
                response = await client.post("/v1/generate", json=bodies[i])
                latencies[i], statuses[i] = time.perf_counter() - start, response.status_code

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
    return statuses, latencies, time.perf_counter() - start


def run_server(argv: list[str], captions: list[str], args, requests: int) -> dict:
    """Start attngan-serve with ``argv``, warm it up, measure ``requests``; returns the numbers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "attngan.serve",
        *argv,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "code")})
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            deadline = time.monotonic() + 300
            while True:
                if server.poll() is not None:
                    sys.exit(f"attngan-serve exited with status {server.returncode}: {' '.join(command)}")
                try:
                    if client.get("/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit("attngan-serve did not answer within 300 s")
                time.sleep(0.2)
            info = client.get("/v1/info").json()
            rng = np.random.default_rng(0)

            def bodies(n: int, offset: int) -> list[dict]:
                body = {"n": 1, "format": "url", "attention": args.attention}
                if args.stages:
                    body["stages"] = args.stages
                return [
                    {**body, "captions": [captions[int(rng.integers(len(captions)))]], "seed": offset + i}
                    for i in range(n)
                ]

            asyncio.run(load(url, bodies(args.warmup, 10**6), args.clients))
            after_warmup = rss_mb(server.pid)["rss"]
            before = client.get("/v1/health").json()["batching"]
            statuses, latencies, wall = asyncio.run(load(url, bodies(requests, 0), args.clients))
            memory = rss_mb(server.pid)
            after = client.get("/v1/health").json()
    finally:
        server.terminate()
        server.wait(60)
    batches = after["batching"]["batches"] - before["batches"]
    rows = after["batching"]["rows"] - before["rows"]
    ok = [lat for lat, status in zip(latencies, statuses) if status == 200]
    return {
        "requests": requests,
        "clients": args.clients,
        "seconds": round(wall, 2),
        "server": {
            "max_batch": info["limits"]["max_batch"],
            "torch_threads": info["torch_threads"],
            "omp_wait_policy": info["omp_wait_policy"],
            "render_threads": info["limits"]["render_threads"],
        },
        "throughput_per_s": round(requests / wall, 2),
        "latency_ms": {f"p{q}": round(float(np.percentile(ok, q)) * 1000, 1) for q in (50, 95, 99)} if ok else {},
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "generator_calls": batches,
        "mean_batch_rows": round(rows / max(batches, 1), 2),
        "rss_mb": {
            "after_warmup": round(after_warmup, 1),
            "after_run": round(memory["rss"], 1),
            "peak": round(memory["peak"], 1),
        },
        "store": after["store"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default="cfg/eval_shapes.yml", help="the served config (default: the demo's)")
    parser.add_argument("--gpu", type=int, default=-1)
    parser.add_argument("--random-weights", action="store_true", help="random weights of the config's shape")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--single-requests", type=int, default=300, help="requests of the one-at-a-time run")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200, help="requests before measuring (they fill the store)")
    parser.add_argument("--max-batch", type=int, default=None, help="default: the server's (16 on the CPU, 32 on CUDA)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=None, help="the server's PyTorch threads (default: its own)")
    parser.add_argument("--stages", type=int, nargs="*", default=None, help="image sizes asked for (default all)")
    parser.add_argument("--attention", action="store_true", help="ask for the word maps too")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()

    cfg = load_config(ROOT / args.cfg)
    cfg.DATA_DIR, cfg.TRAIN.NET_G, cfg.TRAIN.NET_E = (
        str(ROOT / p) for p in (cfg.DATA_DIR, cfg.TRAIN.NET_G, cfg.TRAIN.NET_E)
    )
    with tempfile.TemporaryDirectory() as tmp:
        trained = all(Path(p).exists() for p in (cfg.DATA_DIR, cfg.TRAIN.NET_G, cfg.TRAIN.NET_E))
        if args.random_weights or not trained:
            make_random_model(cfg, Path(tmp), num_images=20)
        weights = "trained" if trained and not args.random_weights else "random"
        sentences, _ = read_caption_file(Path(cfg.DATA_DIR) / f"{read_example_list(cfg.DATA_DIR)[0]}.txt")
        base = [
            "--cfg",
            str(ROOT / args.cfg),
            "--gpu",
            str(args.gpu),
            "--data_dir",
            cfg.DATA_DIR,
            "--max-queue",
            str(4 * args.clients),
            "--set",
            f"TRAIN.NET_G={cfg.TRAIN.NET_G}",
            f"TRAIN.NET_E={cfg.TRAIN.NET_E}",
            f"DATASET_NAME={cfg.DATASET_NAME}",
        ]
        if args.threads:
            base += ["--threads", str(args.threads)]
        images_per_request = len(args.stages) if args.stages else cfg.TREE.BRANCH_NUM
        store = ["--store-images", str(args.warmup * images_per_request)]
        print(
            f"[bench_serve] {args.cfg} ({weights} weights, {cfg.TRAIN.NET_G}) on "
            f"{'cpu' if args.gpu < 0 else f'cuda:{args.gpu}'}, {os.cpu_count()} CPUs, torch {torch.__version__}",
            flush=True,
        )
        results = {
            "config": args.cfg,
            "weights": weights,
            "gpu": args.gpu,
            "stages": args.stages,
            "attention": args.attention,
            "max_wait_ms": args.max_wait_ms,
            "batched": run_server(
                base
                + store
                + (["--max-batch", str(args.max_batch)] if args.max_batch else [])
                + ["--max-wait-ms", str(args.max_wait_ms)],
                sentences,
                args,
                args.requests,
            ),
            "one_at_a_time": run_server(
                base + store + ["--max-batch", "1", "--max-wait-ms", "0"], sentences, args, args.single_requests
            ),
        }
    batched, single = results["batched"], results["one_at_a_time"]
    results["speedup"] = round(batched["throughput_per_s"] / single["throughput_per_s"], 2)
    for name, r in (("batched", batched), ("one at a time", single)):
        lat, mem = r["latency_ms"], r["rss_mb"]
        print(
            f"[bench_serve] {name} (max batch {r['server']['max_batch']}, {r['server']['torch_threads']} PyTorch "
            f"threads): {r['requests']} requests from {r['clients']} clients in {r['seconds']} s = "
            f"{r['throughput_per_s']} captions/s; latency p50 {lat.get('p50')} ms, p95 {lat.get('p95')} ms, "
            f"p99 {lat.get('p99')} ms; statuses {r['statuses']}; {r['generator_calls']} generator calls of "
            f"{r['mean_batch_rows']} images on average; RSS {mem['after_warmup']} MiB after warm-up, "
            f"{mem['after_run']} MiB after the run ({(mem['after_run'] / mem['after_warmup'] - 1) * 100:+.1f} %), "
            f"peak {mem['peak']} MiB"
        )
    print(f"[bench_serve] batching's throughput: {results['speedup']}x one-at-a-time")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
