"""The interpreter's exit waits for a TLS set-up under way in a worker thread (a daemon): OpenSSL cleaning up at
exit under a running handshake can crash the process."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time


def test_exit_waits_for_a_handshake_under_way_in_a_daemon_thread() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers the ClientHello
        port = silent.getsockname()[1]
        code = textwrap.dedent(
            f"""
            import ssl, threading, time
            from regtool.client.net.connections import _HTTPSConnection

            def handshake():
                conn = _HTTPSConnection("127.0.0.1", {port}, timeout=1.5, context=ssl.create_default_context())
                conn.connect()  # times out after 1.5 s; what the thread does after that is not waited for

            threading.Thread(target=handshake, daemon=True).start()
            time.sleep(0.3)
            print("main done", flush=True)
            """
        )
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "main done"
    assert took >= 1.4  # the exit waited for the handshake to time out (the main thread was done at 0.3 s)
