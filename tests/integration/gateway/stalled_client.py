#!/usr/bin/env python3
"""A client that stops reading: for the gateway back-pressure tests.

Connects with a small receive buffer (so that the kernel absorbs little of what the gateway
sends), sends one HTTP request read from stdin, reads nothing for --stall seconds, then
either reads the response to its end (--then read, with a large receive buffer) and writes it
to stdout, or reads it at --rate bytes a second through the small window (--then trickle),
or keeps not reading (--then hold) until the gateway resets or closes the connection, which it
reports as one line "CUT <seconds since the request> <how>". Exits 3 if --then hold outlives --limit.

  stalled_client.py PORT --stall S --then read|trickle|hold [--rate B] [--rcvbuf B] [--limit S] < request
"""
import argparse
import select
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--stall", type=float, required=True)
    ap.add_argument("--then", choices=["read", "hold", "trickle"], required=True)
    ap.add_argument("--rate", type=float, default=4096, help="bytes a second, for --then trickle")
    ap.add_argument("--rcvbuf", type=int, default=4096)
    ap.add_argument("--limit", type=float, default=60)
    a = ap.parse_args()
    request = sys.stdin.buffer.read()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)  # before connect: the window
    s.connect(("127.0.0.1", a.port))
    s.sendall(request)
    start = time.monotonic()
    print("SENT", flush=True)
    time.sleep(a.stall)
    if a.then == "read":
        # Read at full speed now: through a window of a few kilobytes the loopback transfer
        # sometimes crawls (the pause test's reads took from 4 to 80 s here), and how fast
        # this client reads is not what the tests check. The window scale was fixed at
        # connect, so this opens the window to 64 KB at most, which is enough.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    if a.then in ("read", "trickle"):
        out = bytearray()
        while True:
            if a.then == "trickle":
                time.sleep(0.05)
            d = s.recv(int(a.rate * 0.05) if a.then == "trickle" else 1 << 16)
            if not d:
                break
            out += d
            if out.endswith(b"0\r\n\r\n") and b"data: [DONE]" in out[-64:]:
                break
        sys.stdout.buffer.write(bytes(out))
        return 0
    # hold: wait, without reading, for the connection to end. A reset shows as an error on
    # the socket (SO_ERROR) or as POLLHUP/POLLERR.
    p = select.poll()
    p.register(s, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
    while time.monotonic() - start < a.limit:
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            print(f"CUT {time.monotonic() - start:.2f} errno{err}", flush=True)
            return 0
        for _, ev in p.poll(50):
            if ev & (select.POLLERR | select.POLLHUP | select.POLLRDHUP):
                print(f"CUT {time.monotonic() - start:.2f} poll{ev}", flush=True)
                return 0
    print(f"NOT CUT after {a.limit} s", flush=True)
    return 3


if __name__ == "__main__":
    sys.exit(main())
