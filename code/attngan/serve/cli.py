"""``attngan-serve``: load the generator once and serve the API and the web page."""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields

import torch

from ..cli import USER_ERRORS, base_parser, report, setup
from .settings import HALF_THE_CPUS, Settings


def parser() -> argparse.ArgumentParser:
    p = base_parser("Serve a trained AttnGAN generator (TRAIN.NET_G, TRAIN.NET_E) over HTTP: the original's "
                    "/api/v1.0/bird(s), the /v1 API (docs at /docs) and a web page at /.", "cfg/eval_bird.yml")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument("--threads", type=int, default=HALF_THE_CPUS,
                   help="PyTorch's CPU threads (default: half the CPUs, %(default)s here; the rest answer requests "
                        "and encode PNGs: a generator whose threads wait for busy CPUs slows down manyfold)")
    for f in fields(Settings):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                       help=f"{f.metadata['help']} (default %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import uvicorn

        from .app import create_app
        from .engine import Engine
    except ModuleNotFoundError as err:
        print(f"error (ModuleNotFoundError): attngan-serve needs the serve extra ({err}); "
              "install it with: pip install -e '.[serve]'", file=sys.stderr)
        return 2
    try:
        settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
        settings.check()
        if args.threads < 1:
            raise ValueError(f"--threads must be > 0, got {args.threads}")
        cfg, device, _ = setup(args)
        torch.set_num_threads(args.threads)
        app = create_app(Engine(cfg, device, args.cfg_file), settings)
    except USER_ERRORS as err:
        return report(err)
    logging.getLogger("attngan").info("serving on http://%s:%d/ (API docs at /docs)", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=not args.no_access_log)
    return 0
