"""The demo's probe of a service it may reuse: a port held by something that is not HTTP is not a crash."""

from __future__ import annotations

import socket
import threading

from devtools.demo import wait_http


def test_a_port_answering_something_that_is_not_http_counts_as_not_answering():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    stop = threading.Event()

    def answer_garbage():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(b"220 not an http server\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health", 0.6) is False
    finally:
        stop.set()
        thread.join()
        server.close()
