"""Served by the template's start command: says hello with numpy's help."""

import http.server
import os

import numpy as np


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ['APP_GREETING']}; numpy says {int(np.arange(5).sum())}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("127.0.0.1", 8000), Hello).serve_forever()
