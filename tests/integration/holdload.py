# SPDX-License-Identifier: Apache-2.0
"""The two processes of test_scale.py (each in its own process: one process
holding 10,000 sockets on each side would pass the machine's open-file limit).

    holdload.py echo              an echo service; prints its port, serves until stdin closes
    holdload.py hold PORT N SRC   N connections to PORT from SRC source addresses
                                  (127.0.0.2 and up), each echoing its own byte; prints
                                  one JSON line when all are decided, then holds them and
                                  echoes a second byte on every one served when stdin
                                  gets a line; prints a second JSON line
"""
import asyncio
import json
import resource
import sys


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def echo_main():
    async def serve(r, w):
        try:
            while True:
                d = await r.read(4096)
                if not d:
                    break
                w.write(d)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        w.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=4096)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    srv.close()


async def hold_main(port, n, sources):
    res = {"served": 0, "refused": 0, "hung": 0, "bad": 0, "other": [],
           "slowest_refusal": 0.0}
    held = {}
    loop = asyncio.get_running_loop()
    # at most 500 opening at once: new connections come as a ramp (every one
    # waits for its data link while the client opens links, pending_timeout 10 s)
    opening = asyncio.Semaphore(500)

    async def one(i):
        b = bytes([1 + i % 251])
        t = None
        try:
            async with opening:  # until its first echo: a ramp, not one burst
                r, w = await asyncio.wait_for(asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(f"127.0.0.{2 + i % sources}", 0)), 15)
                t = loop.time()
                w.write(b)
                await w.drain()
                d = await asyncio.wait_for(r.readexactly(1), 20)
        except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError,
                asyncio.IncompleteReadError):
            res["refused"] += 1
            if t is not None:  # how long it waited to be told
                res["slowest_refusal"] = max(res["slowest_refusal"], round(loop.time() - t, 2))
            return
        except asyncio.TimeoutError:
            res["hung"] += 1
            return
        except OSError as e:
            res["other"].append(repr(e))
            return
        if d != b:
            res["bad"] += 1
            w.close()
            return
        res["served"] += 1
        held[i] = (r, w)

    t0 = loop.time()
    await asyncio.gather(*(one(i) for i in range(n)))
    res["seconds"] = round(loop.time() - t0, 2)
    res["other"] = res["other"][:5]
    print(json.dumps(res), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)

    # every held connection still relays, each its own byte
    again = {"ok": 0, "failed": 0}

    async def twice(i, r, w):
        b = bytes([1 + (i * 7) % 251])
        try:
            w.write(b)
            await w.drain()
            ok = await asyncio.wait_for(r.readexactly(1), 20) == b
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            ok = False
        again["ok" if ok else "failed"] += 1

    await asyncio.gather(*(twice(i, r, w) for i, (r, w) in held.items()))
    for _, w in held.values():
        w.close()
    print(json.dumps(again), flush=True)


def main():
    raise_nofile()
    if sys.argv[1] == "echo":
        asyncio.run(echo_main())
    else:
        asyncio.run(hold_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))


if __name__ == "__main__":
    main()
