"""Calibration check: the additive perplexity prediction vs the measured perplexity of mixed replicas.

Runs `costserve calibrate` logic on the embedded SmolLM2 (per-layer sensitivity at 16/8/4
bits on workers/data/calibration.txt), then measures three mixed replicas and prints
predicted vs measured perplexity. Target: within 10%.

    python -m bench.calibration [--save catalog/data/quality/SmolLM2-135M.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

MIXES = {
    "10x16 10x8 10x4": [16] * 10 + [8] * 10 + [4] * 10,
    "int4 on odd layers": [4 if i % 2 else 8 for i in range(30)],
    "int4 first 15": [4] * 15 + [16] * 15,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--save", type=Path, help="also write the quality profile here")
    a = p.parse_args()
    import pandas as pd

    from workers.quality_profile import profile_quality, replica_perplexity
    from workers.model_source import EMBEDDED_MODEL, resolve_model_dir

    model_dir = resolve_model_dir(None)
    profile = profile_quality(model_dir, EMBEDDED_MODEL)
    if a.save:
        profile.save(a.save)
    rows = [{"replica": "fp32", "predicted ppl": profile.base_perplexity, "measured ppl": profile.base_perplexity}]
    for name, bits in MIXES.items():
        rows.append({"replica": name, "predicted ppl": profile.predicted_perplexity(bits), "measured ppl": replica_perplexity(model_dir, bits)})
    df = pd.DataFrame(rows)
    df["error %"] = (df["predicted ppl"] / df["measured ppl"] - 1) * 100
    print(df.round(3).to_string(index=False))
    print("target: |error| <= 10%")


if __name__ == "__main__":
    main()
