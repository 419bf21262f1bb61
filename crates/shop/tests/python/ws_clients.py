"""Chat clients written with Python's `websockets`, as a Python team would write them, against
a running shop. Prints one JSON object with what each client got.

    python3 ws_clients.py burst PORT COUNT SIZE
        two clients on /ws, each reading continuously on its own thread (the sync client); one
        sends COUNT messages of SIZE bytes as fast as it can.
    python3 ws_clients.py slow-link PORT COUNT SIZE
        a client with a 4 KiB receive buffer reading at about 0.93 MB/s (sync client, on a
        thread), while another (asyncio client) sends COUNT messages of SIZE bytes as fast as it
        can and reads its own echoes.

Each reader checks that it gets "Client says: NNNNN ..." in order; it stops at the first
message out of order, an error, or 30 s without a message.
"""
import asyncio
import json
import socket
import sys
import threading
import time

from websockets.asyncio.client import connect as async_connect
from websockets.sync.client import connect as sync_connect

SLOW_RATE = 0.93e6  # bytes a second


def read_in_order(ws, count, results, name, pace=None):
    got, error = 0, None
    try:
        while got < count:
            message = ws.recv(timeout=30)
            if not message.startswith(f"Client says: {got:05} "):
                error = f"out of order at {got}: {message[:24]!r}"
                break
            got += 1
            if pace:
                time.sleep(len(message) / pace)
    except Exception as e:  # closed, or nothing for 30 s
        error = repr(e)[:300]
    results[name] = {"got": got, "error": error}


def open_sync(port, rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    return sync_connect(f"ws://127.0.0.1:{port}/ws", sock=sock, max_size=2**22)


def burst(port, count, size):
    results = {}
    with open_sync(port) as sender, open_sync(port) as other:
        threads = [
            threading.Thread(target=read_in_order, args=(ws, count, results, name))
            for ws, name in ((sender, "sender"), (other, "other"))
        ]
        for t in threads:
            t.start()
        started = time.time()
        body = "x" * size
        for n in range(count):
            sender.send(f"{n:05} {body}")
        results["sent_in"] = time.time() - started
        for t in threads:
            t.join()
        results["total"] = time.time() - started
    return results


def slow_link(port, count, size):
    results = {}
    ready = threading.Event()

    def slow_reader():
        with open_sync(port, rcvbuf=4096) as ws:
            ready.set()
            read_in_order(ws, count, results, "slow", pace=SLOW_RATE)

    async def sender():
        async with async_connect(f"ws://127.0.0.1:{port}/ws", max_size=2**22) as ws:
            body = "x" * size

            async def send():
                started = time.time()
                for n in range(count):
                    await ws.send(f"{n:05} {body}")
                results["sent_in"] = time.time() - started

            async def echoes():
                got, error = 0, None
                try:
                    while got < count:
                        message = await asyncio.wait_for(ws.recv(), 30)
                        if not message.startswith(f"Client says: {got:05} "):
                            error = f"out of order at {got}"
                            break
                        got += 1
                except Exception as e:
                    error = repr(e)[:300]
                results["sender"] = {"got": got, "error": error}

            await asyncio.gather(send(), echoes())

    reader = threading.Thread(target=slow_reader)
    reader.start()
    ready.wait(10)
    started = time.time()
    asyncio.run(sender())
    reader.join()
    results["total"] = time.time() - started
    return results


if __name__ == "__main__":
    mode, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    run = {"burst": burst, "slow-link": slow_link}[mode]
    print(json.dumps(run(port, count, size)))
