"""Constrained replies: any output the choice decoders can produce is one valid, new call
naming only identifiers the dialogue has shown (llama.cpp engine walk and the transformers
logits processor), with SmolLM2's real tokenizer."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thinkfl.agent.grammar import SEPARATOR, ReplyChoices, reply_choices
from thinkfl.agent.protocol import parse_tool_calls
from thinkfl.agent.seen import LEVELS, ShownIdentifiers
from thinkfl.models.constrained import ChoiceLogitsProcessor, ChoiceWalker
from thinkfl.tools import TOOL_SPECS

pytestmark = pytest.mark.slow

TIME = "2024-05-01T10:00:00+00:00"
# identifiers as real systems name them, plus quotes, backslashes and non-ASCII
NAME = st.from_regex(r"[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,6}){0,2}", fullmatch=True) | st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12
)
SPAN = st.from_regex(r"[0-9a-f]{4,16}", fullmatch=True)


@st.composite
def dialogues(draw):
    shown = ShownIdentifiers()
    for span in draw(st.lists(SPAN, min_size=1, max_size=6, unique=True)):
        shown.add_span(span)
    for level in LEVELS:
        for name in draw(st.lists(NAME, max_size=5, unique=True)):
            shown.add_name(level, name)
    shown.add_name("service", draw(NAME))  # the entry service is always shown
    made = {
        "search_traces": set(draw(st.lists(st.sampled_from(shown.spans), max_size=3))),
        "search_logs": set(draw(st.lists(st.sampled_from(shown.components), max_size=3))),
    }
    return shown, made


@pytest.fixture(scope="module")
def tokenize(smollm2):
    from llama_cpp import Llama

    vocab = Llama(model_path=str(smollm2), vocab_only=True, verbose=False)
    return lambda text: list(vocab.tokenize(text.encode(), add_bos=False, special=True))


def assert_valid(text: str, shown: ShownIdentifiers, made: dict[str, set[str]]) -> None:
    (call,) = parse_tool_calls(text)
    spec = next(s for s in TOOL_SPECS if s.name == call.name)
    assert set(call.arguments) == set(spec.parameters["properties"])
    for key, value in call.arguments.items():
        kind = spec.parameters["properties"][key]["x-identifier"]
        if kind == "span":
            assert value in shown.spans
        elif kind == "component":
            assert value in shown.components
        elif kind == "time":
            assert value == TIME
        else:  # ranking: 1..5 distinct shown components at their level
            pairs = [next(iter(item.items())) for item in value]
            assert all(name in shown.names[level] for level, name in pairs)
            assert len(set(pairs)) == len(pairs) and 1 <= len(pairs) <= 5
            assert len(pairs) >= min(3, len(shown.components))
        if kind in ("span", "component") and made.get(call.name):
            assert value not in made[call.name]  # a call already made is not offered again


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(dialogues(), st.randoms(use_true_random=False))
def test_every_walk_of_the_engine_decoder_is_a_valid_new_call(tokenize, dialogue, rng):
    shown, made = dialogue
    walker = ChoiceWalker(reply_choices(TOOL_SPECS, shown, TIME, made), tokenize)
    tokens = []
    while not walker.done:  # any token the decoder allows, as a sampler at any temperature
        token = rng.choice(walker.allowed())
        walker.advance(token)
        tokens.append(token)
    assert walker.text == "".join(walker.chosen)
    assert_valid(walker.text, shown, made)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(dialogues(), st.integers(0, 2**31))
def test_the_transformers_processor_allows_only_valid_new_calls(tokenize, dialogue, seed):
    import torch

    shown, made = dialogue
    vocabulary, end = 49_152, 2  # SmolLM2's vocabulary size and <|im_end|>
    processor = ChoiceLogitsProcessor(
        reply_choices(TOOL_SPECS, shown, TIME, made), tokenize, prompt_length=3, end_ids=[end]
    )
    generator = torch.Generator().manual_seed(seed)
    ids = torch.tensor([[1, 1, 1]])
    for _ in range(400):  # random logits: only the processor's mask shapes the output
        scores = processor(ids, torch.randn(1, vocabulary, generator=generator))
        token = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        if token == end:
            break
    assert ids[0, -1] == end
    text = "".join(processor.walker.chosen)
    assert_valid(text, shown, made)


def test_an_answer_takes_three_to_five_distinct_causes_in_the_order_chosen():
    causes = tuple(json.dumps({"service": s}) for s in "abcdef")
    choices = ReplyChoices(calls=(), answer_open="[", causes=causes)
    assert choices.options([]) == ("[",)
    chosen = ["[", causes[2]]
    assert choices.options(chosen) == (SEPARATOR,)  # fewer than three: go on
    chosen += [SEPARATOR]
    assert causes[2] not in choices.options(chosen)  # no repeats
    chosen += [causes[0], SEPARATOR, causes[5]]
    assert choices.options(chosen) == (SEPARATOR, "]}}")  # three: may close
    chosen += [SEPARATOR, causes[1], SEPARATOR, causes[3]]
    assert choices.options(chosen) == ("]}}",)  # five: must close
    assert choices.options([*chosen, "]}}"]) == ()
    two = ReplyChoices(calls=(), answer_open="[", causes=causes[:2])
    assert two.options(["[", causes[0], SEPARATOR, causes[1]]) == ("]}}",)  # all shown: close


def test_a_prefix_between_options_is_refused(tokenize):
    with pytest.raises(ValueError, match="token prefix"):
        ChoiceWalker(ReplyChoices(calls=("ab", "abc")), lambda text: list(text.encode()))
