"""Training: configs, fault-level splits, rewards, token masks, GGUF adapters, and a tiny run
of every stage (SFT + GRPO 1–3) through the real trainers and the real agent loop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from thinkfl.agent import ExpertPolicy, load_jsonl, run_case
from thinkfl.grader import STAGES, MultiFactorGrader, Weights
from thinkfl.simulate import simulate
from thinkfl.telemetry import TelemetryStore
from thinkfl.tools import Toolbox
from thinkfl.train import (
    Question,
    Stage,
    TrainConfig,
    TrainError,
    load_config,
    load_questions,
    split_by_fault,
    tokenize_conversation,
)
from thinkfl.train.rollout import reward_functions

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "store"
    simulate(out, n_cases=6, seed=3)
    return out


# --- configs -------------------------------------------------------------------------------
def test_shipped_configs_load_with_their_stage_presets():
    for stage in ("sft", "stage1", "stage2", "stage3"):
        config = load_config(REPO / "configs" / f"{stage}.yaml")
        assert config.stage == Stage(stage)
        assert config.run == Path("runs/qwen0.5b-lora")
        if stage != "sft":
            assert config.grpo.weights == STAGES[stage]
    stage2 = load_config(REPO / "configs" / "stage2.yaml")
    assert stage2.previous() == Path("runs/qwen0.5b-lora/stage1")
    assert load_config(REPO / "configs" / "sft.yaml").previous() is None


def test_scale_configs_make_gpu_trainer_arguments():
    from thinkfl.train.grpo import grpo_args

    config = load_config(REPO / "configs" / "scale" / "stage3-qwen2.5-3b.yaml")
    assert config.use_vllm and config.model.dtype == "bfloat16"
    assert json.loads(config.deepspeed.read_text())["zero_optimization"]["stage"] == 2
    args = grpo_args(config.model_copy(update={"deepspeed": None}))
    assert args.use_vllm and args.vllm_mode == "colocate"
    assert args.num_generations == config.grpo.generations
    # hallucination is a penalty: TRL's weighted sum of the terms is the grader's total
    assert args.reward_weights == [1.0, 0.2, -0.2, 0.2]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stage: sft\nrun: r\n", "data: Field required"),
        ("stage: stage4\nrun: r\ndata: {stores: [x]}\n", "stage: Input should be"),
        ("stage: sft\nrun: r\ndata: {stores: [x]}\nlearning_rate: 1\n", "learning_rate: Extra"),
        ("stage: [unclosed\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_bad_configs_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TrainError, match=message) as raised:
        load_config(path)
    assert str(path) in str(raised.value)


# --- data ----------------------------------------------------------------------------------
def test_split_keeps_every_fault_on_one_side(sim_store):
    questions = load_questions([sim_store])
    # Two more entry traces of each fault: they must follow their fault.
    twins = [
        Question(
            q.store, q.store_path, q.case.model_copy(update={"case_id": f"{q.case.case_id}-{n}"})
        )
        for q in questions
        for n in (2, 3)
    ]
    everything = questions + twins
    # The split hashes the store path (a pytest temp folder here), so any one seed may put all
    # 6 faults on one side; over 8 seeds both sides must be used, and every split keeps faults
    # whole and ignores the order of the questions.
    sides_used = set()
    for seed in range(8):
        train, val = split_by_fault(everything, val_fraction=0.5, seed=seed)
        train_faults = {q.case.fault_id for q in train}
        val_faults = {q.case.fault_id for q in val}
        assert not train_faults & val_faults
        assert len(train) + len(val) == len(everything)
        assert len(train) % 3 == 0  # each fault brings its three cases along
        again, _ = split_by_fault(list(reversed(everything)), val_fraction=0.5, seed=seed)
        assert {q.key for q in again} == {q.key for q in train}  # order does not matter
        sides_used |= {"train"} if train else set()
        sides_used |= {"val"} if val else set()
    assert sides_used == {"train", "val"}


def test_a_store_without_cases_is_a_clear_error(tmp_path):
    with pytest.raises(TrainError, match=r"data\.stores"):
        load_questions([tmp_path / "missing"])


# --- rewards -------------------------------------------------------------------------------
def test_per_term_rewards_weigh_up_to_the_grader_total(sim_store):
    store = TelemetryStore.open(sim_store)
    entities = store.entities()
    for stage, weights in STAGES.items():
        grader = MultiFactorGrader(weights)
        functions, trl_weights = reward_functions(weights)
        names = [f.__name__ for f in functions]
        assert names == [
            t
            for t in ("recall", "route", "hallucination", "format", "diversity")
            if getattr(weights, t)
        ], stage
        for case in store.cases()[:3]:
            trajectory = run_case(Toolbox(store, case), ExpertPolicy())
            score = grader(trajectory, case.truth, entities)
            values = [f([None], reward_breakdown=[score.breakdown])[0] for f in functions]
            total = sum(w * v for w, v in zip(trl_weights, values, strict=True))
            assert math.isclose(total, score.total, abs_tol=1e-5)


def test_reward_functions_skip_terms_without_weight():
    functions, weights = reward_functions(Weights(recall=1.0, route=0, hallucination=0))
    assert [f.__name__ for f in functions] == ["recall"] and weights == [1.0]


# --- token masks (SmolLM2's real chat template) --------------------------------------------
@pytest.mark.slow
def test_mask_covers_exactly_what_the_model_wrote(smollm2_hf, sim_store):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf)
    store = TelemetryStore.open(sim_store)
    case = store.cases()[0]
    trajectory = run_case(Toolbox(store, case), ExpertPolicy())
    tokens = tokenize_conversation(tokenizer, trajectory.messages)
    from thinkfl.models.backends import chat_messages

    rendered = tokenizer.apply_chat_template(
        chat_messages(trajectory.messages, native_tools=False), tokenize=False
    )
    assert tokenizer.decode(tokens.input_ids) == rendered  # nothing lost or added
    trained = tokenizer.decode([t for t, m in zip(tokens.input_ids, tokens.mask, strict=True) if m])
    replies = [m.content for m in trajectory.messages if m.role == "assistant"]
    assert trained == "".join(f"{reply}<|im_end|>\n" for reply in replies)
    masked = tokenizer.decode(
        [t for t, m in zip(tokens.input_ids, tokens.mask, strict=True) if not m]
    )
    for message in trajectory.messages:
        if message.is_observation:
            assert message.content in masked and message.content not in trained
    # the prompt is the question and the first reply's header, nothing the model wrote
    prompt = tokenizer.decode(tokens.input_ids[: tokens.prompt_length])
    assert prompt.endswith("<|im_start|>assistant\n") and not any(
        tokens.mask[: tokens.prompt_length]
    )


# --- a tiny run of every stage -------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_base(smollm2_hf, tmp_path_factory) -> Path:
    """A randomly initialised 2-layer llama with SmolLM2's tokenizer and chat template:
    real trainers, real loop, seconds per step."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    out = tmp_path_factory.mktemp("tiny") / "base"
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tiny_config(stage: str, run: Path, base: Path, store: Path) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "stage": stage,
            "run": run,
            "data": {"stores": [store], "val_fraction": 0.0},
            "model": {"base": str(base), "dtype": "float32", "lora_r": 4, "lora_alpha": 8},
            "sft": {
                "max_examples": 2,
                "keep_rank": 10,
                "epochs": 1,
                "gradient_accumulation": 1,
                "learning_rate": 1e-2,
                "max_length": 2048,
            },
            "grpo": {
                "steps": 2,
                "generations": 2,
                "learning_rate": 1e-2,
                "repeat_questions": 2,
                "rollout_engine": "transformers",  # a random HF model has no GGUF
                "budget": {"max_depth": 2, "hard_cap": 3, "max_tokens_per_turn": 16},
            },
            "save_steps": 1,
        }
    )


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


