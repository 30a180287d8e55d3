"""Messages between kseg's batch pool and its worker processes, over a Unix socket pair.

A message is a pickled tuple behind an 8-byte header (its length and how many file
descriptors travel with it); descriptors (shared memory, the spill file) ride on the
header as SCM_RIGHTS, so the receiver gets its own copies. Only the pool and the
workers it started use these sockets, so unpickling trusts the other end.
"""

import pickle
import socket
import struct

HEADER = struct.Struct("!II")  # payload bytes, descriptors
MAX_FDS = 8


def send(sock, message, fds=()):
    """Send tuple `message` with descriptors `fds` (they stay open here)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    header = HEADER.pack(len(data), len(fds))
    if fds:
        sent = socket.send_fds(sock, [header], list(fds))
        if sent != len(header):  # an 8-byte send on a blocking socket goes whole in practice
            sock.sendall(header[sent:])
    else:
        sock.sendall(header)
    sock.sendall(data)


def recv(sock):
    """`(message, fds)`: the next message and the descriptors that came with it.
    EOFError when the other end has closed."""
    header, fds = b"", []
    while len(header) < HEADER.size:
        chunk, got, _flags, _address = socket.recv_fds(sock, HEADER.size - len(header), MAX_FDS)
        if not chunk:
            raise EOFError("the other end closed the socket")
        header, fds = header + chunk, fds + list(got)
    size, count = HEADER.unpack(header)
    if count != len(fds):
        raise EOFError(f"expected {count} descriptors, received {len(fds)}")
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the socket")
        data += chunk
    return pickle.loads(data), fds
