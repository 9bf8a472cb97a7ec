"""The two shortcuts the client side takes on a cache hit, and why they are safe.

Strategy: on a hit the proxy's own work is small, so what h11 does per request (parse the head,
walk its state machine through the response, serialise the response head) is most of the cost.

* :func:`prepare_head` serialises a stored response's head once; the proxy keeps it for every
  hit while Age stays the same (one second), and the bytes go out as they are.
* :class:`RequestMemo` remembers request heads that h11 has parsed, by their exact bytes.
  Parsing is a pure function of those bytes, so a client that sends the same head again (a
  browser reloading a page, a benchmark) gets the same event without h11 reading it again.
  Only heads that carry no content and expect nothing (no Expect, no Upgrade) are kept, and only
  for GET and HEAD, the requests a cache answers; anything else is parsed by h11 as usual.  A
  memo of at most ``MAX_HEADS`` heads of at most ``MAX_HEAD_BYTES`` each bounds the memory it
  takes, whoever the client.
"""

from __future__ import annotations

import h11

from servers.proxy.pages import reason_phrase

__all__ = ["RequestMemo", "prepare_head"]


def prepare_head(status: int, reason: bytes, fields: list[tuple[bytes, bytes]]) -> bytes:
    """A response head in HTTP/1.1 wire form (RFC 9112 section 4), for a prepared response.

    ``fields`` are trusted to be valid (they are a stored response's, parsed by h11 when they
    arrived, and the proxy's own) and must frame the body with Content-Length.
    """
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason or reason_phrase(status))]
    lines += [b"%s: %s\r\n" % field for field in fields]
    lines.append(b"\r\n")
    return b"".join(lines)


MAX_HEADS = 1024
MAX_HEAD_BYTES = 4096
_CACHEABLE = frozenset({b"GET", b"HEAD"})
# Fields that make a request more than its head: content (RFC 9112 section 6.3), a wait for
# 100 (Continue) (RFC 9110 section 10.1.1), a protocol switch (section 7.8).
_NOT_KEPT = frozenset({b"content-length", b"transfer-encoding", b"expect", b"upgrade"})


class RequestMemo:
    """Request heads h11 has parsed, by their exact bytes (see the module notes)."""

    def __init__(self) -> None:
        self._heads: dict[bytes, h11.Request] = {}

    def __len__(self) -> int:
        return len(self._heads)

    def lookup(self, data: bytes) -> tuple[h11.Request, int] | None:
        """If ``data`` starts with a whole head seen before: its request, and the head's length."""
        end = data.find(b"\r\n\r\n") + 4
        if end < 4 or end > MAX_HEAD_BYTES:
            return None
        request = self._heads.get(data if end == len(data) else data[:end])
        return None if request is None else (request, end)

    def learn(self, head: bytes, request: h11.Request) -> None:
        """Remember that h11 parsed ``head`` (exactly those bytes) as ``request``."""
        if (
            request.method not in _CACHEABLE
            or len(head) > MAX_HEAD_BYTES
            or not head.endswith(b"\r\n\r\n")
            or any(name in _NOT_KEPT for name, _ in request.headers)
        ):
            return
        if len(self._heads) >= MAX_HEADS:
            self._heads.clear()
        self._heads[head] = request
