"""attngan-serve against a real server: uvicorn on 127.0.0.1 on a free port, httpx as the
client, a tiny random-weight generator on generated shapes data. The original's routes and
fields, /v1/generate equal to attngan-sample, every bad request a 4xx naming its field,
concurrent requests batched and equal to the same requests served alone, a full queue,
timeouts, the bounded image store, start-up errors and the command itself."""

import asyncio
import contextlib
import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import ROOT
from optional import need

for extra in ("fastapi", "uvicorn"):
    need(extra, "the serve extra: pip install -e '.[serve]'")
httpx = need("httpx", "the test extra: pip install -e '.[test]'")

from attngan.cli import sample_main  # noqa: E402
from attngan.data.text import load_text_data  # noqa: E402
from attngan.serve.batching import MicroBatcher  # noqa: E402
from attngan.serve.cli import main as serve_main  # noqa: E402
from attngan.serve.store import ImageStore  # noqa: E402
from attngan.visualize import LABEL_HEIGHT  # noqa: E402
from serving import CAPTION, Gate, httpx, pixels, png_of, serve, wait_until  # noqa: E402


@pytest.fixture(scope="module")
def cfg(serve_cfg):
    return serve_cfg


@pytest.fixture(scope="module")
def server(cfg):
    with serve(cfg) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


# ---------------------------------------------------------------- the original's routes


def test_original_bird_route_has_its_fields_and_the_sizes_its_names_say(client, cfg):
    response = client.post("/api/v1.0/bird", json={"caption": CAPTION})
    assert response.status_code == 201
    bird = response.json()["bird"]
    assert set(bird) == {"small", "medium", "large", "map1", "map2", "caption", "elapsed", "seed"}
    assert bird["caption"] == CAPTION and bird["elapsed"] > 0
    assert pixels(png_of({"base64": None, "url": bird["small"]}, client)).shape == (64, 64, 3)
    assert pixels(png_of({"base64": None, "url": bird["medium"]}, client)).shape == (128, 128, 3)
    assert bird["large"] is None and bird["map2"] is None  # this generator has two stages
    words = CAPTION.split()
    assert all(w in load_text_data(cfg.DATA_DIR, 10).wordtoix for w in words)
    # map1: stage 2's attention figure (image, then one map per word, title and labels above)
    assert pixels(png_of({"base64": None, "url": bird["map1"]}, client)).shape == (
        2 * LABEL_HEIGHT + 128,
        (1 + len(words)) * 128,
        3,
    )
    assert bird["small"].startswith(f"{client.base_url.scheme}://{client.base_url.netloc.decode()}/images/")


def test_original_birds_route_gives_six_different_samples(client):
    response = client.post("/api/v1.0/birds", json={"caption": CAPTION, "seed": 3})
    assert response.status_code == 201
    birds = response.json()["bird"]
    assert set(birds) == {f"bird{i}" for i in range(1, 7)} | {"caption", "elapsed", "seed"}
    images = {
        size: [png_of({"base64": None, "url": birds[f"bird{i}"][size]}, client) for i in range(1, 7)]
        for size in ("small", "medium")
    }
    assert all(pixels(p).shape == (64, 64, 3) for p in images["small"])
    assert len(set(images["medium"])) == 6 and all(pixels(p).shape == (128, 128, 3) for p in images["medium"])
    assert all(birds[f"bird{i}"]["large"] is None for i in range(1, 7))
    # the same seed gives the same six samples as /v1/generate with n=6
    v1 = client.post("/v1/generate", json={"captions": [CAPTION], "n": 6, "seed": 3, "format": "base64"})
    assert [[png_of(s["stages"][k]) for s in v1.json()["captions"][0]["images"]] for k in (0, 1)] == [
        images["small"],
        images["medium"],
    ]


