"""Chat clients written with Python's asyncio `websockets`, as a Python team would write them,
against a running shop. Each reads its messages while it sends. Prints one JSON object with what
each client got.

    python3 ws_clients.py burst PORT COUNT SIZE
        two clients on /ws; one sends COUNT messages of SIZE bytes as fast as it can, and both
        read everything.
    python3 ws_clients.py slow-member PORT RATE SECONDS
        a sender sends RATE messages a second of 1,000 bytes for SECONDS, a second client reads
        them, and a third joins first and reads one message a second (about 1 KiB/s). Reports
        the longest pause the sender and the reader saw between two messages.

Each reader checks that it gets "Client says: NNNNN ..." in order; it stops at the first
message out of order, an error, or 30 s without a message.
"""
import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect


def url(port):
    return f"ws://127.0.0.1:{port}/ws"


async def read_in_order(ws, count, results, name):
    got, error, longest, last = 0, None, 0.0, None
    try:
        while got < count:
            message = await asyncio.wait_for(ws.recv(), 30)
            now = time.monotonic()
            if last is not None:
                longest = max(longest, now - last)
            last = now
            if not message.startswith(f"Client says: {got:05} "):
                error = f"out of order at {got}: {message[:24]!r}"
                break
            got += 1
    except Exception as e:  # closed, or nothing for 30 s
        error = repr(e)[:300]
    results[name] = {"got": got, "error": error}
    results[f"{name}_longest_pause"] = longest


async def burst(port, count, size):
    results = {}
    async with connect(url(port), max_size=2**22) as sender, connect(url(port), max_size=2**22) as other:
        started = time.monotonic()

        async def send():
            body = "x" * size
            for n in range(count):
                await sender.send(f"{n:05} {body}")
            results["sent_in"] = time.monotonic() - started

        await asyncio.gather(
            send(),
            read_in_order(sender, count, results, "sender"),
            read_in_order(other, count, results, "other"),
        )
        results["total"] = time.monotonic() - started
    for name in ("sender", "other"):
        del results[f"{name}_longest_pause"]
    return results


async def slow_member(port, rate, seconds):
    results = {}
    count = rate * seconds
    # max_queue=1: the client stops reading its socket while a message waits unread, so
    # reading one message a second is reading about 1 KiB a second.
    async with connect(url(port), max_queue=1) as slow:
        async def trickle():
            got = 0
            try:
                while True:
                    await asyncio.wait_for(slow.recv(), 30)
                    got += 1
                    await asyncio.sleep(1)
            except Exception as e:
                results["slow"] = {"got": got, "closed": getattr(e, "rcvd", None) and e.rcvd.code}

        slow_task = asyncio.create_task(trickle())
        async with connect(url(port)) as sender, connect(url(port)) as reader:
            started = time.monotonic()

            async def send():
                body = "x" * 994
                for n in range(count):
                    await sender.send(f"{n:05} {body}")
                    # Paced to `rate` a second from the start, whatever each send took.
                    due = started + (n + 1) / rate
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                results["sent_in"] = time.monotonic() - started

            await asyncio.gather(
                send(),
                read_in_order(sender, count, results, "sender"),
                read_in_order(reader, count, results, "reader"),
            )
        # The slow member is either closed by now or still trickling: either way, done with it.
        await asyncio.sleep(0.5)
        slow_task.cancel()
        try:
            await slow_task
        except asyncio.CancelledError:
            pass
        results.setdefault("slow", {"got": None, "closed": None})
    return results


if __name__ == "__main__":
    mode, port, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    run = {"burst": burst, "slow-member": slow_member}[mode]
    print(json.dumps(asyncio.run(run(port, a, b))))
