"""The files at either end of a TFTP transfer, read and written off the event loop.

Strategy: file I/O is blocking, so it runs in worker threads, in pieces of a mebibyte: small
enough to keep memory flat, large enough that the cost of handing work to a thread (which on
a busy machine can be a scheduler time slice) is paid once per hundreds of blocks.

* :class:`FileSource` reads *ahead*: its :meth:`~FileSource.run` task keeps one piece read and
  waiting while the transfer sends the previous one, so a lockstep transfer never stops for
  the disk.  Netascii is translated on the way out.
* :class:`FileSink` writes each piece as it fills, translates netascii on the way in, and keeps
  the data in a temporary file (:class:`~netlab.store.atomic.AtomicFile`) until
  :meth:`~FileSink.commit` fsyncs it and moves it into place.
"""

from __future__ import annotations

from typing import BinaryIO

import trio

from netlab.proto.tftp_netascii import NetasciiDecoder, netascii_encode
from netlab.store.atomic import AtomicFile

__all__ = ["CHUNK", "FileSink", "FileSource"]

CHUNK = 1 << 20  # bytes per read or write


class FileSource:
    """The sender's file.  Start :meth:`run` in a nursery, then :meth:`read` piece by piece."""

    def __init__(self, file: BinaryIO, *, netascii: bool = False, chunk: int = CHUNK) -> None:
        self._file = file
        self._netascii = netascii
        self._chunk = chunk
        # One piece waiting in the channel while the next is read: double buffering.
        self._send, self._receive = trio.open_memory_channel[bytes](1)
        self._error: OSError | None = None

    async def run(self) -> None:
        """Read the file ahead into the channel; an empty piece marks its end."""
        async with self._send:
            while True:
                try:
                    data = await trio.to_thread.run_sync(self._file.read, self._chunk)
                except OSError as exc:
                    self._error = exc
                    return
                await self._send.send(netascii_encode(data) if self._netascii else data)
                if not data:
                    return

    async def read(self) -> bytes:
        """The next piece as it goes on the wire; b"" at the end of the file.

        Raises:
            OSError: reading the file failed.
        """
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise self._error or OSError("file source closed") from None

    def close(self) -> None:
        self._file.close()


class FileSink:
    """The receiver's file: written in worker threads, stored atomically on commit."""

    def __init__(self, file: AtomicFile, *, netascii: bool = False) -> None:
        self.file = file
        self._decoder = NetasciiDecoder() if netascii else None

    async def write(self, data: bytes, *, final: bool = False) -> None:
        if self._decoder is not None:
            data = self._decoder.decode(data, final=final)
        if data:
            await trio.to_thread.run_sync(self.file.write, data)

    async def commit(self) -> None:
        await trio.to_thread.run_sync(self.file.commit)

    def discard(self) -> None:
        self.file.discard()
