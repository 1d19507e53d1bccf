"""What the serving tests share: the app under a real uvicorn server in a thread, the
model-thread gate, PNG decoding and waiting. Imported by test_serve*.py; skips (fails under
CI=true) without the serve and test extras."""

import base64
import io
import socket
import threading
import time

import numpy as np
from PIL import Image

from conftest import CPU
from optional import need

for extra in ("fastapi", "uvicorn"):
    need(extra, "the serve extra: pip install -e '.[serve]'")
httpx = need("httpx", "the test extra: pip install -e '.[test]'")
import uvicorn  # noqa: E402

from attngan.serve.app import create_app  # noqa: E402
from attngan.serve.engine import Engine  # noqa: E402
from attngan.serve.settings import Settings  # noqa: E402

CAPTION = "a red circle at the top left on a blue background"


class LiveServer:
    """The app under uvicorn in a thread, on a socket bound to a free port of 127.0.0.1."""

    def __init__(self, app):
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    @property
    def service(self):
        return self.app.state.service


def serve(cfg, **limits) -> LiveServer:
    return LiveServer(create_app(Engine(cfg, CPU, cfg.FILE), Settings(**limits)))


class Gate:
    """Holds the model thread inside its call until opened: lets a test fill the queue
    while the model works. ``entered`` is set once a batch is inside."""

    def __init__(self, batcher):
        self.batcher, self.run = batcher, batcher.run_batch
        self.entered, self.opened = threading.Event(), threading.Event()
        self.held = 0  # requests in the held call
        batcher.run_batch = self

    def __call__(self, parts):
        self.held = len(parts)
        self.entered.set()
        assert self.opened.wait(30), "the test never opened the gate"
        return self.run(parts)

    def open(self):
        self.opened.set()
        self.batcher.run_batch = self.run


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def png_of(image: dict, client=None) -> bytes:
    if image["base64"] is not None:
        return base64.b64decode(image["base64"])
    response = client.get(image["url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return response.content


def wait_until(condition, what: str, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
