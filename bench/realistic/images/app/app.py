"""The benchmark's application: GET / (and /health) query the seeded database and read the
broker's OpenWire greeting, and answer 200 only when both work."""

import os
import socket
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

DATABASE = dict(host=os.environ.get("DB_HOST", "postgres"), dbname="accounting", user="postgres",
                connect_timeout=2)
BROKER = (os.environ.get("BROKER_HOST", "activemq"), 61616)


def accounts():
    with psycopg2.connect(**DATABASE) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM accounts a JOIN customers c ON c.id = a.customer_id")
        return cursor.fetchone()[0]


def openwire_version():
    """ActiveMQ greets a new connection with a WireFormatInfo: size, type 1, b'ActiveMQ', version."""
    with socket.create_connection(BROKER, timeout=2) as sock:
        data = b""
        while len(data) < 17:
            chunk = sock.recv(64)
            if not chunk:
                break
            data += chunk
    if len(data) < 17 or data[4] != 1 or data[5:13] != b"ActiveMQ":
        raise OSError(f"not an OpenWire greeting: {data[:17]!r}")
    return struct.unpack(">i", data[13:17])[0]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            body = f"app ok: postgres accounts={accounts()}, activemq openwire v{openwire_version()}\n"
            status = 200
        except Exception as error:  # noqa: BLE001 - any failure is the answer
            body, status = f"app failing: {error}\n", 503
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    print("app listening on 8080", flush=True)
    ThreadingHTTPServer(("", 8080), Handler).serve_forever()
