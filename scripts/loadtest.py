"""Bounded load test of ``mobilesam serve``: concurrent prompt requests, latency and errors.

Runs only against 127.0.0.1 / localhost and stops by itself after ``--requests``
prompt requests. Without ``--url`` it starts its own server in this process
(with ``--checkpoint FILE`` or ``--random-weights``).

    python scripts/loadtest.py --random-weights --clients 20 --requests 400
    python scripts/loadtest.py --url http://127.0.0.1:8000 --clients 20 --requests 400

A fraction of the requests (``--bad-fraction``) is deliberately invalid; those
must be answered with a 4xx. Exit status 1 if any request got a 5xx, an
unexpected status or no answer; a 503 with ``Retry-After`` (the service busy)
is counted apart and is not a failure.

Mixed load: ``--job-clients N`` adds N clients that, while the prompt clients
run, submit segment-everything jobs (``POST .../everything/jobs``, each with
options not seen before so no cached result answers it), poll them to the end
and submit the next; the summary adds job throughput and their 503s.

    python scripts/loadtest.py --random-weights --clients 10 --job-clients 2 --requests 300
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_IMAGES = ["dog.jpg", "truck.jpg", "groceries.jpg"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--url", default=None, help="running server (127.0.0.1 only); default: start one"
    )
    p.add_argument("--model", default="vit_t", help="model for the built-in server")
    p.add_argument("--checkpoint", default=None, help="weights for the built-in server")
    p.add_argument("--random-weights", action="store_true", help="built-in server, random weights")
    p.add_argument(
        "--backend",
        default="auto",
        help="built-in server's backend, as `mobilesam serve --backend` (default auto)",
    )
    p.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    p.add_argument("--requests", type=int, default=400, help="prompt requests in all (default 400)")
    p.add_argument("--job-clients", type=int, default=0, help="segment-everything job clients")
    p.add_argument("--points-per-side", type=int, default=32, help="grid of the jobs (default 32)")
    p.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause of a prompt client between requests (drawn from 0.5-1.5x this, and "
        "each client starts at a random moment within one pause, as people do)",
    )
    p.add_argument(
        "--lockstep",
        action="store_true",
        help="every pause exactly --think-ms and all clients starting together: clicks "
        "arrive in bursts of --clients at once (a worst case, not how people click)",
    )
    p.add_argument("--bad-fraction", type=float, default=0.1, help="share of invalid requests")
    p.add_argument("--images", nargs="*", default=None, help="image files to upload")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the summary here")
    p.add_argument("--plot", default=None, help="write a latency histogram PNG here")
    args = p.parse_args(argv)
    if not 1 <= args.clients <= 64:
        p.error("--clients must be 1-64")
    if not 0 <= args.job_clients <= 8:
        p.error("--job-clients must be 0-8")
    if not 1 <= args.requests <= 5000:
        p.error("--requests must be 1-5000")
    if not 0.0 <= args.bad_fraction <= 0.5:
        p.error("--bad-fraction must be 0-0.5")
    if args.url is None and not (args.checkpoint or args.random_weights):
        p.error("give --url, or --checkpoint / --random-weights for the built-in server")
    if args.url is not None and urlparse(args.url).hostname not in LOCAL_HOSTS:
        p.error("this load test only runs against 127.0.0.1 / localhost")
    return args


def start_server(args: argparse.Namespace) -> tuple[str, object]:
    import uvicorn

    from mobilesam.backends.predictor import Predictor
    from mobilesam.serve import create_app, service_options

    predictor = Predictor.load(
        args.model, args.checkpoint, backend=args.backend, random_weights=args.random_weights
    )
    options = service_options(predictor)
    print(f"backend: {predictor.backend} (prompt decoder: {options['decoder']})", flush=True)
    weights = "random" if args.random_weights else args.checkpoint
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(options.pop("model"), model_name=args.model, weights=str(weights), **options)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    server.thread = thread  # joined at the end: shutdown waits for running jobs to stop
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def cpu_description() -> str:
    """This machine's CPU model and the flags that decide the backends (record with every run)."""
    from mobilesam.backends.cpu import cpu_signature

    return cpu_signature()


def default_images() -> list[Path]:
    shared = Path(__file__).resolve().parents[2] / "shared" / "images"
    return [shared / n for n in DEFAULT_IMAGES if (shared / n).is_file()]


