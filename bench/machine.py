"""The machine a benchmark ran on, as one line: CPU model, cores and the SIMD flags that change
results (AVX2 / AVX-512 / native bf16 / AMX), from `lscpu`."""

from __future__ import annotations

import os
import subprocess

FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_line() -> str:
    try:
        listed = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return f"cpu: unknown (no lscpu), {os.cpu_count()} cores"
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in listed.splitlines())
    )
    flags = set(fields.get("Flags", "").split())
    present = [flag for flag in FLAGS_THAT_MATTER if flag in flags] or ["no AVX2"]
    return (
        f"cpu: {fields.get('Model name', 'unknown')}, {os.cpu_count()} cores, "
        f"flags {' '.join(present)}"
    )


if __name__ == "__main__":
    print(cpu_line())
