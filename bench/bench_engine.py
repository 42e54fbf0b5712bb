"""What llama.cpp does per second on this CPU: prompt tokens read and tokens written.

    python bench/bench_engine.py [--model smollm2-135m] [--adapter FILE|none] [--prompt 1024]

Reads a prompt of `--prompt` tokens into an empty context (prompt processing, tok/s), then
evaluates `--write` tokens one at a time after it (what writing costs per token: generation,
tok/s), three times each; prints the best of each. With the tokens a case reads and
writes (bench/heldout.py), this gives what a case costs at the physical limit of the
machine: read / pp + written / tg.
"""

from __future__ import annotations

import argparse
import time

from machine import cpu_line
from thinkfl.models.engine import LlamaEngine
from thinkfl.models.registry import DEFAULT_MODEL, resolve_adapter, resolve_gguf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--adapter", default=None, help="a LoRA GGUF, or none (default: shipped)")
    parser.add_argument("--prompt", type=int, default=1024)
    parser.add_argument("--write", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(cpu_line())
    adapter = resolve_adapter(args.model, args.adapter)
    engine = LlamaEngine(
        resolve_gguf(args.model),
        n_ctx=args.prompt + args.write + 8,
        n_threads=args.threads,
        lora_path=adapter,
    )
    llm = engine.llm
    text = "span 3f2a frontend GET /cart 812 ms error; " * args.prompt
    prompt = engine.tokenize(text)[: args.prompt]
    reading, writing = [], []
    for _ in range(3):
        llm.reset()
        began = time.perf_counter()
        llm.eval(prompt)
        reading.append(time.perf_counter() - began)
        began = time.perf_counter()
        for index in range(args.write):  # one token per step, as sampling writes them
            llm.eval([prompt[index]])
        writing.append(time.perf_counter() - began)
    engine.close()
    pp, tg = args.prompt / min(reading), args.write / min(writing)
    print(
        f"{args.model} (adapter: {adapter.name if adapter else 'none'}): "
        f"prompt processing {pp:,.0f} tok/s ({args.prompt} tokens), "
        f"generation {tg:,.1f} tok/s ({args.write} tokens)"
    )


if __name__ == "__main__":
    main()
