"""What this machine's CPU can compute: its instruction-set flags, read once from /proc/cpuinfo.
Training (mixed bfloat16) and serving (bf16 on OpenVINO) both ask whether bfloat16 runs in hardware."""

import functools
from pathlib import Path

# The CPU flags under which bfloat16 runs in hardware; without them it is emulated (slower than float32).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())
