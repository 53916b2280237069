"""A scripted OpenAI-compatible chat-completions server on loopback.

The agent examples use the real `openai` client (and LangChain's ChatOpenAI);
pointed here with OPENAI_BASE_URL, each POST /v1/chat/completions gets the
next scripted reply, and every request is recorded so a test can check what
the agent sent back to the model (the sandbox's real output).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def say(text: str) -> dict:
    """A plain assistant reply: the model is done."""
    return {"role": "assistant", "content": text}


def call_tool(name: str, reasoning: str | None = None, **arguments) -> dict:
    """An assistant reply that calls one tool with the given arguments."""
    return {
        "role": "assistant",
        "content": reasoning,
        "tool_calls": [{"type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}],
    }


class ScriptedOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self._replies: list[dict] = []
        self._ids = itertools.count(1)
        self._mu = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                with stub._mu:
                    stub.requests.append(body)
                    reply = stub._replies.pop(0) if stub._replies else None
                if reply is None:
                    return self._send(500, {"error": {"message": "the script has no more replies", "type": "server_error"}})
                self._send(200, stub._completion(body, reply))

            def _send(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def script(self, *replies: dict) -> None:
        """Sets the replies the next requests get, in order."""
        with self._mu:
            self._replies = [dict(r) for r in replies]
            self.requests = []

    @property
    def unused(self) -> int:
        with self._mu:
            return len(self._replies)

    def _completion(self, request: dict, reply: dict) -> dict:
        message = dict(reply)
        if "tool_calls" in message:
            message["tool_calls"] = [dict(c, id=f"call_{next(self._ids)}") for c in message["tool_calls"]]
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "scripted"),
            "choices": [{
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                "logprobs": None,
            }],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def env(self) -> dict[str, str]:
        """What points the openai client (and LangChain's) at this server."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": "sk-scripted"}

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
