"""``glassforge serve``: the HTTP server (FastAPI and uvicorn are imported only when it runs)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="HTTP server: web UI, A1111 and ComfyUI APIs, node editor, job queue, history, metrics",
        description="Serve the A1111-compatible API (/sdapi/v1), glassforge's own API (/api/v1), the web UI (/), the ComfyUI API and node editor (/comfy/) "
        "and Prometheus metrics (/metrics). Loopback only unless --host says otherwise. "
        "OpenAPI docs at /docs.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860, as A1111)")
    p.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="DIR",
        help="checkpoint folder (repeatable); also $GLASSFORGE_MODELS, models/Stable-diffusion, ...",
    )
    p.add_argument(
        "--data", default=None, metavar="DIR", help="history database and images (~/.glassforge/server)"
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    p.add_argument(
        "--preview",
        choices=["auto", "full", "approx"],
        default="auto",
        help="live previews: VAE decode (full), latent→RGB (approx), or full for small images (auto)",
    )
    p.add_argument("--max-models", type=int, default=1, help="checkpoints kept loaded (default 1)")
    p.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="history database: sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB "
        "(default: history.sqlite3 in --data)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="require this key on every route but /health and the web UI's files (header "
        "'Authorization: Bearer KEY' or 'X-API-Key: KEY'); default $GLASSFORGE_API_KEY, else none",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=32,
        metavar="MB",
        help="largest request body, uploads included (default 32 MB; larger ones get a 413)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN (e.g. https://example.org) call the API (repeatable; CORS is off by default)",
    )
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace):
    import os

    from .config import ServerConfig, default_data_dir

    api_key = args.api_key if args.api_key is not None else os.environ.get("GLASSFORGE_API_KEY") or None
    return ServerConfig(
        host=args.host,
        port=args.port,
        models_dirs=tuple(args.models),
        data_dir=args.data or default_data_dir(),
        device=args.device,
        precision=args.precision,
        preview=args.preview,
        max_models=args.max_models,
        db_url=args.db,
        api_key=api_key,
        max_body_bytes=int(args.max_body_mb * 2**20),
        cors_origins=tuple(args.cors_origin),
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    config = config_from_args(args)
    app = create_app(config)
    state = app.state.glassforge
    runtime = state.manager.runtime
    exposed = config.host not in ("127.0.0.1", "localhost", "::1")
    print(
        f"glassforge serve: http://{config.host}:{config.port}/  (web UI /, A1111 API /sdapi/v1, ComfyUI API + "
        f"editor /comfy/, own API /api/v1, docs /docs)\n"
        f"  data {config.data_dir}  device {runtime.device.type} {runtime.precision}  "
        f"models: {', '.join(state.model_names()) or 'none found'}\n"
        f"  history {state.history.where}  API key {'required' if config.api_key else 'off'}  "
        f"CORS {', '.join(config.cors_origins) or 'off'}",
        file=sys.stderr,
    )
    if exposed and not config.api_key:
        print(
            f"glassforge serve: warning: listening on {config.host} without --api-key: anyone who can reach "
            "this port can run jobs and read the history",
            file=sys.stderr,
        )
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
    return 0
