#!/usr/bin/env python3
"""An HTTP proxy in front of a real S3 server (moto) that injects the faults
moto cannot produce, for tests/e2e/s3_storage_test.cpp.

Usage: s3_fault_proxy.py PORT UPSTREAM FAULT N
  FAULT complete-200-error: the first N CompleteMultipartUpload requests
        (POST ...?uploadId=...) are answered 200 with an <Error> body
        (InternalError), as S3 may, without reaching the server.
Every other request is forwarded as it is. Counts go to stderr.
"""
import http.client
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, upstream, fault, budget = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
target = urllib.parse.urlparse(upstream)
injected = 0

ERROR_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
              b'<Message>We encountered an internal error. Please try again.</Message></Error>')


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        global injected
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query,
                                      keep_blank_values=True)
        if (fault == "complete-200-error" and self.command == "POST" and "uploadId" in query
                and injected < budget):
            injected += 1
            print(f"injected {injected}", file=sys.stderr, flush=True)
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(ERROR_BODY)))
            self.end_headers()
            self.wfile.write(ERROR_BODY)
            return
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("connection", "expect", "transfer-encoding")}
        conn.request(self.command, self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "date",
                                 "server"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", r.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()
