"""The llama.cpp engine behind local inference and GRPO rollouts, on SmolLM2-135M: its token
log-probs against transformers on the same tokens, a LoRA adapter swapped in after an
optimizer step, prefix reuse, and hot sampling that stays inside the choices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thinkfl.agent import ExpertPolicy, Turn, run_case
from thinkfl.agent.protocol import parse_tool_calls, system_prompt, user_prompt
from thinkfl.agent.seen import shown_identifiers
from thinkfl.models.backends import turn_choices_of
from thinkfl.models.engine import EngineError, LlamaEngine
from thinkfl.telemetry import TelemetryStore, ingest
from thinkfl.tools import TOOL_SPECS, Toolbox

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[1] / "src" / "thinkfl" / "data" / "demo-aiops2022"
# Q4_1 weights in llama.cpp against the same weights dequantized to float32 in transformers
# (8-bit activations in llama.cpp's dot products, rounded differently by AVX2 and AVX-512
# kernels). Log-probs are compared on average (what the GRPO importance ratio sees), and token
# by token where the token is likely enough for its probability to matter: a rare sampled
# token differed by 0.59 nats on an AVX-512 CPU while its probability moved by under 0.04.
# Measured: AVX2 (an earlier session), mean |diff log p| 0.04-0.06, max 0.21-0.34 nats;
# AVX-512 EPYC (2026-12-07), mean
# 0.02-0.07, max 0.59 nats, max |diff p| 0.025-0.060.
MEAN_LOGPROB_TOLERANCE = 0.1  # nats, averaged over a reply's tokens
MAX_LOGPROB_TOLERANCE = 0.5  # nats, any token whose probability moved by ...
NEGLIGIBLE_PROBABILITY_SHIFT = 0.05  # ... at least this much


@pytest.fixture(scope="module")
def demo_turn(tmp_path_factory) -> Turn:
    """The demo case part-way: what the expert was shown in its first three calls."""
    out = tmp_path_factory.mktemp("demo") / "store"
    ingest("aiops2022", DEMO, out)
    store = TelemetryStore.open(out)
    box = Toolbox(store, store.cases()[0])
    steps = run_case(box, ExpertPolicy()).steps[:3]
    return Turn(case=box.case, messages=[], steps=steps, tools=TOOL_SPECS)


@pytest.fixture(scope="module")
def engine(smollm2):
    engine = LlamaEngine(smollm2, n_ctx=2048, n_threads=2, seed=3)
    yield engine
    engine.close()


def prompt_of(engine: LlamaEngine, turn: Turn) -> list[int]:
    return engine.prompt_tokens(
        [
            {"role": "system", "content": system_prompt()},
            {"role": "user", "content": user_prompt(turn.case)},
        ]
    )


def transformers_logprobs(model, prompt: list[int], tokens: list[int], temperature: float):
    import torch

    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1] / temperature
    return torch.log_softmax(logits.double(), -1).gather(1, torch.tensor(tokens)[:, None])[:, 0]


def assert_close_enough(ours: list[float], theirs) -> float:
    """The two engines' log-probs agree on average and on every token that matters; returns
    the mean log-prob difference."""
    ours_lp, theirs_lp = np.array(ours), theirs.numpy()
    logprob_diff = np.abs(ours_lp - theirs_lp)
    probability_diff = np.abs(np.exp(ours_lp) - np.exp(theirs_lp))
    mean = float(logprob_diff.mean())
    mattering = logprob_diff[probability_diff >= NEGLIGIBLE_PROBABILITY_SHIFT]
    worst = float(mattering.max()) if mattering.size else 0.0
    print(
        f"mean |diff log p| {mean:.3f}, max {logprob_diff.max():.3f} "
        f"({worst:.3f} where p moved >= {NEGLIGIBLE_PROBABILITY_SHIFT}), "
        f"max |diff p| {probability_diff.max():.3f}"
    )
    assert mean < MEAN_LOGPROB_TOLERANCE, (mean, worst)
    assert worst < MAX_LOGPROB_TOLERANCE, (mean, worst)
    return mean


def test_engine_logprobs_match_transformers_on_the_same_tokens(engine, smollm2_hf, demo_turn):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_hf).eval()
    prompt = prompt_of(engine, demo_turn)
    for temperature in (1.0, 0.7):
        out = engine.generate(prompt, turn_choices_of(demo_turn), temperature, logprobs=True)
        assert out.logprobs is not None and len(out.logprobs) == len(out.tokens)
        assert out.tokens[-1] == engine.end_of_turn and out.sampled >= 1
        assert_close_enough(
            out.logprobs, transformers_logprobs(model, prompt, out.tokens, temperature)
        )


def test_an_adapter_exported_after_a_step_changes_the_engine_and_matches_transformers(
    engine, smollm2_hf, demo_turn, tmp_path
):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from thinkfl.train.export import export_lora_gguf

    prompt = prompt_of(engine, demo_turn)
    choices = turn_choices_of(demo_turn)
    base = engine.generate(prompt, choices, 1.0, logprobs=True)
    # one optimizer step that makes the reply the base wrote more likely
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(smollm2_hf),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"]),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    ids = torch.tensor([prompt + base.tokens])
    labels = ids.clone()
    labels[0, : len(prompt)] = -100
    model(ids, labels=labels).loss.backward()
    optimizer.step()
    model.save_pretrained(tmp_path / "adapter")
    adapter = export_lora_gguf(tmp_path / "adapter", tmp_path / "adapter.gguf")

    engine.set_adapter(adapter)
    tuned = engine.generate(prompt, choices, 1.0, logprobs=True)
    engine.set_adapter(None)
    again = engine.generate(prompt, choices, 1.0, logprobs=True)

    model.eval()
    theirs = transformers_logprobs(model, prompt, tuned.tokens, 1.0)
    mean = assert_close_enough(tuned.logprobs, theirs)
    with model.disable_adapter():
        without = transformers_logprobs(model, prompt, tuned.tokens, 1.0)
    # the adapter moved the engine's distribution by far more than the engines differ
    shift = float(np.abs(theirs.numpy() - without.numpy()).mean())
    assert shift > 5 * mean, (shift, mean)
    assert engine.adapter_path is None and again.logprobs is not None


def test_the_cache_is_reused_and_replies_do_not_depend_on_it(engine, smollm2, demo_turn):
    prompt = prompt_of(engine, demo_turn)
    engine.reset()
    first = engine.generate(prompt, turn_choices_of(demo_turn), 0.0)
    assert first.evaluated_prompt_tokens == len(prompt)
    # both phases are timed, so a person can see where a turn's seconds go
    assert first.prompt_seconds > 0 and first.generation_seconds > 0
    longer = prompt[:-3] + engine.tokenize("More.") + prompt[-3:]
    second = engine.generate(longer, turn_choices_of(demo_turn), 0.0)
    assert second.evaluated_prompt_tokens <= 10  # only what changed at the end
    fresh = LlamaEngine(smollm2, n_ctx=2048, n_threads=2)
    try:
        assert fresh.generate(longer, turn_choices_of(demo_turn), 0.0).text == second.text
    finally:
        fresh.close()


def test_hot_sampling_stays_inside_the_choices(engine, demo_turn):
    shown = shown_identifiers(demo_turn.steps, demo_turn.case.entry_span_id, "frontend")
    prompt = engine.prompt_tokens([{"role": "user", "content": "Call one tool."}])
    for _ in range(12):  # the choices, not the model, keep it valid
        out = engine.generate(prompt, turn_choices_of(demo_turn), temperature=1.8)
        (call,) = parse_tool_calls(out.text)
        for key, value in call.arguments.items():
            if key.endswith("span_id"):
                assert value in shown.spans
            elif key == "service_name":
                assert value in shown.components
            elif key == "root_causes":
                assert all(v in shown.names[k] for item in value for k, v in item.items())


def test_a_dialogue_longer_than_the_context_is_a_clear_error(smollm2, demo_turn):
    small = LlamaEngine(smollm2, n_ctx=256, n_threads=2)
    try:
        with pytest.raises(EngineError, match="more than the context of 256"):
            small.generate(prompt_of(small, demo_turn), turn_choices_of(demo_turn))
    finally:
        small.close()


def test_the_system_prompt_is_kept_on_disk_for_the_next_process(smollm2, demo_turn, tmp_path):
    engines = [LlamaEngine(smollm2, n_ctx=2048, n_threads=2, prompt_cache=tmp_path) for _ in "ab"]
    try:
        prompt = prompt_of(engines[0], demo_turn)
        system = engines[0].prompt_tokens([{"role": "system", "content": system_prompt()}])
        shared = next(i for i, (a, b) in enumerate(zip(system, prompt, strict=False)) if a != b)
        replies = [
            engine.generate(prompt, turn_choices_of(demo_turn), 0.0, keep_on_disk=shared)
            for engine in engines
        ]
        assert len(list(tmp_path.glob("*.state"))) == 1
        assert replies[0].evaluated_prompt_tokens == len(prompt)  # computed, then saved
        assert replies[1].evaluated_prompt_tokens == len(prompt) - shared  # loaded
        assert replies[1].text == replies[0].text
    finally:
        for engine in engines:
            engine.close()
