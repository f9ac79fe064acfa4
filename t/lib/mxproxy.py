"""mxproxy - PROXY protocol v2 headers and raw sockets for the proxyv2
tests, built by the tests' own code (haproxy's proxy-protocol.txt), never
by the shim's parser.

    from mxproxy import SIG, tlv, v2, inet, inet6, with_crc, connect, until_closed
    hdr = v2(inet("192.0.2.7"))                  # PROXY TCP4, no TLV
    hdr = with_crc(inet("192.0.2.7") + tlv(1, b"h2"))   # ... with a right CRC32C TLV
    s = connect(port); s.sendall(hdr + b"QUIT\\r\\n"); until_closed(s)
"""

import socket
import struct

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
RELAY_DENIED = "554 5.7.1 <%s>: Relay access denied"


def tlv(t, value):
    return bytes([t]) + struct.pack("!H", len(value)) + value


def v2(body, cmd=0x21, fam=0x11):
    return SIG + bytes([cmd, fam]) + struct.pack("!H", len(body)) + body


def inet(src="192.0.2.7", dst="10.0.20.5", sport=40000, dport=25):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def inet6(src, dst="2001:db8::1", sport=40000, dport=25):
    return (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
            + struct.pack("!HH", sport, dport))


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def with_crc(body, fix=0):
    """A v2 header of body plus a CRC32C TLV (last), its checksum xor fix."""
    head = v2(body + tlv(3, b"\0\0\0\0"))
    return head[:-4] + struct.pack("!I", crc32c(head) ^ fix)


def connect(port, family=socket.AF_INET, host="127.0.0.1", source=None, timeout=10):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind(source)
    s.connect((host, port) if family != socket.AF_UNIX else port)
    return s


def until_closed(s, timeout=5):
    """Everything the peer sends until it closes (or timeout); closes s."""
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except OSError:
        pass
    s.close()
    return data
