"""Request bodies within a limit: read in a stream, and gzip inflated in a stream that stops
at the same limit, so no body — a 1 MB gzip bomb that inflates to 1 GB included — costs the
server more memory than the limit allows."""

from __future__ import annotations

import zlib

from thinkfl.serve.otlp import RequestError

GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around deflate data
INFLATE_CHUNK_BYTES = 1 << 20  # inflated at most this much at a time


class BodyTooLarge(RequestError):
    """A body (as sent, or once inflated) over the server's limit: answered with 413."""


def over_limit(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"body: over the limit of {limit} bytes")


def inflate_gzip(body: bytes, limit: int) -> bytes:
    """The gzip `body` inflated (every member of a multi-member file), refused with
    BodyTooLarge as soon as it grows past `limit` and with RequestError when it is not gzip.

    >>> import gzip
    >>> inflate_gzip(gzip.compress(b"abc") + gzip.compress(b"de"), 10)
    b'abcde'
    """
    inflated = bytearray()
    rest = body
    while rest:
        inflater = zlib.decompressobj(wbits=GZIP_WBITS)
        try:
            pending = rest
            while pending:
                room = min(INFLATE_CHUNK_BYTES, limit + 1 - len(inflated))
                inflated += inflater.decompress(pending, room)
                if len(inflated) > limit:
                    raise over_limit(limit)
                pending = inflater.unconsumed_tail
            inflated += inflater.flush(limit + 1 - len(inflated))
        except zlib.error:
            raise RequestError("body: not valid gzip") from None
        if len(inflated) > limit:
            raise over_limit(limit)
        if not inflater.eof:
            raise RequestError("body: not valid gzip (it ends early)")
        rest = inflater.unused_data
        if not rest.strip(b"\x00"):  # padding after the last member, as gzip(1) allows
            break
    return bytes(inflated)
