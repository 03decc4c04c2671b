"""A TCP proxy that delays every byte by a fixed time in each direction: the test bed's stand-in
for ``netem`` (which this kernel lacks), to put a client far from its dispatcher.

``python -m _support.delay_proxy LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS``
(with ``tests`` on ``PYTHONPATH``) accepts connections on the listening address and opens one
to the target for each; what is read on one side is written on the other ``DELAY_MS`` later,
in order and in full (a delay line, not a bandwidth limit: reading goes on meanwhile). It
prints ``ready`` once listening, and runs until killed (the bed ends it with its host).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

__all__ = ["main", "serve"]

_CHUNK = 1 << 16


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await line.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    delivering = asyncio.create_task(deliver())
    try:
        while data := await reader.read(_CHUNK):
            line.put_nowait((time.monotonic() + delay, data))
    except OSError:
        pass
    finally:
        line.put_nowait((0.0, b""))
        with contextlib.suppress(OSError):
            await delivering


async def serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pump(reader, up_writer, delay), _pump(up_reader, writer, delay), return_exceptions=True
        )
        for side in (writer, up_writer):
            side.close()

    server = await asyncio.start_server(connection, *listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    listen_host, listen_port, target_host, target_port, delay_ms = argv
    listen = (listen_host, int(listen_port))
    asyncio.run(serve(listen, (target_host, int(target_port)), float(delay_ms) / 1000))


if __name__ == "__main__":
    main(sys.argv[1:])
