#!/usr/bin/env python3
"""scripts/lib/bench_start.py — time from exec of `boxoffice serve` to its first answer.

Used by scripts/bench.sh (suite `start`). Spawns the server on 127.0.0.1 with the given
database URL (a fresh database: migrations run as part of the start), then polls
`GET /healthz` with raw sockets every ~5 ms until the first 200, and stops the server
(TERM, then KILL after 15 s). Every poll and the whole start are bounded in time.

Usage: bench_start.py BINARY DATABASE_URL WORKDIR LOG [EXTRA_SERVE_ARGS...]
Prints one line: BENCH_START ms=<float> rss_kb=<VmRSS right after the first answer>
Exits non-zero when the server does not answer within 30 s or dies.
"""

import os
import signal
import socket
import subprocess
import sys
import time

POLL_S = 0.005
LIMIT_S = 30.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def healthz_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(0.5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            return head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def vm_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def stop(proc):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def main():
    binary, url, workdir, log = sys.argv[1:5]
    extra = sys.argv[5:]
    port = free_port()
    args = [binary, "serve", "--database-url", url, "--listen", f"127.0.0.1:{port}", *extra]
    with open(log, "ab") as logf:
        t0 = time.monotonic()
        proc = subprocess.Popen(args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True)
        try:
            while True:
                if healthz_ok(port):
                    ms = (time.monotonic() - t0) * 1000
                    print("BENCH_START ms=%.1f rss_kb=%d" % (ms, vm_rss_kb(proc.pid)), flush=True)
                    return 0
                if proc.poll() is not None:
                    print(f"server exited with {proc.returncode} before answering", file=sys.stderr)
                    return 1
                if time.monotonic() - t0 > LIMIT_S:
                    print(f"no 200 from /healthz within {LIMIT_S:.0f} s", file=sys.stderr)
                    return 1
                time.sleep(POLL_S)
        finally:
            stop(proc)


if __name__ == "__main__":
    sys.exit(main())
