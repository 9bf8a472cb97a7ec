"""Netascii translation for TFTP's "netascii" mode, incremental in both directions.

RFC 1350 defines netascii as the Telnet network virtual terminal's ASCII (RFC 764): a line ends
with CR LF, and a carriage return that does not end a line is sent as CR NUL.  This host ends
lines with LF alone, so:

* sending (local -> netascii): every CR becomes CR NUL, then every LF becomes CR LF.  The order
  matters: a local CR LF pair is a literal CR followed by a newline and goes out as CR NUL CR LF.
  Each local octet maps to a fixed output, so the encoder needs no state between chunks.
* receiving (netascii -> local): CR LF becomes LF and CR NUL becomes CR.  A CR followed by any
  other octet is illegal netascii; it is kept as it is rather than failing a transfer over it,
  as tftp-hpa does.  A CR that ends a chunk is held back until the next chunk (or the end of the
  file) shows what follows it: that pending CR is the decoder's only state.

Because the translation changes lengths, a netascii file's size on the wire is not its size on
disk, which is why netlab exchanges tsize (RFC 2349) in octet mode only, as tftpd-hpa does.
"""

from __future__ import annotations

__all__ = ["NetasciiDecoder", "netascii_encode"]

_CR, _LF, _NUL = b"\r", b"\n", b"\0"


def netascii_encode(data: bytes) -> bytes:
    """Local text to netascii (stateless: chunks may be encoded one at a time)."""
    return data.replace(_CR, _CR + _NUL).replace(_LF, _CR + _LF)


class NetasciiDecoder:
    """Netascii to local text, chunk by chunk."""

    def __init__(self) -> None:
        self._pending_cr = False

    def decode(self, data: bytes, *, final: bool = False) -> bytes:
        """Translate the next chunk; ``final=True`` on the last one flushes a pending CR."""
        if self._pending_cr:
            data = _CR + data
            self._pending_cr = False
        if not final and data.endswith(_CR):
            data = data[:-1]
            self._pending_cr = True
        # CR LF first: its output (LF) can never form a new CR NUL pair, and a CR NUL pair
        # never overlaps a CR LF pair, so the two replacements do not interfere.
        return data.replace(_CR + _LF, _LF).replace(_CR + _NUL, _CR)
