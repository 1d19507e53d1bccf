"""The FastAPI app: the original's two routes, the documented ``/v1`` API, the images under
``/images/``, and the web page at ``/``.

Every bad request is a 4xx whose JSON body names the field and what was expected
(``{"error": ..., "field": ...}``); a body too large is 413 and one too slow 408 (serve/body.py);
a full queue is 503 with Retry-After; a request that runs past the timeout is 504 and is
taken out of the queue. ``/v1/health`` is 503 when the batcher is not working.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import torch
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException

from ..errors import CaptionError
from . import render
from .batching import BatcherStopped, CallFailed, MicroBatcher, QueueFull
from .body import BodyError, BodyGuard
from .engine import Caption, Drawn, Engine, Rows
from .schemas import MAX_SEED, BirdRequest, BirdResponse, BirdsResponse, ErrorOut, GenerateRequest, GenerateResponse
from .settings import Settings
from .store import ImageStore

STATIC = Path(__file__).parent / "static"
ORIGINAL_PREFIX = "/api/v1.0/"
T = TypeVar("T")


class RequestError(Exception):
    """A request that cannot be answered: the ``field`` at fault (if any) and why."""

    def __init__(self, field: str | None, message: str, status: int = 422):
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.status = field, status


def _field(loc: tuple) -> str:
    """("body", "captions", 1) -> "captions[1]"; ("body",) -> "body"."""
    name = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def clip(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters: what a client sent is echoed, never at length."""
    return text[:limit] + "..." if len(text) > limit else text


def describe(error: dict[str, Any], fields: list[str], example: str) -> tuple[str, str]:
    """(field, one-line message) of a pydantic/FastAPI validation error; ``fields``: the
    body's fields, ``example``: a good body."""
    loc, kind = tuple(error.get("loc", ())), error.get("type", "")
    field = _field(loc)
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return "body", f"not valid JSON ({reason} at character {loc[-1]}); expected a JSON object such as {example}"
    if field == "body":
        if kind == "missing":
            return field, "missing; expected a JSON object (Content-Type: application/json)"
        return (
            field,
            f"expected a JSON object (Content-Type: application/json), got {type(error.get('input')).__name__}",
        )
    if kind == "missing":
        return field, "required"
    if kind == "extra_forbidden":
        return field, f"unknown field; expected one of {', '.join(fields)}"
    return field, f"{error.get('msg', 'invalid')} (got {clip(repr(error.get('input')))})"


