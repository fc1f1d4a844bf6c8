#!/usr/bin/env python
"""Soak and load test of the Cat Scanner HTTP API (issue 10): starts the real server (`catscan serve`
on loopback, default settings), then

1. **base**: 16 clients, each posting real Oxford photos back to back, for 30 s: the server's
   throughput when nothing is refused (16 photos fit in its 2 + 16 places);
2. **load**: 100 clients for 60 s, plus slow clients: some trickle a photo's body at 5 bytes/s,
   some send the request headers and then nothing (both should get 408 and never hold up scans);
3. **after**: 10 s with no traffic, then the server's memory;
4. **base again**: the 16 clients once more (the machine's other load changes by the minute, so the
   reference is the mean of both base phases);
5. optionally (``--storm-seconds``) **storm**: 100 clients that ask again at once after a 503.

Clients honour ``Retry-After`` on a 503 (they wait that many seconds, times 1-1.5 so they do not all
come back at once), as the API asks; ``--ignore-retry-after`` makes them ask again at once, which is
the "503 storm" of issue 10 item 11. Half the requests are multipart form uploads (field ``file``),
half raw ``image/jpeg`` bodies. Every 200 must hold a scan result. Each client has its own keep-alive
connection and a minimal HTTP/1.1 client (so that the load generator, on the same 2 cores, takes
little CPU from the server: its CPU time is reported too).

It reports, per phase: successful scans per second, latency p50/p99 of successful scans, 503s (and
whether each carried ``Retry-After``), every other error, the slow clients' answers, the server's CPU
time per successful scan, and the server's RSS before, at its peak and after; the other processes'
CPU use during the run (a busy machine makes every figure pessimistic). Goals (issue 10): load
throughput >= 90 % of base, no error other than 503 with Retry-After, RSS after < 400 MB.

Run from the repository root with the venv active (httpx: the test extra installs it):

    python benchmarks/soak.py                                  # ~2.5 min, writes benchmarks/soak.json
    python benchmarks/soak.py --base-seconds 10 --seconds 20   # a shorter run
    python benchmarks/soak.py --storm-seconds 30                # and 30 s of clients ignoring Retry-After
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SCAN = "/api/v1/scan"


# ============================================================================ the server process
def proc_rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all processes have used (from /proc/stat: everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def top_processes(exclude: set[int], n: int = 5) -> list[str]:
    """The processes using the most CPU right now (``ps``), without ours."""
    out = subprocess.run(["ps", "-eo", "pid,pcpu,rss,etimes,args", "--sort=-pcpu"], capture_output=True,
                         text=True, check=False).stdout.splitlines()
    rows = []
    for line in out[1:]:
        pid, pcpu, _, _, command = line.split(None, 4)
        if int(pid) not in exclude and float(pcpu) >= 5 and not command.startswith("ps "):
            rows.append(" ".join(line.split())[:200])
    return rows[:n]


class Monitor(threading.Thread):
    """Samples the server's RSS every 0.25 s; ``mark`` names the current phase."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.phase, self.stop = pid, "start", threading.Event()
        self.peak_by_phase: dict[str, float] = {}

    def run(self) -> None:
        while not self.stop.wait(0.25):
            try:
                rss, _ = proc_rss_mb(self.pid)
            except (FileNotFoundError, ProcessLookupError, KeyError):
                return
            self.peak_by_phase[self.phase] = max(self.peak_by_phase.get(self.phase, 0.0), rss)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log_path: Path) -> tuple[subprocess.Popen, list[str]]:
    catscan = shutil.which("catscan", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if catscan is None:
        sys.exit("soak.py: 'catscan' not found: activate the venv (. .venv/bin/activate) or pip install -e .")
    cmd = [catscan, "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = log_path.open("wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), cmd


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 90.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if server.poll() is not None:
            sys.exit(f"soak.py: the server exited while starting (code {server.returncode}).")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return time.monotonic() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    sys.exit(f"soak.py: the server was not ready after {timeout:.0f} s.")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ============================================================================ the clients
@dataclass
class Tally:
    """What the clients of one phase saw."""

    start: float = 0.0
    end: float = 0.0
    ok_latencies: list[float] = field(default_factory=list)  # successful scans completed in the phase
    ok_late: int = 0  # successful scans of requests in flight at the end, completed after it
    busy_latencies: list[float] = field(default_factory=list)
    busy_with_retry_after: int = 0
    retry_after: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # everything else, by kind
    slow: Counter = field(default_factory=Counter)  # the slow clients' outcomes
    honour: bool = True  # the clients waited Retry-After after a 503

    def in_phase(self, t: float) -> bool:
        return self.start <= t <= self.end


def load_photos(count: int) -> list[tuple[str, bytes]]:
    data = Path(os.environ.get("CATSCAN_DATA", REPO.parent / "shared" / "data")) / "oxford-iiit-pet" / "images"
    if not data.is_dir():
        sys.exit(f"soak.py: no Oxford photos at {data}: set CATSCAN_DATA to the shared data folder.")
    names = sorted(p.name for p in data.glob("*.jpg"))
    step = max(1, len(names) // count)
    chosen = names[::step][:count]  # cats and dogs of every breed, the same ones every run
    return [(name, (data / name).read_bytes()) for name in chosen]


class Connection:
    """A minimal HTTP/1.1 keep-alive client on one connection (asyncio streams). httpx costs the load
    generator ~2 ms of CPU per request, which a 2-core machine takes from the server under test."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, message: bytes, timeout: float = 90.0) -> tuple[int, dict[str, str], bytes]:
        try:
            return await asyncio.wait_for(self._request(message), timeout)
        except BaseException:
            self.close()
            raise

    async def _request(self, message: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.reader is not None and self.reader.at_eof():
            # The server closed the idle connection (uvicorn's keep-alive timeout is 5 s, less than a
            # long Retry-After): open a new one, as HTTP clients do before reusing a connection.
            self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(message)
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def scan_requests(host: str, photos: list[tuple[str, bytes]]) -> list[bytes]:
    """For each photo, a raw ``image/jpeg`` POST and a multipart one (field ``file``), alternately."""
    out = []
    boundary = "catscansoak0a1b2c3d4e5f"
    for i, (name, data) in enumerate(photos):
        if i % 2:
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                    f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
            ctype = f"multipart/form-data; boundary={boundary}"
        else:
            body, ctype = data, "image/jpeg"
        out.append(f"POST {SCAN} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return out


async def client_loop(host: str, port: int, requests: list[bytes], tally: Tally, honour_retry_after: bool,
                      rng: random.Random, first: int) -> None:
    """One client on its own keep-alive connection, posting photos back to back."""
    conn = Connection(host, port)
    i = first
    try:
        while time.monotonic() < tally.end:
            message = requests[i % len(requests)]
            i += 1
            t0 = time.monotonic()
            try:
                status, headers, body = await conn.request(message)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as e:
                if time.monotonic() <= tally.end:
                    tally.errors[f"transport: {type(e).__name__}"] += 1
                await asyncio.sleep(0.1)
                continue
            t1 = time.monotonic()
            if not tally.in_phase(t1):
                tally.ok_late += status == 200
                break
            if status == 200:
                try:
                    ok = isinstance(json.loads(body).get("is_cat"), bool)
                except ValueError:
                    ok = False
                if ok:
                    tally.ok_latencies.append(t1 - t0)
                else:
                    tally.errors["200 without a scan result"] += 1
            elif status == 503:
                value = headers.get("retry-after", "")
                tally.busy_latencies.append(t1 - t0)
                if value.isdigit():
                    tally.busy_with_retry_after += 1
                    tally.retry_after[int(value)] += 1
                    wait = int(value)
                else:
                    tally.errors["503 without Retry-After"] += 1
                    wait = 1
                if honour_retry_after:
                    await asyncio.sleep(min(wait * rng.uniform(1.0, 1.5), max(0.0, tally.end - time.monotonic())))
            else:
                try:
                    code = json.loads(body)["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code = "?"
                tally.errors[f"HTTP {status} {code}"] += 1
    finally:
        conn.close()


async def read_status(reader: asyncio.StreamReader) -> int | None:
    line = await reader.readline()
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


async def slow_client(host: str, port: int, photo: bytes, tally: Tally, trickle: bool) -> None:
    """Sends ``POST /api/v1/scan`` headers, then either 5 bytes of the body a second (``trickle``) or
    nothing at all, until the server answers (408 expected) or the phase ends; then again."""
    head = (f"POST {SCAN} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(photo)}\r\n\r\n").encode()
    kind = "trickle" if trickle else "idle"
    while time.monotonic() < tally.end:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as e:
            tally.slow[f"{kind}: connect {type(e).__name__}"] += 1
            await asyncio.sleep(1)
            continue
        try:
            writer.write(head)
            await writer.drain()
            sent, status = 0, None
            while time.monotonic() < tally.end and status is None:
                if trickle and sent < len(photo):
                    writer.write(photo[sent:sent + 5])
                    sent += 5
                    await writer.drain()
                try:
                    status = await asyncio.wait_for(read_status(reader), 1.0)
                except TimeoutError:
                    continue
                if status is None:  # the server closed the connection
                    status = 0
            tally.slow[f"{kind}: {status if status is not None else 'open at the end'}"] += 1
        except OSError as e:
            tally.slow[f"{kind}: {type(e).__name__}"] += 1
        finally:
            writer.close()


async def run_phase(url: str, host: str, port: int, photos: list[tuple[str, bytes]], clients: int, seconds: float,
                    honour_retry_after: bool, trickle: int = 0, idle: int = 0, seed: int = 0) -> Tally:
    tally = Tally(honour=honour_retry_after)
    rng = random.Random(seed)
    tally.start = time.monotonic()
    tally.end = tally.start + seconds
    requests = scan_requests(host, photos)
    tasks = [client_loop(host, port, requests, tally, honour_retry_after, rng, first=k * 7) for k in range(clients)]
    tasks += [slow_client(host, port, photos[k][1], tally, trickle=True) for k in range(trickle)]
    tasks += [slow_client(host, port, photos[k][1], tally, trickle=False) for k in range(idle)]
    await asyncio.gather(*tasks)
    return tally


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summarize(tally: Tally, clients: int, seconds: float, wall_s: float, server_cpu_s: float, busy_s: float,
              own_cpu_s: float, extra: dict) -> dict:
    """The phase's figures; CPU times cover ``wall_s`` (the phase and its in-flight requests)."""
    ok = len(tally.ok_latencies)
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    others = max(0.0, busy_s - server_cpu_s - own_cpu_s)
    return {
        "clients": clients, "seconds": seconds, **extra,
        "ok": ok, "ok_per_s": round(ok / seconds, 2),
        "latency_ok_ms": {"p50": ms(percentile(tally.ok_latencies, 50)), "p99": ms(percentile(tally.ok_latencies, 99)),
                          "max": ms(max(tally.ok_latencies, default=None))},
        "busy_503": len(tally.busy_latencies), "busy_503_per_s": round(len(tally.busy_latencies) / seconds, 1),
        "busy_503_with_retry_after": tally.busy_with_retry_after,
        "busy_latency_p50_ms": ms(percentile(tally.busy_latencies, 50)),
        "retry_after_s": dict(sorted(tally.retry_after.items())),
        "errors": dict(tally.errors), "errors_total": sum(tally.errors.values()),
        "slow_clients": dict(sorted(tally.slow.items())),
        "measured_wall_s": round(wall_s, 1),
        "server_cpu_s": round(server_cpu_s, 1), "server_cores": round(server_cpu_s / wall_s, 2),
        "server_cpu_ms_per_ok": round(server_cpu_s / (ok + tally.ok_late) * 1000, 1) if ok else None,
        "clients_honour_retry_after": tally.honour,
        "load_client_cpu_s": round(own_cpu_s, 1),
        "other_processes_cores": round(others / wall_s, 2),
    }


def print_phase(name: str, p: dict) -> None:
    lat = p["latency_ok_ms"]
    print(f"{name:6s} {p['clients']:3d} clients {p['seconds']:.0f} s: {p['ok_per_s']:6.2f} scans/s ({p['ok']} ok), "
          f"p50 {lat['p50']} ms, p99 {lat['p99']} ms; 503: {p['busy_503']} ({p['busy_503_per_s']}/s, "
          f"{p['busy_503_with_retry_after']} with Retry-After {p['retry_after_s']}); errors {p['errors'] or 0}; "
          f"server {p['server_cores']} cores, {p['server_cpu_ms_per_ok']} ms CPU/scan; other processes "
          f"{p['other_processes_cores']} cores")
    if p["slow_clients"]:
        print(f"       slow clients: {p['slow_clients']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-clients", type=int, default=16)
    ap.add_argument("--base-seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--trickle", type=int, default=4, help="slow clients sending 5 bytes/s during the load phase")
    ap.add_argument("--idle", type=int, default=4, help="slow clients sending headers then nothing")
    ap.add_argument("--settle", type=float, default=10, help="seconds without traffic before the 'after' RSS")
    ap.add_argument("--photos", type=int, default=60, help="distinct Oxford photos to send")
    ap.add_argument("--ignore-retry-after", action="store_true", help="ask again at once after a 503")
    ap.add_argument("--storm-seconds", type=float, default=0,
                    help="then this long with --clients clients that ignore Retry-After (not part of the goals)")
    ap.add_argument("--no-base-again", dest="base_again", action="store_false",
                    help="skip the second base phase (after the load; the reference is the mean of both)")
    ap.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    ap.add_argument("--json-out", default=str(REPO / "benchmarks" / "soak.json"))
    args = ap.parse_args()

    photos = load_photos(args.photos)
    port = args.port or free_port()
    host, url = "127.0.0.1", f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="catscan-soak-"))
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    server, cmd = start_server(port, workdir / "server.log")
    me = {os.getpid(), server.pid}
    others_before = top_processes(me)
    report: dict = {}
    try:
        ready_s = wait_ready(url, server)
        r = httpx.post(url + SCAN, content=photos[0][1], headers={"Content-Type": "image/jpeg"}, timeout=60)
        if r.status_code != 200 or "is_cat" not in r.json():
            sys.exit(f"soak.py: the check scan answered {r.status_code}: {r.text[:300]}")
        rss_ready, _ = proc_rss_mb(server.pid)
        print(f"server ready in {ready_s:.1f} s (pid {server.pid}, {rss_ready:.0f} MB); {len(photos)} photos; "
              f"load average {load_before[0]:.2f}; clients {'ignore' if args.ignore_retry_after else 'honour'} "
              f"Retry-After")
        monitor = Monitor(server.pid)
        monitor.start()

        def measured(name: str, honour: bool = not args.ignore_retry_after, **kw) -> dict:
            monitor.phase = name
            t0, cpu0, busy0, own0 = time.monotonic(), proc_cpu_s(server.pid), machine_busy_s(), time.process_time()
            tally = asyncio.run(run_phase(url, host, port, photos, honour_retry_after=honour, **kw))
            t1, cpu1, busy1, own1 = time.monotonic(), proc_cpu_s(server.pid), machine_busy_s(), time.process_time()
            extra = {"slow_trickle": kw.get("trickle", 0), "slow_idle": kw.get("idle", 0)}
            return summarize(tally, kw["clients"], kw["seconds"], t1 - t0, cpu1 - cpu0, busy1 - busy0, own1 - own0,
                             extra)

        measured("warmup", clients=2, seconds=5)
        base = measured("base", clients=args.base_clients, seconds=args.base_seconds)
        print_phase("base", base)
        load = measured("load", clients=args.clients, seconds=args.seconds, trickle=args.trickle, idle=args.idle, seed=1)
        print_phase("load", load)
        monitor.phase = "after"
        time.sleep(args.settle)
        rss_after, hwm = proc_rss_mb(server.pid)
        healthy = httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        final = httpx.post(url + SCAN, content=photos[1][1], headers={"Content-Type": "image/jpeg"}, timeout=60)
        phases = {"base": base, "load": load}
        if args.base_again:  # the machine's other load changes by the minute: measure the reference twice
            phases["base_again"] = measured("base_again", clients=args.base_clients, seconds=args.base_seconds)
            print_phase("base 2", phases["base_again"])
        if args.storm_seconds:  # issue 10 item 11: clients that ask again at once after a 503
            phases["storm"] = measured("storm", honour=False, clients=args.clients, seconds=args.storm_seconds)
            print_phase("storm", phases["storm"])
        monitor.stop.set()
        others_after = top_processes(me)
        load_after = os.getloadavg()

        reference = sum(phases[k]["ok_per_s"] for k in ("base", "base_again") if k in phases) / (1 + args.base_again)
        ratio = load["ok_per_s"] / reference if reference else 0.0
        errors = sum(p["errors_total"] for p in phases.values())
        report = {
            "tool": "benchmarks/soak.py", "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date_utc": started.isoformat(timespec="seconds"), "commit": _git_commit(),
            "server": {"command": " ".join(Path(cmd[0]).name if i == 0 else a for i, a in enumerate(cmd)),
                       "ready_s": round(ready_s, 2), "workers": "default (one per core)", "cpu_count": os.cpu_count()},
            "clients_honour_retry_after": not args.ignore_retry_after,
            "photos": {"count": len(photos), "mean_bytes": int(sum(len(d) for _, d in photos) / len(photos)),
                       "source": "Oxford-IIIT Pet images, every k-th file by name"},
            "phases": phases, "base_ok_per_s_mean": round(reference, 2),
            "rss_mb": {"ready": round(rss_ready), "peak_base": round(monitor.peak_by_phase.get("base", 0)),
                       "peak_load": round(monitor.peak_by_phase.get("load", 0)), "peak_hwm": round(hwm),
                       "after": round(rss_after), "settle_s": args.settle,
                       "end": round(proc_rss_mb(server.pid)[0])},
            "after": {"healthz_ok": healthy, "scan_status": final.status_code},
            "machine": {"load_average_before": [round(v, 2) for v in load_before],
                        "load_average_after": [round(v, 2) for v in load_after],
                        "other_processes_before": others_before, "other_processes_after": others_after},
            "goals": {"throughput_ratio": round(ratio, 3), "throughput_ratio_ok": ratio >= 0.9,
                      "errors_other_than_503_with_retry_after": errors, "errors_ok": errors == 0,
                      "rss_after_ok": rss_after < 400},
        }
    finally:
        stop_server(server)
    print(f"after  {args.settle:.0f} s idle: RSS {rss_after:.0f} MB (ready {rss_ready:.0f}, peak {hwm:.0f}); "
          f"healthz {'ok' if healthy else 'NOT ok'}, a scan answers {final.status_code}")
    g = report["goals"]
    print(f"goals  throughput under load / base (mean of {1 + args.base_again}) = {g['throughput_ratio']:.2f} ({'met' if g['throughput_ratio_ok'] else 'MISSED'}, "
          f">= 0.90); errors other than 503 + Retry-After: {g['errors_other_than_503_with_retry_after']} "
          f"({'met' if g['errors_ok'] else 'MISSED'}); RSS after {rss_after:.0f} MB "
          f"({'met' if g['rss_after_ok'] else 'MISSED'}, < 400 MB)")
    print(f"other processes on the machine: load average {load_before[0]:.2f} -> {load_after[0]:.2f}; "
          + "; ".join(others_before[:3]))
    Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON written to {args.json_out}")
    shutil.rmtree(workdir, ignore_errors=True)


def _git_commit() -> str | None:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or None


if __name__ == "__main__":
    main()