def make_request(rng: random.Random, images: list[dict], bad: bool) -> tuple[str, dict, bool]:
    """(image id, JSON body, expect_error) for one prompt request."""
    img = rng.choice(images)
    w, h = img["width"], img["height"]

    def pt() -> list[float]:
        return [rng.uniform(0, w), rng.uniform(0, h)]

    if bad:
        kind = rng.randrange(4)
        if kind == 0:
            return img["image_id"], {"points": [[w + 10, h / 2]], "labels": [1]}, True
        if kind == 1:
            return "0" * 32, {"points": [pt()], "labels": [1]}, True
        if kind == 2:
            return img["image_id"], {"points": [pt()], "labels": [3]}, True
        return img["image_id"], {"points": "middle", "labels": [1]}, True
    kind = rng.randrange(3)
    if kind == 0:
        body = {"points": [pt()], "labels": [1]}
    elif kind == 1:
        body = {"points": [pt(), pt()], "labels": [1, 0], "multimask": False}
    else:
        x0, y0 = pt()
        body = {"box": [x0, y0, rng.uniform(x0, w), rng.uniform(y0, h)], "multimask": False}
    return img["image_id"], body, False


def run(args: argparse.Namespace) -> tuple[dict, np.ndarray]:
    import httpx

    server = None
    url = args.url
    if url is None:
        print("starting a server ...", flush=True)
        url, server = start_server(args)
    paths = [Path(p) for p in args.images] if args.images else default_images()
    if not paths:
        raise SystemExit("no images: pass --images FILE ...")
    with httpx.Client(base_url=url, timeout=120) as c:
        health = c.get("/health").json()
        images = []
        for path in paths:
            t0 = time.perf_counter()
            r = c.post("/api/images", files={"file": (path.name, path.read_bytes())})
            r.raise_for_status()
            info = r.json()
            print(
                f"uploaded {path.name}: {info['width']}x{info['height']}, encode "
                f"{info['encode_ms']:.0f} ms, request {1000 * (time.perf_counter() - t0):.0f} ms"
            )
            images.append(info)

    rng = random.Random(args.seed)
    plan = [
        make_request(rng, images, rng.random() < args.bad_fraction) for _ in range(args.requests)
    ]
    results: list[tuple[bool, int, float]] = []  # (expect_error, status or -1, seconds)
    lock = threading.Lock()

    think_s = args.think_ms / 1000.0

    def pause(r: random.Random) -> float:
        return think_s if args.lockstep else think_s * r.uniform(0.5, 1.5)

    def client(worker: int) -> None:
        r = random.Random(args.seed * 1000 + worker)
        if think_s and not args.lockstep:
            time.sleep(r.uniform(0.0, think_s))
        with httpx.Client(base_url=url, timeout=120) as c:
            for i in range(worker, len(plan), args.clients):
                image_id, body, expect_error = plan[i]
                t0 = time.perf_counter()
                try:
                    status = c.post(f"/api/images/{image_id}/predict", json=body).status_code
                except httpx.HTTPError:
                    status = -1
                with lock:
                    results.append((expect_error, status, time.perf_counter() - t0))
                if think_s:
                    time.sleep(pause(r))

    stop = threading.Event()
    jobs: list[tuple[str, float]] = []  # (final status, seconds from submission)
    job_calls: list[int] = []  # status of every job submission and poll

    def job_client(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            n = 0
            while not stop.is_set():
                n += 1
                image = images[(worker + n) % len(images)]
                # A threshold never asked before: the per-image result cache cannot answer.
                body = {
                    "points_per_side": args.points_per_side,
                    "pred_iou_thresh": round(0.8 + 0.1 * ((worker * 7919 + n) % 1000) / 1000, 4),
                }
                t0 = time.perf_counter()
                try:
                    r = c.post(f"/api/images/{image['image_id']}/everything/jobs", json=body)
                except httpx.HTTPError:
                    job_calls.append(-1)
                    continue
                job_calls.append(r.status_code)
                if r.status_code == 503:
                    stop.wait(float(r.headers.get("retry-after", "1")))
                    continue
                if r.status_code != 202:
                    continue
                job_id = r.json()["job_id"]
                status = r.json()["status"]
                while status in ("queued", "running"):
                    if stop.wait(0.5):
                        c.delete(f"/api/jobs/{job_id}")
                        status = "stopped"
                        break
                    r = c.get(f"/api/jobs/{job_id}")
                    job_calls.append(r.status_code)
                    status = r.json()["status"] if r.status_code == 200 else "lost"
                with lock:
                    jobs.append((status, time.perf_counter() - t0))

    print(
        f"{args.requests} prompt requests from {args.clients} clients, "
        f"{args.job_clients} segment-everything job clients ...",
        flush=True,
    )
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    job_threads = [threading.Thread(target=job_client, args=(w,)) for w in range(args.job_clients)]
    for t in job_threads:
        t.start()
    if job_threads:
        time.sleep(2.0)  # let the jobs start before the clicks are measured
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(client, range(args.clients)))
    wall = time.perf_counter() - t0
    stop.set()
    for t in job_threads:
        t.join()
    if server is not None:
        server.should_exit = True
        server.thread.join(timeout=120)

    good = np.array([s for e, st, s in results if not e and st == 200]) * 1000.0
    summary = {
        "url": url,
        "model": health["model"],
        "weights": health["weights"],
        "decoder": health.get("decoder"),
        "image_size": health["image_size"],
        "images": [f"{i['width']}x{i['height']}" for i in images],
        "clients": args.clients,
        "cpus": os.cpu_count(),
        "cpu": cpu_description(),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "requests": len(results),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(results) / wall, 1),
        "ok_200": int(sum(1 for e, st, _ in results if not e and st == 200)),
        "expected_4xx": int(sum(1 for e, st, _ in results if e and 400 <= st < 500)),
        "status_503_busy": int(sum(1 for _, st, _ in results if st == 503)),
        "status_5xx": int(sum(1 for _, st, _ in results if st >= 500 and st != 503)),
        "no_answer": int(sum(1 for _, st, _ in results if st == -1)),
        "unexpected": int(
            sum(
                1
                for e, st, _ in results
                if st != 503 and ((st != 200 and not e) or (e and not 400 <= st < 500))
            )
        ),
        "latency_ms": {
            k: round(float(np.percentile(good, q)), 1) if len(good) else None
            for k, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        },
        "job_clients": args.job_clients,
        "think_ms": args.think_ms,
        "lockstep": args.lockstep,
    }
    if args.job_clients:
        done = [sec for st, sec in jobs if st == "done"]
        summary["jobs"] = {
            "points_per_side": args.points_per_side,
            "done": len(done),
            "other_end": sorted({st for st, _ in jobs if st != "done"}),
            "per_minute": round(60.0 * len(done) / wall, 2),
            "mean_s": round(float(np.mean(done)), 2) if done else None,
            "status_503_queue_full": int(sum(1 for st in job_calls if st == 503)),
            "status_5xx": int(sum(1 for st in job_calls if st >= 500 and st != 503)),
            "no_answer": int(sum(1 for st in job_calls if st == -1)),
        }
    return summary, good


