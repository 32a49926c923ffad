#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The records part's stand-in relayd (bench/README.md, part 8): connects to a
controld's relay.sock, says relay_hello, then sends connection records
(conn_records, common/ctl_proto.h) at RATE per second for SECONDS, in batches
of BATCH as relayd does, paced every 10 ms, spread over the tunnel ids given.
Everything controld sends back is read and dropped. Prints one JSON line:
records and messages sent, seconds taken, and how far behind the pace it fell.

Usage: recfeed.py RELAY_SOCK RATE SECONDS TUNNEL_ID[,TUNNEL_ID...] [BATCH]"""
import json
import os
import socket
import struct
import sys
import time


def main():
    path, rate, seconds, tids = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), \
        sys.argv[4].split(",")
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 96
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)

    def send(obj):
        data = json.dumps(obj, separators=(",", ":")).encode()
        s.sendall(struct.pack(">I", len(data)) + data)

    send({"type": "relay_hello", "version": 1, "pid": os.getpid(), "workers": 2,
          "ktls": "userspace (ktls = off)", "steering": "listeners", "online": []})
    s.setblocking(False)
    sent = msgs = 0
    behind_max = 0.0
    start = time.monotonic()
    seq = 0
    total = int(seconds * rate)

    def batch_of(n):
        nonlocal seq
        wall = int(time.time() * 1000)
        recs = []
        for _ in range(n):
            seq += 1
            recs.append({"tunnel_id": tids[seq % len(tids)], "kind": "tcp",
                         "port": 22000 + seq % 1000,
                         "src": f"198.51.{seq >> 8 & 255}.{seq & 255}",
                         "src_port": 1024 + seq % 60000, "start_ms": wall - 250,
                         "duration_ms": 250, "bytes_in": 100 + seq % 5000,
                         "bytes_out": 1000 + seq % 50000,
                         "reason": "done" if seq % 10 else "reset"})
        return {"type": "conn_records", "records": recs}

    while sent < total:
        el = time.monotonic() - start
        target = total if el >= seconds else min(int(el * rate), total)
        while target - sent >= batch or (el >= seconds and sent < total):
            n = min(batch, total - sent)
            s.setblocking(True)
            send(batch_of(n))
            s.setblocking(False)
            sent += n
            msgs += 1
        behind_max = max(behind_max, el - sent / rate)
        try:
            while s.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        time.sleep(0.005)
    took = time.monotonic() - start
    s.close()
    print(json.dumps({"sent": sent, "messages": msgs, "seconds": round(took, 3),
                      "behind_max_s": round(behind_max, 3)}), flush=True)


if __name__ == "__main__":
    main()