@pytest.mark.parametrize(
    "body, content, message",
    [
        (None, "not json", "body: not valid JSON"),
        ({}, None, "caption: required"),
        ({"caption": 7}, None, "caption: Input should be a valid string"),
        ({"caption": "zebra okapi"}, None, "caption: caption 'zebra okapi' has no word in the vocabulary"),
    ],
)
def test_original_routes_answer_bad_requests_with_400(client, body, content, message):
    for route in ("/api/v1.0/bird", "/api/v1.0/birds"):
        response = (
            client.post(route, json=body)
            if content is None
            else client.post(route, content=content, headers={"content-type": "application/json"})
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith(message)


# ---------------------------------------------------------------- /v1/generate


def test_generate_equals_attngan_sample_byte_for_byte(client, cfg, tmp_path, capsys):
    caption = "a red zebra circle at the top"  # 'zebra' is out of the vocabulary
    out = tmp_path / "sample"
    assert (
        sample_main(["--cfg", cfg.FILE, "--caption", caption, "--n", "2", "--manualSeed", "11", "--out", str(out)]) == 0
    )
    capsys.readouterr()
    response = client.post(
        "/v1/generate", json={"captions": [caption], "n": 2, "seed": 11, "attention": True, "format": "base64"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["seed"] == 11 and body["batch"] == {"rows": 2, "requests": 1}
    (result,) = body["captions"]
    assert result["tokens"] == ["a", "red", "zebra", "circle", "at", "the", "top"]
    assert result["dropped"] == ["zebra"] and result["words"] == ["a", "red", "circle", "at", "the", "top"]
    stem = "0_a_red_zebra_circle_at_the_top"
    for s, sample in enumerate(result["images"]):
        assert [png_of(img) for img in sample["stages"]] == [
            (out / f"{stem}_{s}_g{k}.png").read_bytes() for k in range(2)
        ]
        assert png_of(sample["attention_figure"]) == (out / f"{stem}_{s}_attention.png").read_bytes()
        (stage,) = sample["attention"]
        assert stage["size"] == 128 and [w["word"] for w in stage["words"]] == result["words"]
        assert all(pixels(png_of(w["image"])).shape == (128, 128, 3) for w in stage["words"])
    # the same images as URLs
    by_url = client.post("/v1/generate", json={"captions": [caption], "n": 2, "seed": 11}).json()
    assert png_of(by_url["captions"][0]["images"][1]["stages"][1], client) == (out / f"{stem}_1_g1.png").read_bytes()


def test_several_captions_and_chunks_match_attngan_sample_within_a_grey_level(client, cfg, tmp_path, capsys):
    # Two captions of different lengths, 3 images each: attngan-sample draws batches of 2 + 1
    # copies of each caption; the server draws all 6 rows in one call.
    captions = ["a green square", "there is a small blue triangle in the bottom right corner"]
    out = tmp_path / "sample"
    argv = ["--cfg", cfg.FILE, "--n", "3", "--manualSeed", "5", "--out", str(out)]
    assert sample_main(argv + [a for c in captions for a in ("--caption", c)]) == 0
    capsys.readouterr()
    body = client.post("/v1/generate", json={"captions": captions, "n": 3, "seed": 5, "format": "base64"}).json()
    for i, (caption, result) in enumerate(zip(captions, body["captions"])):
        for s, sample in enumerate(result["images"]):
            for k, img in enumerate(sample["stages"]):
                expected = pixels((out / f"{i}_{'_'.join(caption.split())}_{s}_g{k}.png").read_bytes())
                assert np.abs(pixels(png_of(img)).astype(int) - expected).max() <= 1


def test_stages_formats_and_seeds(client):
    body = client.post("/v1/generate", json={"captions": [CAPTION], "stages": [128], "format": "base64"}).json()
    (sample,) = body["captions"][0]["images"]
    assert [(img["width"], img["height"]) for img in sample["stages"]] == [(128, 128)]
    assert sample["attention"] is None and sample["attention_figure"] is None and sample["stages"][0]["url"] is None
    # without a seed the server draws one and says which: asking for it again gives the same image
    again = client.post(
        "/v1/generate", json={"captions": [CAPTION], "stages": [128], "format": "base64", "seed": body["seed"]}
    ).json()
    assert png_of(again["captions"][0]["images"][0]["stages"][0]) == png_of(sample["stages"][0])
    other = client.post(
        "/v1/generate", json={"captions": [CAPTION], "stages": [128], "format": "base64", "seed": body["seed"] + 1}
    ).json()
    assert png_of(other["captions"][0]["images"][0]["stages"][0]) != png_of(sample["stages"][0])


def test_info_and_health(client, cfg):
    info = client.get("/v1/info").json()
    assert info["config"]["name"] == "tiny" and info["config"]["file"] == cfg.FILE
    assert info["stages"] == [{"stage": 1, "size": 64}, {"stage": 2, "size": 128}]
    assert info["attention_stages"] == [{"stage": 2, "size": 128}]
    assert info["vocabulary_size"] == load_text_data(cfg.DATA_DIR, 10).n_words
    files = {"generator": cfg.TRAIN.NET_G, "text_encoder": cfg.TRAIN.NET_E}
    assert {c["role"]: (c["path"], c["sha256"]) for c in info["checkpoints"]} == {
        role: (path, hashlib.sha256(open(path, "rb").read()).hexdigest()) for role, path in files.items()
    }
    assert client.post("/v1/generate", json={"captions": [CAPTION]}).status_code == 200
    health = client.get("/v1/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["problems"] == []
    batcher = health.json()["batcher"]
    assert batcher["alive"] is True and batcher["busy"] is False and batcher["waiting"] == 0
    assert batcher["last_call_error"] is None and 0 <= batcher["last_call_age_s"] < 30


def test_openapi_docs_and_the_page_load_nothing_from_elsewhere(client):
    schema = client.get("/openapi.json").json()
    assert {"/v1/generate", "/v1/health", "/v1/info", "/api/v1.0/bird", "/api/v1.0/birds"} <= set(schema["paths"])
    assert set(schema["components"]["schemas"]["GenerateRequest"]["properties"]) == {
        "captions",
        "n",
        "seed",
        "stages",
        "attention",
        "format",
    }
    for page in ("/", "/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        links = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert links and all(link.startswith("/") for link in links), links  # no CDN
        assert all(client.get(link).status_code == 200 for link in links)


BAD_REQUESTS = [  # (body or raw text, status, field, start of the message)
    ("not json", 422, "body", "body: not valid JSON"),
    ("", 422, "body", "body: missing"),
    ([1, 2], 422, "body", "body: expected a JSON object"),
    ({"captions": "a red circle"}, 422, "captions", "captions: Input should be a valid list"),
    ({"captions": ["a red circle", 3]}, 422, "captions[1]", "captions[1]: Input should be a valid string"),
    ({"captions": []}, 422, "captions", "captions: List should have at least 1 item"),
    ({"captions": ["a red circle", ""]}, 422, "captions[1]", "captions[1]: caption '' has no words"),
    ({"captions": ["   !!"]}, 422, "captions[0]", "captions[0]: caption '   !!' has no words"),
    ({"captions": ["日本語"]}, 422, "captions[0]", "captions[0]: caption '日本語' has no ASCII word"),
    (
        {"captions": ["zebra okapi"]},
        422,
        "captions[0]",
        "captions[0]: caption 'zebra okapi' has no word in the vocabulary",
    ),
    ({"captions": ["a red circle"] * 9}, 422, "captions", "captions: 9 captions; at most 8"),
    ({"captions": ["a red circle"], "n": 9}, 422, "n", "n: 9 images per caption; at most 8"),
    ({"captions": ["a red circle"], "n": 0}, 422, "n", "n: Input should be greater than or equal to 1"),
    ({"captions": ["a red circle"], "n": "2"}, 422, "n", "n: Input should be a valid integer"),
    ({"captions": ["red " * 80]}, 422, "captions[0]", "captions[0]: 320 characters; at most 300"),
    (
        {"captions": ["a red circle"], "stages": [64, 256]},
        422,
        "stages[1]",
        "stages[1]: 256 is not a stage of this generator; its stages are 64, 128",
    ),
    ({"captions": ["a red circle"], "stages": ["big"]}, 422, "stages[0]", "stages[0]: Input should be a valid integer"),
    ({"captions": ["a red circle"], "seed": -1}, 422, "seed", "seed: Input should be greater than or equal to 0"),
    ({"captions": ["a red circle"], "seed": 2**32}, 422, "seed", "seed: Input should be less than or equal to"),
    ({"captions": ["a red circle"], "format": "jpeg"}, 422, "format", "format: Input should be 'url' or 'base64'"),
    (
        {"captions": ["a red circle"], "attention": "yes"},
        422,
        "attention",
        "attention: Input should be a valid boolean",
    ),
    ({"caption": "a red circle"}, 422, "captions", "captions: required"),
    ({"captions": ["a red circle"], "colour": 1}, 422, "colour", "colour: unknown field; expected one of captions"),
    ('{"captions": ["' + "a " * 40000 + '"]}', 413, "body", "body: 80018 bytes; at most 65536"),
]


@pytest.mark.parametrize("body, status, field, message", BAD_REQUESTS, ids=[m for *_, m in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_naming_the_field(client, body, status, field, message):
    if isinstance(body, str):
        response = client.post("/v1/generate", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post("/v1/generate", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["field"] == field and response.json()["error"].startswith(message)


def test_wrong_content_type_method_and_path_are_4xx_json(client):
    response = client.post(
        "/v1/generate", content='{"captions": ["a red circle"]}', headers={"content-type": "text/plain"}
    )
    assert response.status_code == 422 and response.json()["error"].startswith("body: expected a JSON object")
    for method, path, status in (("GET", "/v1/generate", 405), ("GET", "/nowhere", 404), ("GET", "/images/x.png", 404)):
        response = client.request(method, path)
        assert response.status_code == status and "error" in response.json()


# ---------------------------------------------------------------- batching, queue, timeouts


async def post_all(url: str, bodies: list[dict]) -> list:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        return await asyncio.gather(*(c.post("/v1/generate", json=b) for b in bodies))


def test_50_concurrent_requests_are_batched_and_equal_to_each_served_alone(server, client):
    words = ["red", "green", "blue", "circle", "square", "at", "the", "top", "left", "on", "a", "background"]
    rng = np.random.default_rng(0)
    bodies = [
        {
            "captions": [" ".join(rng.choice(words, size=int(rng.integers(1, 12))))],
            "n": int(rng.integers(1, 3)),
            "seed": i,
            "format": "base64",
        }
        for i in range(50)
    ]
    stats = server.service.batcher.stats
    before = (stats.batches, stats.requests)
    gate = Gate(server.service.batcher)
    results = {}
    thread = threading.Thread(target=lambda: results.update(r=asyncio.run(post_all(server.url, bodies))))
    thread.start()
    assert gate.entered.wait(30)
    # the model is held inside its first call: health still answers, and says so
    wait_until(
        lambda: client.get("/v1/health").json()["batcher"]["waiting"] == 50 - gate.held, "the requests to queue up"
    )
    assert client.get("/v1/health").json()["batcher"]["busy"] is True
    gate.open()
    thread.join(60)
    responses = results["r"]
    assert [r.status_code for r in responses] == [200] * 50
    batches, requests = stats.batches - before[0], stats.requests - before[1]
    assert requests == 50 and batches < 10
    assert max(r.json()["batch"]["rows"] for r in responses) > 16  # no request has more than 2 rows
    assert max(r.json()["batch"]["requests"] for r in responses) > 8
    # each request alone: the same images within one grey level
    for body, response in zip(bodies, responses):
        alone = client.post("/v1/generate", json=body).json()
        assert alone["batch"]["requests"] == 1
        for shared, single in zip(response.json()["captions"][0]["images"], alone["captions"][0]["images"]):
            for a, b in zip(shared["stages"], single["stages"]):
                assert np.abs(pixels(png_of(a)).astype(int) - pixels(png_of(b))).max() <= 1


def test_full_queue_is_503_with_retry_after(cfg):
    with serve(cfg, max_queue=2) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        gate = Gate(live.service.batcher)
        body = {"captions": [CAPTION], "format": "base64"}
        results = {}
        first = threading.Thread(target=lambda: results.update(first=asyncio.run(post_all(live.url, [body]))))
        first.start()
        assert gate.entered.wait(30)  # the first request is in the model: the queue is empty
        queued = threading.Thread(target=lambda: results.update(queued=asyncio.run(post_all(live.url, [body] * 2))))
        queued.start()
        wait_until(lambda: c.get("/v1/health").json()["batcher"]["waiting"] == 2, "two requests waiting")
        full = c.post("/v1/generate", json=body)
        assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
        assert full.json()["error"].startswith("the queue is full (2 requests waiting)")
        gate.open()
        first.join(30), queued.join(30)
        assert [r.status_code for r in results["first"] + results["queued"]] == [200] * 3
        assert c.get("/v1/health").json()["batching"]["rejected"] == 1


def test_a_request_larger_than_max_batch_is_drawn_alone(cfg):
    with serve(cfg, max_batch=2) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        body = {
            "captions": ["a red circle", "a blue square on a green background"],
            "n": 3,
            "seed": 4,
            "format": "base64",
        }
        response = c.post("/v1/generate", json=body)
        assert response.status_code == 200 and response.json()["batch"] == {"rows": 6, "requests": 1}
        assert [len(r["images"]) for r in response.json()["captions"]] == [3, 3]


def test_a_request_that_times_out_is_cancelled(cfg):
    with serve(cfg, timeout_s=0.5) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        batcher = live.service.batcher
        gate = Gate(batcher)
        results = {}
        bodies = [{"captions": [CAPTION], "seed": s, "format": "base64"} for s in (1, 2)]
        held = threading.Thread(target=lambda: results.update(held=asyncio.run(post_all(live.url, bodies[:1]))))
        held.start()
        assert gate.entered.wait(30)
        queued = c.post("/v1/generate", json=bodies[1])  # waits behind the held call, gives up after 0.5 s
        held.join(30)
        for response in (results["held"][0], queued):
            assert response.status_code == 504
            assert response.json()["error"].startswith("the request took longer than 0.5 s")
        gate.open()
        wait_until(lambda: not batcher.busy, "the held call to end")
        ok = c.post("/v1/generate", json=bodies[0])
        assert ok.status_code == 200 and ok.json()["batch"]["requests"] == 1
        # the queued request never ran: the only model calls were the held one and the last one
        health = c.get("/v1/health").json()["batching"]
        assert health["cancelled"] == 2 and health["batches"] == 2 and health["requests"] == 2


def test_batches_take_whole_requests_oldest_first_up_to_max_batch():
    calls = []

    def run(payloads):
        calls.append(list(payloads))
        return [p.upper() for p in payloads]

    async def submit_all():
        batcher = MicroBatcher(run, max_batch=4, max_wait_s=0.05, max_queue=10)
        await batcher.start()
        # all five queue before the batcher wakes: 11 rows
        results = await asyncio.gather(
            *(batcher.submit(name, rows) for name, rows in [("a", 1), ("b", 2), ("c", 2), ("d", 5), ("e", 1)])
        )
        await batcher.stop()
        return results, batcher.stats

    results, stats = asyncio.run(submit_all())
    assert results == ["A", "B", "C", "D", "E"]
    # a+b fit in 4 rows, c+d do not, d (5 rows) runs alone, e waits out the window alone
    assert calls == [["a", "b"], ["c"], ["d"], ["e"]]
    assert (stats.batches, stats.rows, stats.largest_batch) == (4, 11, 5)


# ---------------------------------------------------------------- the image store


def test_image_store_keeps_the_newest_within_count_and_bytes():
    store = ImageStore(max_images=3, max_bytes=100)
    names = [store.put(bytes([i]) * 10) for i in range(4)]
    assert store.get(names[0]) is None and [store.get(n) for n in names[1:]] == [bytes([i]) * 10 for i in (1, 2, 3)]
    big = store.put(b"x" * 85)  # 85 + 10 <= 100: only the newest small one stays
    assert store.get(names[3]) == bytes([3]) * 10 and store.get(names[2]) is None and store.get(big) == b"x" * 85
    assert store.stats()["bytes"] == 95 and store.stats()["evicted"] == 3
    with pytest.raises(ValueError, match="101 bytes does not fit an image store of 100 bytes"):
        store.put(b"y" * 101)


def test_served_images_stay_bounded(cfg):
    with serve(cfg, store_images=4) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        urls = [
            c.post("/v1/generate", json={"captions": [CAPTION], "seed": s}).json()["captions"][0]["images"][0]["stages"]
            for s in range(3)
        ]
        assert [c.get(u["url"]).status_code for u in urls[0]] == [404, 404]  # the oldest two are gone
        assert [c.get(u["url"]).status_code for u in urls[1] + urls[2]] == [200] * 4
        assert c.get("/v1/health").json()["store"]["images"] == 4


# ---------------------------------------------------------------- start-up and the command


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ["--set", "TRAIN.NET_G=nowhere/netG.pth"],
            r"error \(CheckpointError\): checkpoint not found: nowhere/netG.pth",
        ),
        (["--set", "GAN.GF_DIM=8"], r"error \(CheckpointError\): .*netG_epoch_3.pth: key .* has shape"),
        (["--set", "TRAIN.NOT_A_KEY=1"], r"error \(ConfigError\): .*NOT_A_KEY"),
        (["--max-batch", "0"], r"error \(OptionError\): --max-batch must be > 0, got 0"),
        (["--threads", "0"], r"error \(OptionError\): --threads must be > 0, got 0"),
    ],
)
def test_start_up_errors_are_one_line(cfg, capsys, change, message):
    assert serve_main(["--cfg", cfg.FILE, "--port", "1", *change]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(message, err[0]), err


def test_attngan_serve_command_serves(cfg):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "attngan.serve",
            "--cfg",
            cfg.FILE,
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}, "PYTHONPATH": str(ROOT / "code")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:

            def up():
                assert process.poll() is None, process.stdout.read().decode()
                time.sleep(0.1)  # leave the CPU to the starting server
                with contextlib.suppress(httpx.TransportError):
                    return c.get("/v1/health").status_code == 200

            wait_until(up, "attngan-serve to answer", seconds=60)
            response = c.post("/api/v1.0/bird", json={"caption": CAPTION})
            assert response.status_code == 201 and c.get(response.json()["bird"]["medium"]).status_code == 200
            # the command's CPU defaults: batches of 16, OpenMP threads that sleep when idle
            info = c.get("/v1/info").json()
            assert info["limits"]["max_batch"] == 16 and info["omp_wait_policy"] == "PASSIVE"
    finally:
        process.terminate()
        process.wait(30)
