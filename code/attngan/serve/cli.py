"""``attngan-serve``: load the generator once and serve the API and the web page."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields

import torch

from ..cli import USER_ERRORS, base_parser, report, setup
from ..errors import OptionError
from .settings import Settings


def parser() -> argparse.ArgumentParser:
    p = base_parser(
        "Serve a trained AttnGAN generator (TRAIN.NET_G, TRAIN.NET_E) over HTTP: the original's "
        "/api/v1.0/bird(s), the /v1 API (docs at /docs) and a web page at /.",
        "cfg/eval_bird.yml",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument("--threads", type=int, default=None, help="PyTorch's CPU threads (default: PyTorch's, one per CPU)")
    for f in fields(Settings):
        default = "16 on the CPU, 32 on CUDA" if f.name == "max_batch" else f.default
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(f.default),
            default=None,
            help=f"{f.metadata['help']} (default {default})",
        )
    return p


# On two CPU cores, calls of up to 32 images were no faster per image than of 16, and left the
# process 12-19 % larger after 1,000 requests than after the warm-up (3 % with 16): the
# allocator keeps the larger activations' memory (docs/serving.md, Benchmark).
CPU_MAX_BATCH = 16


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import uvicorn

        from .app import create_app
        from .engine import Engine
    except ModuleNotFoundError as err:
        print(
            f"error (ModuleNotFoundError): attngan-serve needs the serve extra ({err}); "
            "install it with: pip install -e '.[serve]'",
            file=sys.stderr,
        )
        return 2
    try:
        settings = Settings(
            **{f.name: getattr(args, f.name) for f in fields(Settings) if getattr(args, f.name) is not None}
        )
        settings.check()
        if args.threads is not None and args.threads < 1:
            raise OptionError(f"--threads must be > 0, got {args.threads}")
        cfg, device, _ = setup(args)
        if args.max_batch is None and device.type == "cpu":
            settings.max_batch = CPU_MAX_BATCH
        if args.threads:
            torch.set_num_threads(args.threads)
        app = create_app(Engine(cfg, device, args.cfg_file), settings)
    except USER_ERRORS as err:
        return report(err)
    logging.getLogger("attngan").info("serving on http://%s:%d/ (API docs at /docs)", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=not args.no_access_log)
    return 0
