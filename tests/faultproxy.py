"""A fault-injecting HTTP reverse proxy for storage tests (stdlib only).

It sits between a client (pyarrow's S3 client, boto3) and an HTTP server (the moto S3 server):
point the client's endpoint at `FaultProxy.url`. Every request is passed through byte for byte
(request line, headers, Content-Length or chunked bodies, keep-alive) unless a rule matches it;
a matching rule can, on its Nth..Mth match (counted per rule):

* ``reset``    close the client connection with an RST (SO_LINGER 0), no response;
* ``close``    close it cleanly (FIN) without a response;
* ``stall``    hold the request without answering for ``seconds`` (longer than the client's
               timeout), then close the connection;
* ``status``   answer ``status`` (default 503) with an S3-style XML error body, upstream untouched;
* ``truncate`` forward the upstream response's headers and half its body, then RST.

A rule picks requests by HTTP method and path (regular expressions), or by the kind of S3 request
(`kind`): HEAD, GET (an object), LIST (GET on the bucket: a listing), PUT (an object, a multipart
part or its completion), COPY (PUT with x-amz-copy-source: how a move starts) and DELETE (one
object, or a multi-object delete).

Every request the proxy saw is recorded as a `Record` (method, path, kind, outcome: the HTTP status
it returned, or the fault's name) so tests can assert how often a client tried.

    with FaultProxy(moto_url) as proxy:
        proxy.add_rule("reset", method="GET", path=r"/docs/in/a\\.pdf$", first=1, last=2)
        ...
        assert [r.outcome for r in proxy.requests(method="GET")] == ["reset", "reset", 200]
"""
from __future__ import annotations

import re
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

FAULTS = ("reset", "close", "stall", "status", "truncate")
KINDS = ("HEAD", "GET", "LIST", "PUT", "COPY", "DELETE")


def kind_of(method: str, target: str, headers: dict[bytes, bytes]) -> str:
    """The S3 request type of a request (path-style addressing, as S3-compatible endpoints use)."""
    path, _, query = target.partition("?")
    if method == "DELETE" or (method == "POST" and "delete" in query.split("&")):
        return "DELETE"
    if method in ("PUT", "POST"):
        return "COPY" if b"x-amz-copy-source" in headers else "PUT"
    if method == "GET" and path.strip("/").count("/") == 0:
        return "LIST"  # GET /bucket?list-type=2&prefix=...
    return method
_NO_BODY_STATUS = {204, 304}


@dataclass
class Rule:
    """Fault `fault` for requests whose method and path (request target, query included, still
    percent-encoded as sent) match; applied on matches first..last (1-based, last None: forever)."""

    fault: str
    method: str = ".*"
    path: str = ".*"
    kind: str | None = None
    first: int = 1
    last: int | None = 1
    status: int = 503
    seconds: float = 5.0
    matched: int = 0  # how many requests matched so far, faulted or not

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {self.fault!r}")
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    def applies(self, method: str, path: str, kind: str) -> bool:
        """Count a matching request; True when this one is in the faulted range."""
        if not (re.fullmatch(self.method, method) and re.search(self.path, path)
                and (self.kind is None or self.kind == kind)):
            return False
        self.matched += 1
        return self.matched >= self.first and (self.last is None or self.matched <= self.last)


