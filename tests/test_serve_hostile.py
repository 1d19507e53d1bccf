"""attngan-serve against clients that misbehave and a batcher that breaks, on the real
uvicorn server (test_serve.LiveServer) through raw sockets, so that the framing, the timing
and the path are exactly what is sent: bodies over the limit in either framing (413 as soon
as the limit is passed), bodies that trickle in (408 after --body-timeout-s), paths that try
to leave the image store (404), and /v1/health failing, with the container's HEALTHCHECK,
when the batcher stops, stalls or fails."""

import json
import re
import shlex
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT
from serving import CAPTION, Gate, httpx, serve, wait_until  # skips without the serve extra


@pytest.fixture(scope="module")
def cfg(serve_cfg):
    return serve_cfg


BODY = json.dumps({"captions": [CAPTION], "seed": 3, "format": "base64"}).encode()


def port_of(live) -> int:
    return int(live.url.rsplit(":", 1)[1])


def http_response(sock: socket.socket, seconds: float) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, whether the server then closed the connection) of the
    response read from ``sock``; AssertionError if it is not complete within ``seconds``."""
    sock.settimeout(seconds)
    data, deadline = b"", time.monotonic() + seconds
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
            if len(body) >= int(headers.get("content-length", 0)):
                break
        try:
            more = sock.recv(65536) if time.monotonic() < deadline else None
        except socket.timeout:
            more = None
        assert more, f"no complete response within {seconds} s (got {data[:200]!r})"
        data += more
    sock.settimeout(2)
    try:
        closed = sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    return int(status_line.split()[1]), headers, body, closed


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture(scope="module")
def small(cfg):
    """A server with a 1,000-byte body limit and a 1-second body deadline."""
    with serve(cfg, max_body_bytes=1000, body_timeout_s=1.0) as live:
        yield live


# ---------------------------------------------------------------- bodies too large


def test_a_chunked_body_gets_413_as_soon_as_it_passes_the_limit(small):
    """Chunks of 400 bytes, the body left open after the third: the answer comes at once,
    not when the body ends (it never does), and the connection is closed."""
    with socket.create_connection(("127.0.0.1", port_of(small))) as sock:
        sock.sendall(
            request_head("POST", "/v1/generate", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        )
        for _ in range(3):
            sock.sendall(chunk(b" " * 400))
        status, headers, body, closed = http_response(sock, seconds=5)
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "error": "body: more than 1000 bytes; at most 1000 (attngan-serve --max-body-bytes)",
        "field": "body",
    }
    assert closed and headers["connection"] == "close"


def test_the_issues_case_50000_chunked_bytes_against_a_limit_of_1000_is_413(small):
    """httpx sends a generator's body chunked (no Content-Length), as the review did."""

    def body():
        yield b'{"captions": ["' + b"a " * 5000
        for _ in range(4):
            yield b"a " * 10000
        yield b'"]}'

    with httpx.Client(base_url=small.url, timeout=30) as c:
        response = c.post("/v1/generate", content=body(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["field"] == "body"
    assert response.request.headers["transfer-encoding"] == "chunked"


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(small):
    with socket.create_connection(("127.0.0.1", port_of(small))) as sock:
        sock.sendall(
            request_head("POST", "/v1/generate", {"Content-Type": "application/json", "Content-Length": "5000"})
        )
        status, headers, body, closed = http_response(sock, seconds=5)
    assert status == 413 and json.loads(body)["error"].startswith("body: 5000 bytes; at most 1000")
    assert closed


def test_a_chunked_body_within_the_limit_is_read_whole(small):
    """The wrapper hands every chunk on: the request is answered as if sent in one piece."""
    with socket.create_connection(("127.0.0.1", port_of(small))) as sock:
        sock.sendall(
            request_head("POST", "/v1/generate", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        )
        for i in range(0, len(BODY), 7):
            sock.sendall(chunk(BODY[i : i + 7]))
        sock.sendall(b"0\r\n\r\n")
        status, _, body, _ = http_response(sock, seconds=30)
    assert status == 200
    with httpx.Client(base_url=small.url, timeout=30) as c:
        whole = c.post("/v1/generate", content=BODY, headers={"content-type": "application/json"})
    assert json.loads(body)["captions"] == whole.json()["captions"]


# ---------------------------------------------------------------- bodies too slow


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_that_trickles_in_gets_408_after_the_deadline(small, framing):
    """One byte every 0.2 s, for ever (up to 10 s here): 408 after the 1-second deadline,
    then the connection closes."""
    headers = {"Content-Type": "application/json"}
    headers.update({"Content-Length": "500"} if framing == "content-length" else {"Transfer-Encoding": "chunked"})
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", port_of(small))) as sock:
        sock.sendall(request_head("POST", "/v1/generate", headers))

        def trickle():
            while not stop.wait(0.2):
                try:
                    sock.sendall(b"{" if framing == "content-length" else chunk(b"{"))
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        start = time.monotonic()
        sender.start()
        try:
            status, _, body, closed = http_response(sock, seconds=10)
        finally:
            stop.set()
            sender.join(5)
    took = time.monotonic() - start
    assert status == 408 and 0.9 < took < 5, took
    error = json.loads(body)
    assert error["field"] == "body" and error["error"].endswith(
        "bytes arrived in 1 s and it was not complete (attngan-serve --body-timeout-s)"
    )
    assert closed


def test_a_request_without_a_body_is_not_held_by_the_deadline(small):
    with httpx.Client(base_url=small.url, timeout=30) as c:
        time.sleep(1.2)  # longer than the deadline, on a kept-alive connection
        assert c.get("/v1/info").status_code == 200 and c.get("/v1/info").status_code == 200


# ---------------------------------------------------------------- paths out of the store

OUTSIDE = [  # files the server can read, and what each begins with
    ("/etc/passwd", "root:"),
    (str(ROOT / "pyproject.toml"), "[build-system]"),
    (str(ROOT / "code/attngan/serve/app.py"), '"""The FastAPI app'),
]

UP = 16  # levels up: past the root from wherever the server's files lie
HOSTILE_PATHS = [
    "/images/" + "../" * UP + "etc/passwd",
    "/images/" + "..%2F" * UP + "etc%2Fpasswd",
    "/images/" + "%2e%2e%2f" * UP + "etc%2fpasswd",
    "/images/" + "%2E%2E/" * UP + "etc/passwd",
    "/images/" + "..%5C" * UP + "etc%5Cpasswd",
    "/images/" + "%252e%252e%252f" * UP + "etc%252fpasswd",
    "/images/..",
    "/images/%2e%2e",
    "/images//etc/passwd",
    "/images/%2Fetc%2Fpasswd",
    "/images/%00",
    "/images/0123456789abcdef01234567.png%00.txt",
    "/images/" + "a" * 8000 + ".png",
    "/images/" + "%2e%2e%2f" * 3000 + "etc/passwd",
    "/static/../app.py",
    "/static/..%2Fapp.py",
    "/static/%2e%2e/app.py",
    "/static/" + "%2e%2e%2f" * UP + "etc%2fpasswd",
    "/static/%00",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=[p[:50] for p in HOSTILE_PATHS])
def test_paths_that_leave_the_store_are_404_and_never_a_file(small, path):
    with socket.create_connection(("127.0.0.1", port_of(small))) as sock:
        sock.sendall(request_head("GET", path, {"Connection": "close"}))
        status, headers, body, _ = http_response(sock, seconds=10)
    assert status == 404 and headers["content-type"] == "application/json"
    assert len(body) < 1000  # a long path is not echoed back whole
    for _, start in OUTSIDE:
        assert start.encode() not in body


def test_a_stored_image_is_served_only_under_its_own_name(small):
    with httpx.Client(base_url=small.url, timeout=30) as c:
        (sample,) = c.post("/v1/generate", json={"captions": [CAPTION]}).json()["captions"][0]["images"]
        url = sample["stages"][0]["url"]
        name = url.rsplit("/", 1)[1]
        assert c.get(url).status_code == 200
    for path in (f"/images/{name.upper()}", f"/images/{name}%00", f"/images/x/..%2F{name}", f"/images/./{name}"):
        with socket.create_connection(("127.0.0.1", port_of(small))) as sock:
            sock.sendall(request_head("GET", path, {"Connection": "close"}))
            assert http_response(sock, seconds=10)[0] == 404, path


# ---------------------------------------------------------------- health


def healthcheck_command(port: int) -> list[str]:
    """docker/Dockerfile's HEALTHCHECK command, for the server on ``port``."""
    text = (ROOT / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    (command,) = re.findall(r"^HEALTHCHECK .*? CMD (.+)$", text, re.MULTILINE)
    argv = shlex.split(command)
    assert argv[0] == "python" and ":8080/v1/health" in argv[-1]
    return [sys.executable, *argv[1:-1], argv[-1].replace(":8080/", f":{port}/")]


def healthy(live) -> bool:
    """Whether the container's HEALTHCHECK passes against ``live``."""
    return subprocess.run(healthcheck_command(port_of(live)), capture_output=True, timeout=30).returncode == 0


def test_health_fails_when_the_batching_loop_dies(cfg):
    with serve(cfg) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        health = c.get("/v1/health")
        assert health.status_code == 200 and health.json()["status"] == "ok" and healthy(live)
        state = health.json()["batcher"]
        assert state["alive"] and not state["busy"] and state["waiting"] == 0 and state["last_call_age_s"] is None

        batcher = live.service.batcher

        async def broken():
            raise RuntimeError("a bug in the batching loop")

        batcher._next_batch = broken  # the loop calls it after the batch it is waiting for
        assert c.post("/v1/generate", json={"captions": [CAPTION]}).status_code == 200
        wait_until(lambda: not batcher.alive, "the loop to stop")
        health = c.get("/v1/health")
        assert health.status_code == 503 and health.json()["status"] == "failing"
        assert health.json()["problems"] == ["the batching loop stopped on RuntimeError: a bug in the batching loop"]
        assert health.json()["batcher"]["alive"] is False
        assert not healthy(live)
        # a request is refused at once, not left to wait for its timeout (60 s)
        start = time.monotonic()
        refused = c.post("/v1/generate", json={"captions": [CAPTION]})
        assert refused.status_code == 503 and time.monotonic() - start < 5
        assert refused.json()["error"].startswith("the generator is not serving: the batching loop stopped on")


def test_health_fails_while_a_call_stalls_and_recovers_after(cfg):
    with serve(cfg, health_stall_s=0.5) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        gate = Gate(live.service.batcher)
        results = {}
        held = threading.Thread(
            target=lambda: results.update(r=httpx.post(live.url + "/v1/generate", json={"captions": [CAPTION]}))
        )
        held.start()
        assert gate.entered.wait(30)
        wait_until(lambda: c.get("/v1/health").status_code == 503, "health to fail on the held call")
        health = c.get("/v1/health").json()
        assert health["batcher"]["busy"] and health["batcher"]["call_running_s"] > 0.5
        assert health["problems"][0].startswith("a generator call has run for")
        assert not healthy(live)
        gate.open()
        held.join(30)
        assert results["r"].status_code == 200
        health = c.get("/v1/health")
        assert health.status_code == 200 and health.json()["batcher"]["last_call_age_s"] >= 0 and healthy(live)


def test_health_fails_after_a_failed_call_until_one_succeeds(cfg):
    with serve(cfg) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        batcher = live.service.batcher
        run = batcher.run_batch

        def failing(parts):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        batcher.run_batch = failing
        failed = c.post("/v1/generate", json={"captions": [CAPTION]})
        assert failed.status_code == 500 and failed.json()["error"].startswith(
            "the generator call failed (RuntimeError: CUDA"
        )
        health = c.get("/v1/health")
        assert health.status_code == 503 and health.json()["problems"] == [
            "the last generator call failed: RuntimeError: CUDA error: an illegal memory access was encountered"
        ]
        assert health.json()["batching"]["failed"] == 1 and health.json()["batcher"]["alive"]
        batcher.run_batch = run
        assert c.post("/v1/generate", json={"captions": [CAPTION]}).status_code == 200
        assert c.get("/v1/health").status_code == 200
