#!/usr/bin/env python3
"""A fast local webhook receiver for tools/bench/webhooks.sh: answers every POST 204 (HTTP/1.1,
keep-alive) and counts them; prints the count and the first and last arrival times (Unix seconds)
as JSON when it gets SIGTERM.

    python3 tools/bench/webhook_receiver.py PORT
"""

import asyncio
import json
import signal
import sys
import time

count = 0
first = None
last = None


async def serve(reader, writer):
    global count, first, last
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            now = time.time()
            count += 1
            first = first or now
            last = now
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    print(json.dumps({"received": count, "first": first, "last": last}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