def plot(latencies_ms: np.ndarray, summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    ax.hist(latencies_ms, bins=40, color="#1e90ff")
    for k, style in (("p50", "-"), ("p99", "--")):
        v = summary["latency_ms"][k]
        ax.axvline(v, color="k", linestyle=style, linewidth=1)
        ax.text(v, ax.get_ylim()[1] * 0.92, f" {k} {v:.0f} ms", fontsize=8)
    ax.set_xlabel("prompt request latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title(
        f"{summary['model']} ({summary['weights']}), {summary['clients']} clients, "
        f"{summary['requests']} requests, {summary['status_5xx']} 5xx",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary, latencies = run(args)
    lat = summary["latency_ms"]
    print(
        f"\n{'requests':>10} {'ok':>6} {'4xx(bad)':>9} {'5xx':>5} {'unexp':>6} "
        f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'req/s':>7}"
    )
    print(
        f"{summary['requests']:>10} {summary['ok_200']:>6} {summary['expected_4xx']:>9} "
        f"{summary['status_5xx']:>5} {summary['unexpected']:>6} {lat['p50']:>8} {lat['p90']:>8} "
        f"{lat['p99']:>8} {lat['max']:>8} {summary['throughput_rps']:>7}"
    )
    print(
        f"(machine: {summary['cpus']} CPUs, 1-min load average {summary['load_avg_1min'][0]} "
        f"before, {summary['load_avg_1min'][1]} after)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    if args.plot and len(latencies):
        plot(latencies, summary, args.plot)
        print(f"histogram: {args.plot}")
    if "jobs" in summary:
        j = summary["jobs"]
        print(
            f"jobs: {j['done']} done ({j['per_minute']}/min, mean {j['mean_s']} s), "
            f"503 queue full {j['status_503_queue_full']}, 5xx {j['status_5xx']}, "
            f"no answer {j['no_answer']}; clicks answered 503 busy: {summary['status_503_busy']}"
        )
    failed = summary["status_5xx"] + summary["unexpected"] + summary["no_answer"]
    failed += summary.get("jobs", {}).get("status_5xx", 0) + summary.get("jobs", {}).get(
        "no_answer", 0
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