def changed(before: dict, after: dict) -> bool:
    return any(not before[k].equal(after[k]) for k in before)


@pytest.mark.slow
def test_every_stage_trains_through_the_agent_loop(tiny_base, sim_store, tmp_path):
    from thinkfl.models.registry import adapter_dialogue
    from thinkfl.train import report, run_stage
    from thinkfl.train.observe import read_rows

    run = tmp_path / "run"
    previous = None
    for stage in ("sft", "stage1", "stage2", "stage3"):
        config = tiny_config(stage, run, tiny_base, sim_store)
        result = run_stage(config)
        rows = [r for r in read_rows(result.folder / "metrics.jsonl") if "loss" in r]
        assert rows and all(math.isfinite(float(r["loss"])) for r in rows), stage
        tensors = adapter_tensors(result.folder)
        assert result.gguf is not None and result.gguf.stat().st_size > 0
        assert adapter_dialogue(result.gguf) == config.dialogue  # kept for localize/eval
        if stage == "sft":
            # LoRA starts with B = 0; any update makes it non-zero
            assert any(t.abs().sum() > 0 for k, t in tensors.items() if "lora_B" in k)
            assert (result.folder / "demonstrations.jsonl").is_file()
        else:
            weights = config.grpo.weights
            rollouts = read_rows(result.folder / "rollouts.jsonl")
            assert len(rollouts) == config.grpo.steps * config.grpo.generations
            expected_terms = {
                t
                for t in ("recall", "route", "hallucination", "format", "diversity")
                if getattr(weights, t)
            }
            for record in rollouts:
                assert set(record["breakdown"]) == expected_terms
                total = sum(
                    (-1 if t == "hallucination" else 1) * getattr(weights, t) * v
                    for t, v in record["breakdown"].items()
                )
                assert math.isclose(total, record["reward"], abs_tol=1e-5)
                assert record["model_tokens"] > 0
            assert len(read_rows(result.folder / "trajectories.jsonl")) == len(rollouts)
            # GRPO moves the weights exactly when a group's rewards differ (beta = 0)
            signal = any(float(r["reward_std"]) > 0 for r in rows)
            assert changed(previous, tensors) == signal, stage
            if stage == "stage2":
                # a repeated question with a repeated path scores below its first visit
                assert signal
        previous = tensors
    # A longer stage 3 resumes from its last checkpoint: one more step, not three.
    longer = config.model_copy(update={"grpo": config.grpo.model_copy(update={"steps": 3})})
    run_stage(longer)
    steps = [r["step"] for r in read_rows(run / "stage3" / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]
    assert len(read_rows(run / "stage3" / "rollouts.jsonl")) == 3 * config.grpo.generations
    png = report(run)
    assert png.is_file() and png.stat().st_size > 10_000


@pytest.mark.slow
def test_grpo_rollouts_from_llama_cpp_follow_the_trained_adapter(smollm2, sim_store, tmp_path):
    """SmolLM2 trained by GRPO with rollouts from the llama.cpp engine: the adapter is
    exported and swapped in at every step, and TRL's importance-sampling correction reads
    the engine's log-probs."""
    from thinkfl.train import run_stage
    from thinkfl.train.observe import read_rows

    common = {
        "run": tmp_path / "run",
        "data": {"stores": [sim_store], "val_fraction": 0.0},
        "model": {"base": "smollm2-135m", "dtype": "float32", "lora_r": 4, "lora_alpha": 8},
    }
    sft = {"max_examples": 1, "keep_rank": 10, "epochs": 1, "gradient_accumulation": 1}
    run_stage(TrainConfig.model_validate({**common, "stage": "sft", "sft": sft}))
    config = TrainConfig.model_validate(
        {
            **common,
            "stage": "stage1",
            "grpo": {
                "steps": 2,
                "generations": 2,
                "learning_rate": 1e-2,
                "temperature": 1.0,
                "budget": {"max_depth": 2, "hard_cap": 3},
            },
        }
    )
    result = run_stage(config)
    rows = [r for r in read_rows(result.folder / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    # the engine's log-probs reached the trainer: it measured their gap to its own
    gaps = [float(r["sampling/sampling_logp_difference/mean"]) for r in rows]
    assert all(0 < gap < 0.5 for gap in gaps), gaps
    rollouts = read_rows(result.folder / "rollouts.jsonl")
    assert len(rollouts) == 4 and all(r["finish"] != "error" for r in rollouts)
    # the second step's rollouts ran with the adapter the first step exported
    assert (result.folder / "engine" / "adapter.gguf").is_file()
    assert result.gguf is not None and result.gguf.stat().st_size > 0


@pytest.mark.slow
def test_rollouts_mask_tool_observations(tiny_base, sim_store, tmp_path):
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thinkfl.agent import Budget
    from thinkfl.train.observe import RolloutLog
    from thinkfl.train.rollout import Rollouts

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    questions = load_questions([sim_store])[:2]
    rollouts = Rollouts(
        questions,
        MultiFactorGrader(STAGES["stage3"]),
        Budget(max_depth=2, hard_cap=3, max_tokens_per_turn=16, temperature=1.0),
        tokenizer,
        tmp_path,
        RolloutLog(tmp_path / "rollouts.jsonl"),
    )
    trainer = SimpleNamespace(
        model=model,
        accelerator=SimpleNamespace(unwrap_model=lambda m: m),
        state=SimpleNamespace(global_step=0),
        eos_token_ids=[tokenizer.eos_token_id],
    )
    model.train()
    out = rollouts([q.key for q in questions], trainer)
    assert out["logprobs"] is None and len(out["completion_ids"]) == 2
    assert model.training  # generation ran in eval mode; training mode is restored
    for ids, mask, trajectory in zip(
        out["completion_ids"],
        out["env_mask"],
        load_jsonl(tmp_path / "trajectories.jsonl"),
        strict=True,
    ):
        assert len(ids) == len(mask)
        trained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
        replies = [m.content for m in trajectory.messages if m.role == "assistant"]
        # every reply and its end-of-turn, up to the last one (the rollout ends there)
        assert trained == "".join(f"{reply}<|im_end|>\n" for reply in replies).removesuffix("\n")
        observations = [m.content for m in trajectory.messages if m.is_observation]
        assert observations, "the random model's replies get nudges: masked user turns"
        assert not any(o in trained for o in observations)
        assert ids[-1] == tokenizer.eos_token_id  # ends on the model's end-of-turn
        assert out["reward_breakdown"][0].keys() == {"recall", "route", "hallucination", "format"}


def test_cli_train_errors_are_one_clear_line(tmp_path):
    from typer.testing import CliRunner

    from thinkfl.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "nope.yaml: cannot read" in missing.output
    empty = runner.invoke(app, ["train", "report", str(tmp_path)])
    assert empty.exit_code == 2 and "no stage metrics" in empty.output
    usage = runner.invoke(app, ["train", "report"])
    assert usage.exit_code == 2
    assert usage.stderr.strip() == (
        "error: Missing argument 'run'. Fix: see `thinkfl train report --help`"
    )


def test_report_draws_the_stages_of_a_run(tmp_path):
    from thinkfl.train import report

    for stage, rewards in (("sft", None), ("stage1", [0.1, 0.3, 0.2])):
        folder = tmp_path / stage
        folder.mkdir()
        rows = [{"stage": stage, "step": i + 1, "loss": 1.0 / (i + 1)} for i in range(3)]
        if rewards:
            for row, reward in zip(rows, rewards, strict=True):
                row.update({"reward": reward, "rewards/recall/mean": reward, "kl": 0.0})
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = report(tmp_path)
    assert png == tmp_path / "report.png" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_lora_gguf_changes_llama_cpp_like_the_hf_adapter(smollm2, smollm2_hf, tmp_path):
    """A random (strong) LoRA on every projection: llama.cpp + the exported GGUF adapter must
    land near transformers + the PEFT adapter, far from the base (names and q/k row order)."""
    import numpy as np
    import torch
    from llama_cpp import Llama
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thinkfl.train.export import export_lora_gguf

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(smollm2_hf, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False)
    model = get_peft_model(model, lora)
    model.save_pretrained(tmp_path / "adapter")
    gguf_path = export_lora_gguf(tmp_path / "adapter", tmp_path / "adapter.gguf")
    assert not list(tmp_path.glob(".*partial"))

    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf)
    ids = tokenizer("The request to the payment service failed because", add_special_tokens=False)[
        "input_ids"
    ]
    with torch.no_grad():
        hf_lora = model(torch.tensor([ids])).logits[0, -1].numpy()
        with model.disable_adapter():
            hf_base = model(torch.tensor([ids])).logits[0, -1].numpy()

    def llama_cpp_logits(lora_path: Path | None) -> np.ndarray:
        llm = Llama(
            model_path=str(smollm2),
            lora_path=str(lora_path) if lora_path else None,
            n_ctx=256,
            n_threads=2,
            logits_all=True,
            verbose=False,
        )
        llm.eval(ids)
        return np.array(llm.scores[len(ids) - 1])

    cpp_lora, cpp_base = llama_cpp_logits(gguf_path), llama_cpp_logits(None)
    shift = np.linalg.norm(hf_lora - hf_base)
    assert shift > 10  # the adapter matters
    # Q4 matmuls in llama.cpp vs dequantized fp32 here differ by ~50 on this prompt; without
    # the q/k row permutation the adapted logits miss by ~115 (measured when writing this)
    miss = np.linalg.norm(cpp_lora - hf_lora)
    assert miss < 0.35 * shift
    assert miss < np.linalg.norm(cpp_lora - cpp_base) / 3


def test_adapter_choice_for_local_models(tmp_path, monkeypatch):
    from thinkfl.models import registry as models

    monkeypatch.setattr(models, "ADAPTERS_DIR", tmp_path)
    assert models.resolve_adapter(None, None) is None  # nothing shipped: the bare base
    shipped = tmp_path / models.BUNDLED_ADAPTERS["qwen2.5-coder-0.5b"]
    shipped.write_bytes(b"GGUF")
    assert models.resolve_adapter(None, None) == shipped  # shipped: the default model uses it
    assert models.resolve_adapter("qwen2.5-coder-0.5b", None) == shipped
    assert models.resolve_adapter("smollm2-135m", None) is None  # its own is not there
    student = tmp_path / models.BUNDLED_ADAPTERS["smollm2-135m"]
    student.write_bytes(b"GGUF")
    assert models.resolve_adapter("smollm2-135m", None) == student  # each model its own
    assert models.resolve_adapter(None, "none") is None  # the base, on request
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"GGUF")
    assert models.resolve_adapter(None, str(own)) == own
    with pytest.raises(models.ModelError, match=r"adapter 'missing\.gguf' not found"):
        models.resolve_adapter(None, "missing.gguf")


def test_an_adapter_runs_in_the_dialogue_style_it_was_trained_on(tmp_path):
    import gguf

    from thinkfl.agent.protocol import DialogueStyle
    from thinkfl.models import registry as models
    from thinkfl.models.factory import PolicyKind, default_dialogue

    def adapter(name: str, style: str | None) -> Path:
        path = tmp_path / name
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
        if style is not None:
            writer.add_string(models.DIALOGUE_KEY, style)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.close()
        return path

    compact, older = adapter("compact.gguf", "compact"), adapter("older.gguf", None)
    assert models.adapter_dialogue(compact) == DialogueStyle.COMPACT
    assert default_dialogue(PolicyKind.LOCAL, None, str(compact)) == DialogueStyle.COMPACT
    # an adapter that does not say, the bare base, and every other method: the full style
    assert default_dialogue(PolicyKind.LOCAL, None, str(older)) == DialogueStyle.FULL
    assert default_dialogue(PolicyKind.LOCAL, None, models.NO_ADAPTER) == DialogueStyle.FULL
    assert default_dialogue(PolicyKind.EXPERT, None, str(compact)) == DialogueStyle.FULL
    assert default_dialogue("evidence") == DialogueStyle.FULL
    with pytest.raises(models.ModelError, match=r"thinkfl\.dialogue is 'terse'.*re-export"):
        models.adapter_dialogue(adapter("odd.gguf", "terse"))


def test_plain_calls_keep_every_call_and_drop_the_tags(sim_store):
    from thinkfl.agent import parse_tool_calls
    from thinkfl.train.sft import plain_calls

    store = TelemetryStore.open(sim_store)
    trajectory = run_case(Toolbox(store, store.cases()[0]), ExpertPolicy())
    rewritten = plain_calls(trajectory.messages)
    assert len(rewritten) == len(trajectory.messages)
    for before, after in zip(trajectory.messages, rewritten, strict=True):
        if before.role != "assistant":
            assert after == before
            continue
        assert "<tool_call>" in before.content and "tool_call" not in after.content
        assert after.content.startswith('{"name": ')
        assert parse_tool_calls(after.content) == parse_tool_calls(before.content)


def test_the_shipped_adapter_is_a_qwen2_lora_for_llama_cpp():
    import gguf

    from thinkfl.models import registry as models

    path = models.resolve_adapter(None, None)
    assert path is not None and path.parent == models.ADAPTERS_DIR
    reader = gguf.GGUFReader(str(path))

    def text(key: str) -> str | None:
        return models.gguf_string(reader, key)

    assert text("general.type") == "adapter" and text("adapter.type") == "lora"
    assert text("general.architecture") == "qwen2"
    names = {t.name for t in reader.tensors}
    # LoRA r=8 on the 7 projections of each of the 24 layers, A and B each
    assert len(names) == 24 * 7 * 2
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.23.ffn_down.weight.lora_b" in names


def test_top_layers_names_the_layers_lora_adapts():
    from thinkfl.train.weights import top_layers

    assert top_layers(30, 8) == list(range(22, 30))
    assert top_layers(30, 1) == [29]
    assert top_layers(30, 0) is None  # 0: every layer
    assert top_layers(2, 5) is None  # more than there are: every layer


@pytest.mark.slow
def test_smollm2_sft_on_its_top_layers_lowers_the_loss_and_resumes(smollm2_hf, sim_store, tmp_path):
    """The shipped student's recipe in small: real SmolLM2-135M, LoRA on the top 2 of its 30
    layers, one compact dialogue seen three times; a longer rerun continues from step 3."""
    from thinkfl.train import run_stage
    from thinkfl.train.observe import read_rows

    def config(epochs: int) -> TrainConfig:
        return TrainConfig.model_validate(
            {
                "stage": "sft",
                "run": tmp_path / "run",
                "data": {"stores": [sim_store], "val_fraction": 0.0},
                "model": {"base": str(smollm2_hf), "lora_r": 8, "lora_layers": 2},
                "sft": {
                    "max_examples": 1,
                    "keep_rank": 10,
                    "epochs": epochs,
                    "gradient_accumulation": 1,
                    "learning_rate": 2e-3,
                    "max_length": 768,
                    "dialogue": "compact",
                },
                "save_steps": 1,
            }
        )

    result = run_stage(config(3))
    losses = [float(r["loss"]) for r in read_rows(result.folder / "metrics.jsonl") if "loss" in r]
    # every step on the one dialogue lowers its loss (measured: 0.747, 0.717, 0.652)
    assert len(losses) == 3 and losses == sorted(losses, reverse=True), losses
    assert losses[-1] < 0.95 * losses[0], losses
    layers = {int(k.split(".layers.")[1].split(".")[0]) for k in adapter_tensors(result.folder)}
    assert layers == {28, 29}
    run_stage(config(4))
    rows = [r for r in read_rows(result.folder / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_the_shipped_adapter_is_the_compact_student_for_llama_cpp():
    import gguf

    from thinkfl.agent.protocol import DialogueStyle
    from thinkfl.models import registry as models

    path = models.resolve_adapter("smollm2-135m", None)
    assert path is not None and path.parent == models.ADAPTERS_DIR
    reader = gguf.GGUFReader(str(path))

    def text(key: str) -> str | None:
        return models.gguf_string(reader, key)

    assert text("general.type") == "adapter" and text("adapter.type") == "lora"
    assert text("general.architecture") == "llama"
    assert models.adapter_dialogue(path) == DialogueStyle.COMPACT  # run as it was trained
    names = {t.name for t in reader.tensors}
    # LoRA on the 7 projections of the top 8 of SmolLM2's 30 layers, A and B each
    assert len(names) == 8 * 7 * 2
    assert "blk.22.attn_q.weight.lora_a" in names and "blk.29.ffn_down.weight.lora_b" in names
    assert not any(name.startswith("blk.21.") for name in names)


# --- starting weights: dtype, imported GGUF adapters ---------------------------------------
@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "fma"}, "float32"),
        ({"avx2", "avx512_bf16"}, "bfloat16"),
        ({"amx_bf16"}, "bfloat16"),
    ],
)
def test_auto_dtype_is_bf16_only_where_the_cpu_computes_in_it(monkeypatch, flags, expected):
    import torch

    from thinkfl.train import weights
    from thinkfl.train.config import ModelSettings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(weights, "_cpu_flags", lambda: flags)
    assert weights.resolve_dtype(ModelSettings()) == expected
    # an explicit dtype is taken as given
    assert weights.resolve_dtype(ModelSettings(dtype="bfloat16")) == "bfloat16"


