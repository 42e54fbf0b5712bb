"""`thinkfl serve`."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from thinkfl.agent import Budget
from thinkfl.agent.policy import Policy
from thinkfl.cli.app import app
from thinkfl.cli.modelcmd import _pull_with_progress
from thinkfl.cli.ui import (
    BaseUrlOption,
    MaxDepthOption,
    ModelOption,
    PolicyOption,
    _fail,
    _positive,
    console,
)
from thinkfl.models.factory import PolicyKind, default_dialogue, make_policy
from thinkfl.models.registry import (
    DEFAULT_MODEL,
    REGISTRY,
)

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@app.command()
def serve(
    store: Annotated[
        Path, typer.Option(help="the store to receive into and investigate (created if absent)")
    ],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port (4318: OTLP/HTTP's)")] = 4318,
    token_file: Annotated[
        Path | None,
        typer.Option(help="file holding the bearer token (default: $THINKFL_API_TOKEN)"),
    ] = None,
    policy: PolicyOption = PolicyKind.EXPERT,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    workers: Annotated[int, typer.Option(min=1, help="investigations run at once")] = 2,
    queue_size: Annotated[
        int, typer.Option(min=1, help="investigations waiting; more are answered 429")
    ] = 16,
    max_body_mb: Annotated[
        float, typer.Option(callback=_positive, help="largest request body, MB (> 0)")
    ] = 16.0,
    retention_hours: Annotated[
        float | None,
        typer.Option(callback=_positive, help="drop received batches older than this (> 0)"),
    ] = None,
    result_webhook: Annotated[
        str | None, typer.Option(help="POST each finished investigation (JSON) to this URL")
    ] = None,
    max_depth: MaxDepthOption = 10,
) -> None:
    """Receive OTLP/HTTP telemetry and Alertmanager alerts; investigate; serve the results.

    Endpoints: POST /v1/traces /v1/metrics /v1/logs (OTLP), /v1/alerts (Alertmanager v4),
    /v1/investigations; GET /v1/cases, /v1/investigations/{id}, /investigations/{id} (report
    page), /healthz, /docs. Every endpoint but /healthz needs 'Authorization: Bearer TOKEN'.
    """
    import logging

    import uvicorn

    from thinkfl.serve.app import ServeSettings, create_app

    token = _read_token(token_file)
    if token is None and host not in LOOPBACK:
        raise _fail(
            f"--host {host}: a server reachable from other machines needs a bearer token. "
            "Fix: set THINKFL_API_TOKEN or pass --token-file"
        )
    # listen before anything is created: a port in use leaves no store folder behind
    listener = _listen(host, port)
    if policy == PolicyKind.LOCAL and (model is None or model in REGISTRY):
        _pull_with_progress(model or DEFAULT_MODEL)
    shared = (
        None if policy == PolicyKind.EXPERT else make_policy(policy, model, base_url, None, False)
    )

    def investigator() -> Policy:
        # the expert keeps per-case state: one per investigation; model backends are shared
        return shared if shared is not None else make_policy(PolicyKind.EXPERT)

    settings = ServeSettings(
        store=store,
        token=token,
        max_body_bytes=int(max_body_mb * 2**20),
        workers=workers,
        queue_size=queue_size,
        retention_hours=retention_hours,
        result_webhook=result_webhook,
        budget=Budget(max_depth=max_depth, dialogue=default_dialogue(policy, model)),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server_app = create_app(settings, investigator)
    console.print(
        f"[bold]thinkfl serve[/]: store {store}, http://{host}:{port} "
        f"(token {'required' if token else 'off: loopback only'}), investigator {policy.value}",
        soft_wrap=True,
    )
    config = uvicorn.Config(server_app, host=host, port=port, log_level="info", access_log=False)
    uvicorn.Server(config).run(sockets=[listener])


def _read_token(token_file: Path | None) -> str | None:
    """The bearer token from --token-file (which must hold one) or $THINKFL_API_TOKEN."""
    if token_file is None:
        return os.environ.get("THINKFL_API_TOKEN", "").strip() or None
    token = token_file.read_text(encoding="utf-8").strip()
    if not token:
        raise _fail(
            f"{token_file}: the token file is empty, and an empty file must not turn "
            "authentication off. Fix: write the bearer token into it (e.g. "
            f"`openssl rand -hex 32 > {token_file}`)"
        )
    return token


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or one clear line when it cannot be had."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as error:
        fix = (
            "stop the process using it, or choose another --port"
            if error.errno == errno.EADDRINUSE
            else "give an address of this machine with --host (e.g. 127.0.0.1 or 0.0.0.0)"
        )
        reason = str(error.strerror or error).split(" (while attempting")[0]
        raise _fail(f"--host {host} --port {port}: cannot listen ({reason}). Fix: {fix}") from None
