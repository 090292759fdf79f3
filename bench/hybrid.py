"""CPU–GPU hybrid replicas vs all-GPU and all-CPU placements: predicted prefill and decode throughput.

Part 1 (cost model, `solver/hybrid_costs.py` + the hybrid ILP): for a model at the quality of
8 bits, on several one-GPU offerings, three placements of the same replica:
  all-GPU  every layer GPU-resident at 8 bits (where it fits),
  all-CPU  every layer in host RAM, computed by the instance's vCPUs (no GPU used),
  hybrid   the hybrid partition ILP's layout (bits and per-phase placement per layer).
Each at the batch (of 8..256) with the most requests/s on 500-token prompts and 200-token
outputs. Prints prompt tokens/s in prefill, output tokens/s in decode, $ per 1M output
tokens, and the ratio of hybrid to the other two.

Part 2 (measured, `--measure`, on this machine): the engine's host-resident layer path on
SmolLM2 against the single-device engine. On a CPU-only machine host and device coincide,
so this measures the path's overhead, not a speed-up; with CUDA the single device is the GPU.

    python -m bench.hybrid [--model Llama-2-13B] [--measure] [--prompts 64]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from catalog.load import load_gpus, load_models, load_offerings
from solver.costmodel import Device, ModelShape
from solver.hybrid_costs import host_of
from solver.hybrid_partition import best_batch_rate, hybrid_partition
from solver.quality import model_layer_loss, model_quality

INSTANCES = ("g4dn.xlarge", "g4dn.4xlarge", "Standard_NC4as_T4_v3", "n1-standard-8", "g6.xlarge", "g5.xlarge")
INPUT_TOKENS, OUTPUT_TOKENS = 500, 200


def predicted_table(model_name: str) -> pd.DataFrame:
    """One row per (offering, placement)."""
    gpus = load_gpus().set_index("gpu", drop=False)
    offerings = load_offerings().drop_duplicates("instance_type").set_index("instance_type", drop=False)
    model = ModelShape.from_row(load_models().set_index("model", drop=False).loc[model_name])
    loss = model_layer_loss(model.name, model.layers)
    target = model_quality((8,) * model.layers, model.name)
    rows = []
    for name in INSTANCES:
        row = offerings.loc[name]
        gpu = Device.from_catalog(gpus.loc[row["gpu"]])
        host = host_of(gpus.loc["cpu"], int(row["vcpus"]), float(row["host_memory_gib"]), float(gpus.loc[row["gpu"]]["pcie_gbps"]))
        started = time.perf_counter()
        layout = hybrid_partition(model, gpu, host, INPUT_TOKENS, OUTPUT_TOKENS, target, loss)
        solve_s = time.perf_counter() - started
        layouts = {"all-GPU": ((8,) * model.layers, ("gpu",) * model.layers, 4),
                   "all-CPU": ((8,) * model.layers, ("cpu",) * model.layers, 4)}
        if layout is not None:
            layouts["hybrid"] = (layout.bits, layout.placements, layout.prefill_micro_batch)
        for placement, (bits, placements, mb) in layouts.items():
            rate = best_batch_rate(model, gpu, host, bits, placements, mb, INPUT_TOKENS, OUTPUT_TOKENS)
            host_layers = sum(p != "gpu" for p in placements)
            rows.append({
                "offering": f"{row['cloud']} {name}", "GPU": f"{row['gpu']} {gpu.memory_gib:g} GiB",
                "host": f"{row['vcpus']} vCPU {row['host_memory_gib']:g} GiB", "$/h": float(row["price_per_hour"]),
                "placement": placement, "host layers": host_layers,
                "batch": rate.batch if rate else "no fit",
                "prefill tok/s": rate.batch * INPUT_TOKENS / rate.prefill_s if rate else None,
                "decode tok/s": rate.batch / rate.decode_step_s if rate else None,
                "$/1M out": float(row["price_per_hour"]) / 3600 / (rate.requests_per_s * OUTPUT_TOKENS) * 1e6 if rate else None,
                "ILP s": solve_s if placement == "hybrid" else None,
            })
    return pd.DataFrame(rows)


def measured_table(prompts: int) -> pd.DataFrame:
    """SmolLM2 on this machine: single-device int8 vs the same replica with host-resident layers."""
    import torch

    from bench.engine import bench_jobs
    from workers.engine import Engine
    from solver.plan import HostLayer, Replica, Stage

    device = "cuda" if torch.cuda.is_available() else "cpu"
    jobs = bench_jobs(prompts)
    layouts = {
        "single device": {},
        "10 host layers, decode on CPU, prefill streamed": {i: ("stream", "cpu") for i in range(10, 20)},
        "10 host layers, both phases streamed": {i: ("stream", "stream") for i in range(10, 20)},
        "30 host layers, both phases on CPU": {i: ("cpu", "cpu") for i in range(30)},
    }
    rows = []
    for name, host in layouts.items():
        stage = Stage(device=device, first_layer=0, last_layer=29, bits=[8] * 30,
                          host_layers=[HostLayer(layer=i, prefill=p, decode=d) for i, (p, d) in host.items()])
        with Engine(Replica(stages=[stage], prefill_micro_batch=4, decode_micro_batch=32)) as engine:
            engine.generate(jobs[:4])  # warm-up
            started = time.perf_counter()
            out = engine.generate(jobs)
            seconds = time.perf_counter() - started
        tokens = sum(g.completion_tokens for g in out)
        rows.append({"replica (SmolLM2 int8)": name, "device": device, "output tokens": tokens, "seconds": seconds,
                     "tokens/s": tokens / seconds, "token ids": hash(tuple(t for g in out for t in g.token_ids))})
    frame = pd.DataFrame(rows)
    frame["vs single device"] = frame["tokens/s"] / frame["tokens/s"].iloc[0]
    frame["same tokens"] = frame["token ids"] == frame["token ids"].iloc[0]
    return frame.drop(columns="token ids")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="Llama-2-13B")
    p.add_argument("--measure", action="store_true", help="also measure the engine's host-layer path on SmolLM2 here")
    p.add_argument("--prompts", type=int, default=64)
    a = p.parse_args()
    table = predicted_table(a.model)
    pd.set_option("display.width", 200)
    print(f"Predicted throughput, {a.model} at 8-bit quality, {INPUT_TOKENS}-token prompts, {OUTPUT_TOKENS}-token outputs\n")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.3g}", na_rep="-"))
    hybrid = table[table.placement == "hybrid"].set_index("offering")
    print("\nhybrid vs the others (decode tokens/s ratio; > 1: hybrid faster)")
    for other in ("all-GPU", "all-CPU"):
        rows = table[table.placement == other].set_index("offering")
        ratio = (hybrid["decode tok/s"] / rows["decode tok/s"]).dropna()
        print(f"  vs {other}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items()) if len(ratio) else f"  vs {other}: never fits")
    if a.measure:
        print("\nMeasured here (engine, greedy):\n")
        print(measured_table(a.prompts).to_string(index=False, float_format=lambda v: f"{v:,.3g}"))


if __name__ == "__main__":
    main()