@pytest.mark.slow
def test_a_gguf_adapter_imports_back_to_the_peft_adapter(tiny_base, sim_store, tmp_path):
    """Export then import gives the PEFT tensors back (f16 precision; the llama q/k row
    permutation undone), and `model.init_adapter` starts a stage from it without a previous
    stage in the run."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from thinkfl.train.export import export_lora_gguf
    from thinkfl.train.weights import starting_weights

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "down_proj"], init_lora_weights=False
    )
    get_peft_model(model, lora).save_pretrained(tmp_path / "adapter")
    gguf_path = export_lora_gguf(tmp_path / "adapter", tmp_path / "adapter.gguf")
    original = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))

    config = tiny_config("stage2", tmp_path / "run", tiny_base, sim_store)
    config.model.init_adapter = str(gguf_path)
    assert config.previous() is None  # stage1 is not needed
    imported = starting_weights(config)
    assert imported == tmp_path / "run" / "stage2" / "init-adapter"
    tensors = load_file(str(imported / "adapter_model.safetensors"))
    assert sorted(tensors) == sorted(original)
    for key, value in original.items():
        assert torch.allclose(tensors[key], value, atol=2e-3, rtol=2e-3), key
    settings = json.loads((imported / "adapter_config.json").read_text())
    assert settings["r"] == 4 and settings["lora_alpha"] == 8
    assert sorted(settings["target_modules"]) == ["down_proj", "k_proj", "q_proj"]

    config.model.init_adapter = str(tmp_path / "missing.gguf")
    with pytest.raises(TrainError, match=r"init_adapter: adapter '.*missing\.gguf' not found"):
        starting_weights(config)
    config.model.init_adapter, config.model.lora = str(gguf_path), False
    with pytest.raises(TrainError, match=r"needs model\.lora: true"):
        starting_weights(config)


@pytest.mark.slow
def test_gpu_path_script_records_facts_and_speed_on_a_cpu(smollm2_hf, tmp_path):
    """bench/gpu_path.py is run on lent GPU machines only; its CPU run keeps it from rotting."""
    import subprocess
    import sys

    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "bench" / "gpu_path.py"), "--model-dir"]
    command += [str(smollm2_hf), "--out", str(out), "--work", str(tmp_path / "work")]
    command += ["--arch", "tiny", "--phases", "speed"]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    phases = json.loads((out / "summary.json").read_text())["phases"]
    facts = phases["facts"]
    assert facts["cuda"] is False and facts["trainer_bf16"] is False
    assert facts["dtype_auto_resolves_to"] in {"float32", "bfloat16"}
    assert phases["random base"]["layers"] == 2
    cpu = phases["speed (GPU bf16 vs CPU float32)"]["cpu_float32"]
    assert cpu["step_256_s"] > 0 and cpu["generate_tok_per_s"] > 0
    assert "## facts" in (out / "summary.md").read_text()


def test_demonstrations_script_collects_per_store_merges_and_reuses(sim_store, smollm2, tmp_path):
    """bench/demonstrations.py: the teacher on the training split, one file per store, merged
    into the file `thinkfl train` reads, a store already collected is not collected again."""
    import subprocess
    import sys

    import yaml

    config = tmp_path / "sft.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "stage": "sft",
                "run": str(tmp_path / "run"),
                "data": {"stores": [str(sim_store)], "val_fraction": 0.2},
                "sft": {"keep_rank": 3, "max_examples": 2},
            }
        )
    )
    command = [sys.executable, str(REPO / "bench" / "demonstrations.py"), str(config)]
    command += ["--workers", "1", "--tokens-of", "smollm2-135m"]
    first = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)

    train, _ = split_by_fault(load_questions([sim_store]), 0.2)
    per_store = tmp_path / "run" / "sft" / "demonstrations" / f"{sim_store.name}.jsonl"
    solved = list(load_jsonl(per_store))
    assert 1 <= len(solved) <= len(train)
    assert {t.case_id for t in solved} <= {q.case.case_id for q in train}
    assert f"| {sim_store.name} | {len(train)} | {len(solved)} |" in first.stdout
    merged = list(load_jsonl(tmp_path / "run" / "sft" / "demonstrations.jsonl"))
    assert [t.case_id for t in merged] == [t.case_id for t in solved][:2]  # sft.max_examples

    written = per_store.stat().st_mtime_ns
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    assert per_store.stat().st_mtime_ns == written
