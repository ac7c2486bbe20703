"""A tiny DNS server for the tests of nginx's `resolver`: UDP on
127.0.0.1 (a free port), one thread. It parses the question of each query
and answers A records from `names` ({"auth.pwasm.test": "127.0.0.1"}):
a known name gets its A record (an AAAA query of it gets NOERROR with no
answer), any other name NXDOMAIN. `delay` (seconds) holds each answer
back; `drop` never answers. `queries` keeps (name, qtype) of each query
received."""

import socket
import struct
import threading

A, AAAA = 1, 28


class DnsServer:
    def __init__(self, names, delay=0.0, drop=False, ttl=60):
        self.names = dict(names)
        self.delay = delay
        self.drop = drop
        self.ttl = ttl
        self.queries = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)   # serve() sees `running` go
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def names_asked(self, qtype=A):
        with self.lock:
            return [n for n, t in self.queries if t == qtype]

    @staticmethod
    def question(packet):
        """(id, flags, name, qtype, end of the question) of a query."""
        qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
        if qdcount != 1:
            raise ValueError("one question expected")
        labels, i = [], 12
        while packet[i]:
            n = packet[i]
            labels.append(packet[i + 1:i + 1 + n].decode("ascii").lower())
            i += 1 + n
        qtype, _qclass = struct.unpack("!HH", packet[i + 1:i + 5])
        return qid, flags, ".".join(labels), qtype, i + 5

    def answer(self, packet):
        qid, flags, name, qtype, end = self.question(packet)
        with self.lock:
            self.queries.append((name, qtype))
        question = packet[12:end]
        rd = flags & 0x0100
        if name not in self.names:
            # QR, RA, RCODE 3 (NXDOMAIN)
            header = struct.pack("!HHHHHH", qid, 0x8083 | rd, 1, 0, 0, 0)
            return header + question
        if qtype != A:
            header = struct.pack("!HHHHHH", qid, 0x8080 | rd, 1, 0, 0, 0)
            return header + question
        rr = struct.pack("!HHHIH", 0xC00C, A, 1, self.ttl, 4) + socket.inet_aton(self.names[name])
        header = struct.pack("!HHHHHH", qid, 0x8080 | rd, 1, 1, 0, 0)
        return header + question + rr

    def serve(self):
        while self.running:
            try:
                packet, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self.answer(packet)
            except (ValueError, IndexError, struct.error):
                continue
            if self.drop:
                continue
            if self.delay:
                threading.Timer(self.delay, self.send, (reply, peer)).start()
            else:
                self.send(reply, peer)

    def send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()