def error_response(status: int, message: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(ErrorOut(error=message, field=field).model_dump(), status_code=status, headers=headers)


class Service:
    """The engine, the batcher and the image store behind the routes."""

    def __init__(self, engine: Engine, settings: Settings):
        settings.check()
        self.engine, self.settings = engine, settings
        self.batcher: MicroBatcher[Rows, Drawn] = MicroBatcher(
            engine.run, settings.max_batch, settings.max_wait_ms / 1000, settings.max_queue
        )
        self.store = ImageStore(settings.store_images, int(settings.store_mb * 2**20))
        # PNG encoding on a few threads of its own: a whole batch's requests at once on the
        # default pool of 40 threads would fight the generator for the CPUs and the GIL
        self.render_pool = ThreadPoolExecutor(settings.render_threads, thread_name_prefix="attngan-render")

    def counts(self, n_captions: int, n: int) -> None:
        """At most max_captions captions and max_images images each (a request of more
        images than max_batch is drawn alone, in one call)."""
        s = self.settings
        if n_captions > s.max_captions:
            raise RequestError("captions", f"{n_captions} captions; at most {s.max_captions} a request")
        if n > s.max_images:
            raise RequestError("n", f"{n} images per caption; at most {s.max_images}")

    def captions(self, texts: list[str], field: str = "captions") -> list[Caption]:
        """Checked captions: not too long, and at least one known word each."""
        s = self.settings
        checked = []
        for i, text in enumerate(texts):
            where = f"{field}[{i}]" if field == "captions" else field
            if len(text) > s.max_caption_chars:
                raise RequestError(where, f"{len(text)} characters; at most {s.max_caption_chars}")
            try:
                checked.append(self.engine.caption(text, where))
            except CaptionError as err:
                raise RequestError(where, str(err).removeprefix(f"{where}: ")) from None
        return checked

    def stages(self, sizes: list[int] | None) -> list[int]:
        """Stage indices of the requested image sizes (all without)."""
        known = self.engine.sizes
        if sizes is None:
            return list(range(len(known)))
        for i, size in enumerate(sizes):
            if size not in known:
                raise RequestError(
                    f"stages[{i}]",
                    f"{size} is not a stage of this generator; its stages are {', '.join(map(str, known))}",
                )
        return sorted({known.index(size) for size in sizes})

    async def within_timeout(self, work: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(work, self.settings.timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(
                None,
                f"the request took longer than {self.settings.timeout_s:g} s "
                "(attngan-serve --timeout-s) and was cancelled",
                status=504,
            ) from None

    async def draw(self, captions: list[Caption], n: int, seed: int | None, then: Callable[[Drawn, int], T]) -> T:
        """The images of ``n`` samples of each caption, passed with the seed to ``then`` (run
        on a worker thread: PNG encoding), within the timeout."""
        seed = secrets.randbelow(MAX_SEED + 1) if seed is None else seed

        async def work() -> T:
            drawn = await self.batcher.submit(Rows(captions, n, seed), len(captions) * n)
            return await asyncio.get_running_loop().run_in_executor(self.render_pool, then, drawn, seed)

        return await self.within_timeout(work())

    def problems(self, batcher: dict[str, Any]) -> list[str]:
        """What keeps the batcher from serving, from its ``state()``; none when it works."""
        stall = self.settings.health_stall_s
        problems = []
        if not batcher["alive"]:
            problems.append(batcher["stopped"])
        if batcher["last_call_error"] is not None:
            problems.append(f"the last generator call failed: {batcher['last_call_error']}")
        if (batcher["call_running_s"] or 0) > stall:
            problems.append(
                f"a generator call has run for {batcher['call_running_s']:.0f} s (attngan-serve --health-stall-s {stall:g})"
            )
        elif not batcher["busy"] and (batcher["oldest_waiting_s"] or 0) > stall:
            problems.append(
                f"a request has waited {batcher['oldest_waiting_s']:.0f} s with no generator call running "
                f"(attngan-serve --health-stall-s {stall:g})"
            )
        return problems

    def info(self) -> dict[str, Any]:
        e, cfg = self.engine, self.engine.cfg
        return {
            "config": {
                "file": e.cfg_file,
                "name": cfg.CONFIG_NAME,
                "dataset": cfg.DATASET_NAME,
                "data_dir": str(cfg.DATA_DIR),
            },
            "device": str(e.device),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "generator": "G_DCGAN" if cfg.GAN.B_DCGAN else "G_NET",
            "stages": [{"stage": k + 1, "size": size} for k, size in enumerate(e.sizes)],
            "attention_stages": [{"stage": k + 2, "size": size} for k, size in enumerate(e.attention_sizes)],
            "z_dim": cfg.GAN.Z_DIM,
            "condition_dim": cfg.GAN.CONDITION_DIM,
            "vocabulary_size": e.n_words,
            "example_caption": e.example_caption,
            "checkpoints": [asdict(c) for c in e.checkpoints],
            "attention_mask": "each caption's own padding (FIXES.ATTENTION_MASK), so that shared batches "
            "do not change a request's images",
            "limits": asdict(self.settings),
        }


def create_app(engine: Engine, settings: Settings | None = None) -> FastAPIOffline:
    """The ASGI app serving ``engine``; the batcher starts and stops with the app."""
    service = Service(engine, settings or Settings())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.batcher.start()
        yield
        await service.batcher.stop()
        service.render_pool.shutdown(wait=True, cancel_futures=True)

    app = FastAPIOffline(
        title="AttnGAN",
        version="0.1.0",
        lifespan=lifespan,
        description="Text-to-image generation with AttnGAN (Xu et al., CVPR 2018): the original release's "
        "`/api/v1.0/bird(s)` routes and the `/v1` API. The web page is at `/`.",
    )
    app.state.service = service

    app.add_middleware(BodyGuard, max_bytes=service.settings.max_body_bytes, timeout_s=service.settings.body_timeout_s)

    @app.exception_handler(BodyError)
    async def body_error(request: Request, exc: BodyError):
        return error_response(exc.status_code, exc.detail, "body", headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors, original = exc.errors(), request.url.path.startswith(ORIGINAL_PREFIX)
        body_model = BirdRequest if original else GenerateRequest
        example = '{"caption": "a red circle"}' if original else '{"captions": ["a red circle"]}'
        field, message = describe(errors[0], list(body_model.model_fields), example) if errors else ("body", "invalid")
        status = 400 if original else 422
        body = ErrorOut(error=f"{field}: {message}", field=field).model_dump()
        body["detail"] = jsonable_encoder(errors, custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, exc: RequestError):
        status = 400 if request.url.path.startswith(ORIGINAL_PREFIX) and exc.status == 422 else exc.status
        return error_response(status, str(exc), exc.field)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull):
        return error_response(
            503,
            f"{exc} (attngan-serve --max-queue {service.settings.max_queue})",
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(CallFailed)
    async def call_failed(request: Request, exc: CallFailed):
        return error_response(500, f"the generator call failed ({exc}); the server's log has its traceback")

    @app.exception_handler(BatcherStopped)
    async def batcher_stopped(request: Request, exc: BatcherStopped):
        return error_response(503, f"the generator is not serving: {exc}; restart attngan-serve")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error_response(
            exc.status_code,
            f"{request.method} {clip(request.url.path)}: {exc.detail}",
            headers=getattr(exc, "headers", None),
        )

    errors = {422: {"model": ErrorOut}, 503: {"model": ErrorOut}, 504: {"model": ErrorOut}}

    @app.post("/v1/generate", response_model=GenerateResponse, responses=errors, tags=["v1"])
    async def generate(body: GenerateRequest, request: Request) -> GenerateResponse:
        """Draw ``n`` images of each caption: every requested stage, and with ``attention`` each
        word's map. The same captions, ``n`` and ``seed`` give the images of ``attngan-sample
        --caption ... --n N --manualSeed SEED``; what else is batched with a request does not
        change them (beyond rounding)."""
        start = time.monotonic()
        service.counts(len(body.captions), body.n)
        captions = service.captions(body.captions)
        stages = service.stages(body.stages)
        out = render.Output(body.format, service.store, lambda name: str(request.url_for("image", name=name)))

        def respond(drawn: Drawn, seed: int) -> GenerateResponse:
            samples = render.samples(engine, drawn, captions, body.n, stages, body.attention, out)
            return GenerateResponse(
                seed=seed,
                batch={"rows": drawn.batch_rows, "requests": drawn.batch_requests},
                captions=[
                    {"caption": c.text, "tokens": c.tokens, "words": c.words, "dropped": c.dropped, "images": s}
                    for c, s in zip(captions, samples)
                ],
                elapsed=round(time.monotonic() - start, 4),
            )

        return await service.draw(captions, body.n, body.seed, respond)

    async def original(body: BirdRequest, request: Request, copies: int) -> tuple[list[dict[str, str | None]], int]:
        """(per sample the original's URLs, the seed); the attention figures for one sample only."""
        caption = service.captions([body.caption], field="caption")
        out = render.Output("url", service.store, lambda name: str(request.url_for("image", name=name)))
        return await service.draw(
            caption,
            copies,
            body.seed,
            lambda drawn, seed: (render.original_images(engine, drawn, caption[0], out, maps=copies == 1), seed),
        )

    @app.post(
        "/api/v1.0/bird",
        status_code=201,
        response_model=BirdResponse,
        tags=["original"],
        responses={400: {"model": ErrorOut}, 503: {"model": ErrorOut}, 504: {"model": ErrorOut}},
    )
    async def bird(body: BirdRequest, request: Request) -> dict:
        """The original release's route: one sample of ``caption``; ``small``/``medium``/``large``
        are the URLs of the 64/128/256 images, ``map1``/``map2`` of the attention figures."""
        start = time.monotonic()
        (urls,), seed = await original(body, request, 1)
        return {"bird": {**urls, "caption": body.caption, "elapsed": time.monotonic() - start, "seed": seed}}

    @app.post(
        "/api/v1.0/birds",
        status_code=201,
        response_model=BirdsResponse,
        tags=["original"],
        responses={400: {"model": ErrorOut}, 503: {"model": ErrorOut}, 504: {"model": ErrorOut}},
    )
    async def birds(body: BirdRequest, request: Request) -> dict:
        """The original release's route: six samples of ``caption`` (``bird1`` ... ``bird6``)."""
        start = time.monotonic()
        samples, seed = await original(body, request, 6)
        birds = {f"bird{i + 1}": {k: urls[k] for k in ("small", "medium", "large")} for i, urls in enumerate(samples)}
        return {"bird": {**birds, "caption": body.caption, "elapsed": time.monotonic() - start, "seed": seed}}

    @app.get(
        "/images/{name}",
        name="image",
        tags=["images"],
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorOut}},
    )
    async def image(name: str) -> Response:
        """A PNG of an earlier response, while the bounded store still holds it (oldest out)."""
        png = service.store.get(name)
        if png is None:
            return error_response(
                404,
                f"image {clip(repr(name))} is not (or no longer) in the store; the store keeps the "
                f"last {service.settings.store_images} images",
                "name",
            )
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/v1/health", tags=["v1"], responses={503: {"description": "the batcher is not working"}})
    async def health() -> JSONResponse:
        """Answers while the model works. 200 while the batcher works, 503 with ``problems``
        when its loop has stopped, when its last generator call failed, or when a call (or a
        request waiting with no call running) is older than ``--health-stall-s``: the
        container's HEALTHCHECK. Also the queue, the batching counters and the store."""
        batcher = service.batcher.state()
        problems = service.problems(batcher)
        body = {
            "status": "failing" if problems else "ok",
            "problems": problems,
            "batcher": batcher,
            "batching": service.batcher.stats.as_dict(),
            "store": service.store.stats(),
        }
        return JSONResponse(body, status_code=503 if problems else 200)

    @app.get("/v1/info", tags=["v1"])
    async def info() -> dict:
        """The config, the stages and their sizes, the vocabulary size, the checkpoints (with
        sha256) and the server's limits."""
        return service.info()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