@dataclass(frozen=True)
class Record:
    method: str
    path: str
    outcome: int | str  # HTTP status sent to the client, or the fault's name
    kind: str = ""


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultProxy:
    """Threaded reverse proxy on 127.0.0.1 (a free port) in front of `upstream` (http://host:port)."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port or 80)
        self.rules: list[Rule] = []
        self.log: list[Record] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()  # ends stalls early at shutdown
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve_connection(self.request)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # ---- test-facing interface ---------------------------------------------------------

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def add_rule(self, fault: str, *, method: str = ".*", path: str = ".*", kind: str | None = None,
                 first: int = 1, last: int | None = 1, status: int = 503, seconds: float = 5.0) -> Rule:
        rule = Rule(fault, method, path, kind, first, last, status, seconds)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Forget rules and the request log."""
        with self._lock:
            self.rules.clear()
            self.log.clear()

    def requests(self, method: str | None = None, path: str | None = None, kind: str | None = None) -> list[Record]:
        """Recorded requests, optionally only those whose method / kind equals, path matches (re.search)."""
        with self._lock:
            return [r for r in self.log if (method is None or r.method == method)
                    and (path is None or re.search(path, r.path)) and (kind is None or r.kind == kind)]

    # ---- the proxy -----------------------------------------------------------------------

    def _record(self, method: str, path: str, outcome: int | str, kind: str) -> None:
        with self._lock:
            self.log.append(Record(method, path, outcome, kind))

    def _fault_for(self, method: str, path: str, kind: str) -> Rule | None:
        with self._lock:
            hit = None
            for rule in self.rules:  # every rule counts its matches, the first faulting one wins
                if rule.applies(method, path, kind) and hit is None:
                    hit = rule
            return hit

    def _serve_connection(self, client: socket.socket) -> None:
        upstream = None
        cin = client.makefile("rb")
        try:
            while not self._stop.is_set():
                head = _read_head(cin)
                if head is None:
                    return  # client closed its keep-alive connection
                method, target = head[0].split(b" ")[:2]
                method_s, target_s = method.decode(), target.decode("latin-1")
                headers = _headers(head)
                kind = kind_of(method_s, target_s, headers)
                rule = self._fault_for(method_s, target_s, kind)
                if headers.get(b"expect", b"").lower() == b"100-continue":
                    # Answer it here (curl would otherwise wait a second before sending the body).
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = [h for h in head if not h.lower().startswith(b"expect:")]
                body = _read_body(cin, headers)  # read first: a fault must not leave it unread
                if rule is not None and rule.fault != "truncate":
                    self._record(method_s, target_s, rule.status if rule.fault == "status" else rule.fault, kind)
                    if rule.fault == "status":
                        client.sendall(_error_response(rule.status, with_body=method_s != "HEAD"))
                        continue
                    if rule.fault == "stall":
                        self._stop.wait(rule.seconds)
                    if rule.fault == "reset":
                        _rst(client)
                    return
                if upstream is None:
                    upstream = socket.create_connection(self.upstream, timeout=30)
                    uin = upstream.makefile("rb")
                upstream.sendall(b"".join(h + b"\r\n" for h in head) + b"\r\n" + body)
                # Recorded before the response goes out: a client done reading may look at the log.
                keep = self._relay_response(uin, client, method_s, truncate=rule is not None, record=lambda status: (
                    self._record(method_s, target_s, "truncate" if rule is not None else status, kind)))
                if rule is not None:
                    _rst(client)
                    return
                if not keep or headers.get(b"connection", b"").lower() == b"close":
                    return
        except (OSError, ValueError):
            return  # a client or server that went away mid-request: nothing to pass on
        finally:
            for sock in (upstream, client):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass

    @staticmethod
    def _relay_response(uin, client: socket.socket, method: str, truncate: bool, record) -> bool:
        """Copy one upstream response to the client, `record(status)` first; connection reusable?"""
        while True:
            head = _read_head(uin)
            if head is None:
                raise ConnectionError("upstream closed without a response")
            status = int(head[0].split(b" ")[1])
            if status != 100:
                break
            client.sendall(b"".join(h + b"\r\n" for h in head) + b"\r\n")  # interim response
        headers = _headers(head)
        record(status)
        client.sendall(b"".join(h + b"\r\n" for h in head) + b"\r\n")
        if method == "HEAD" or status in _NO_BODY_STATUS:
            return True
        if truncate:
            size = int(headers.get(b"content-length", b"0"))
            client.sendall(uin.read(size // 2))
            return False
        if b"content-length" in headers:
            _copy(uin, client, int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            client.sendall(_read_chunked(uin))
        else:  # body until the server closes
            while chunk := uin.read1(65536):
                client.sendall(chunk)
            return False
        return headers.get(b"connection", b"").lower() != b"close"


def _read_head(stream) -> list[bytes] | None:
    """Request/status line and header lines (without CRLF), or None at a clean end of stream."""
    lines: list[bytes] = []
    while True:
        line = stream.readline(65537)
        if not line:
            if lines:
                raise ConnectionError("connection closed inside a message head")
            return None
        line = line.rstrip(b"\r\n")
        if not line:
            if lines:
                return lines
            continue  # stray CRLF between keep-alive messages
        lines.append(line)


def _headers(head: list[bytes]) -> dict[bytes, bytes]:
    out = {}
    for line in head[1:]:
        name, _, value = line.partition(b":")
        out[name.strip().lower()] = value.strip()
    return out


def _read_body(stream, headers: dict[bytes, bytes]) -> bytes:
    """A request body, kept in its wire form (chunked stays chunked)."""
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        return _read_chunked(stream)
    size = int(headers.get(b"content-length", b"0"))
    data = stream.read(size)
    if len(data) != size:
        raise ConnectionError("request body cut short")
    return data


def _read_chunked(stream) -> bytes:
    out = bytearray()
    while True:
        size_line = stream.readline(65537)
        out += size_line
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, then the empty line
                line = stream.readline(65537)
                out += line
                if line in (b"\r\n", b"\n", b""):
                    return bytes(out)
        out += stream.read(size + 2)  # data + CRLF


def _copy(src, client: socket.socket, size: int) -> None:
    while size > 0:
        chunk = src.read1(min(size, 65536))
        if not chunk:
            raise ConnectionError("upstream body cut short")
        client.sendall(chunk)
        size -= len(chunk)


def _rst(sock: socket.socket) -> None:
    """Close so that the peer sees 'connection reset' (RST), not an orderly end of stream."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def _error_response(status: int, with_body: bool) -> bytes:
    code = {400: "BadRequest", 403: "AccessDenied", 404: "NoSuchKey", 500: "InternalError",
            503: "SlowDown"}.get(status, "ServiceUnavailable")
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>injected by faultproxy</Message></Error>").encode()
    return (f"HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + (body if with_body else b"")
