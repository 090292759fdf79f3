"""Replica configurations the fleet MILP chooses among: offering × tensor-parallel degree × bits.

Each candidate is one instance of an offering running `replicas` identical replicas of
`tp` GPUs each, with every layer at `bits`; its throughput per workload class (requests/s
for the whole instance) comes from the cost model, or from a measured profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from solver.costmodel import BF16, FP8, Device, ModelShape, Numerics, class_throughput, max_batch
from solver.device_profile import PROFILE_BATCH, CpuProfile
from solver.quality import FP8_QUALITY, model_quality
from solver.workload import Workload

if TYPE_CHECKING:
    import pandas as pd

    from solver.profiles import ThroughputProfile

BIT_WIDTHS = (16, 8, 4)
# Throughput lost to spot preemptions (restarts and redone shards), by cloud; a planning
# allowance, to be replaced by measured preemption rates.
SPOT_OVERHEAD = {"aws": 0.10, "gcp": 0.10, "azure": 0.15, "lambda": 0.0}
STARTUP_SECONDS = 600.0  # provisioning, image pull and model load of a fresh instance


@dataclass(frozen=True)
class Candidate:
    """One instance type running one configuration. Prices in $/h, throughputs in requests/s."""

    offering: int  # row index in the offerings frame (availability is per offering)
    label: str
    gpu: str
    gpus_per_instance: int
    spot: bool
    price_per_hour: float
    tp: int
    replicas: int
    bits: int
    quality: float
    requests_per_s: tuple[float, ...]  # per workload class, whole instance
    startup_seconds: float = STARTUP_SECONDS
    # Pipeline layout from the partition ILP: (first layer, last layer, bits per layer) per
    # stage of `tp` GPUs. Empty: one stage holding every layer at `bits`.
    stages: tuple[tuple[int, int, tuple[int, ...]], ...] = ()
    prefill_micro_batch: int = 1
    decode_micro_batch: int = 1
    # CPU–GPU hybrid (solver.hybrid_partition): (layer, prefill on, decode on) of each layer kept
    # in host memory, each phase "cpu" (computed by the host) or "stream" (weights copied to the GPU).
    host_layers: tuple[tuple[int, str, str], ...] = ()
    # Calibration (costserve/store/calibration.py): measured ÷ modelled work time already applied to
    # requests_per_s, and where it and startup_seconds come from (None: the model's own figures).
    work_factor: float = 1.0
    calibration: str | None = None
    # Who runs it and in what (solver/engine_check.py): "vllm" for whole-model GPU replicas, at `numerics` (BF16, or
    # FP8 weights, activations and KV cache), "costserve" for the rest.
    engine: str = "costserve"
    numerics: Numerics = BF16
    checkpoint: str | None = None  # a pre-quantized checkpoint vLLM serves (Hugging Face id), for `bits` < 16
    # How far its rates may be off (solver/uncertainty.py): σ of ln(true ÷ predicted), and the source it shares with
    # other candidates (one draw of error per source).
    rate_spread: float = 0.0
    rate_source: str = ""

    @property
    def whole_model_uniform(self) -> bool:
        """One stage, every layer at `bits` on the GPU: the configurations the baselines may use."""
        return len(self.stages) <= 1 and all(b == self.bits for s in self.stages for b in s[2]) and not self.host_layers

    @property
    def sixteen_bit(self) -> bool:
        """Every layer at 16 bits with 16-bit activations: what a plain `sky launch` + vLLM user runs."""
        return self.whole_model_uniform and self.bits == 16 and self.numerics == BF16


def spot_loss(row: pd.Series) -> float:
    """Share of spot throughput an offerings row expects to lose to interruptions: its measured `spot_interruption`
    (the account's spot placement scores, catalog/aws_limits.py), else its cloud's allowance."""
    measured = row.get("spot_interruption")
    return float(measured) if measured is not None and measured == measured else SPOT_OVERHEAD.get(row["cloud"], 0.1)


def purchase_options(row: pd.Series, spot: bool) -> list[tuple[bool, float, float]]:
    """(is spot, $/h, share of throughput kept after preemptions) for an offerings row."""
    options = [(False, float(row["price_per_hour"]), 1.0)]
    if spot and row["spot_price_per_hour"] == row["spot_price_per_hour"]:  # not NaN
        options.append((True, float(row["spot_price_per_hour"]), 1 - spot_loss(row)))
    return options


def offering_label(row: pd.Series, is_spot: bool) -> str:
    """cloud/region/instance_type, with ' spot' for the spot purchase option."""
    return f"{row['cloud']}/{row['region']}/{row['instance_type']}{' spot' if is_spot else ''}"


def build_candidates(
    offerings: pd.DataFrame,
    gpus: pd.DataFrame,
    model: ModelShape,
    workload: Workload,
    quality_target: float = 0.0,
    spot: bool = False,
    bit_widths: tuple[int, ...] = BIT_WIDTHS,
    profile: ThroughputProfile | None = None,
    cpu_profile: dict | None = None,
    checkpoints: bool = True,
) -> list[Candidate]:
    """Every (offering, purchase option, tp, bits) that meets the quality target and serves ≥ 1 class.

    `checkpoints`: GPUs may serve the model's catalog pre-quantized checkpoints (not when the nodes get the user's
    own weights).

    With a measured `profile`, a profiled GPU's throughputs are scaled to match it. With a
    `cpu_profile` (`costserve profile --device cpu`) of this model, CPU offerings take their
    throughput from it instead of the roofline: measured per thread, times the offering's vCPUs.
    """
    measured_cpu = CpuProfile.matching(cpu_profile, model.name, model.layers)
    specs = gpus.set_index("gpu", drop=False)
    calibration = profile_calibration(profile, specs, model, workload) if profile is not None else {}
    allowed = {b: q for b in bit_widths if (q := model_quality((b,) * model.layers, model.name)) >= quality_target}
    stored = quantized_checkpoints(model.name) if checkpoints else {}
    # Regions and clouds selling the same hardware give the same Device: model it once. Each entry is the batch the
    # replica runs (sequences, what its worker is given) and the per-class requests/s at that batch.
    per_device: dict[tuple[Device, int, Numerics], tuple[int, list[float]]] = {}
    out: list[Candidate] = []
    for idx, row in offerings.iterrows():
        if row["availability"] <= 0:
            continue
        options = purchase_options(row, spot)
        gpu_row = specs.loc[row["gpu"]]
        tps = [1] if row["gpu"] == "cpu" else [t for t in (1, 2, 4, 8) if row["gpu_count"] % t == 0 and t <= row["gpu_count"]]
        for p in precision_menu(gpu_row, allowed, bit_widths, quality_target, stored):
            for tp in tps:
                device = Device.from_catalog(gpu_row, tp, int(row["vcpus"]), float(row["host_memory_gib"]))
                replicas = 1 if row["gpu"] == "cpu" else row["gpu_count"] // tp
                key = (device, p.bits, p.numerics)
                if key not in per_device:
                    per_device[key] = _replica_rates(model, device, p, workload, measured_cpu, int(row["vcpus"]))
                batch, per_replica = per_device[key]
                if row["gpu"] in calibration:
                    per_replica = [r * f for r, f in zip(per_replica, calibration[row["gpu"]])]
                if not any(per_replica):
                    continue
                out += [Candidate(offering=int(idx), label=offering_label(row, is_spot), gpu=row["gpu"],
                                  gpus_per_instance=int(row["gpu_count"]), spot=is_spot, price_per_hour=price, tp=tp,
                                  replicas=int(replicas), bits=p.bits, quality=p.quality,
                                  requests_per_s=tuple(r * replicas * keep for r in per_replica), prefill_micro_batch=batch,
                                  decode_micro_batch=batch, engine=p.engine, numerics=p.numerics, checkpoint=p.checkpoint)
                        for is_spot, price, keep in options]
    return out


def _replica_rates(model: ModelShape, device: Device, p: Precision, workload: Workload, measured_cpu: CpuProfile | None,
                   vcpus: int) -> tuple[int, list[float]]:
    """(batch, requests/s per class) of one replica: measured on this CPU model when a profile has its bits, else the
    cost model's."""
    if device.kind == "cpu" and measured_cpu is not None and measured_cpu.has_bits(p.bits):
        return PROFILE_BATCH, [measured_cpu.class_requests_per_s([p.bits] * model.layers, c.input_tokens, c.output_tokens, vcpus)
                               for c in workload.classes]
    return uniform_throughputs(model, device, p.bits, workload, p.numerics)


class Precision(NamedTuple):
    """One entry of the precision menu: weight bits, numerics, predicted quality, the engine, a checkpoint (or None)."""

    bits: int
    numerics: Numerics
    quality: float
    engine: str
    checkpoint: str | None = None


def quantized_checkpoints(model_name: str) -> dict[int, str]:
    """{weight bits: Hugging Face id} of the model's pre-quantized checkpoints in the catalog."""
    from catalog.load import load_quantized_checkpoints

    rows = load_quantized_checkpoints()
    return {int(r.bits): str(r.hf_id) for r in rows[rows["model"] == model_name].itertuples()}


def precision_menu(gpu_row: pd.Series, allowed: dict[int, float], bit_widths: tuple[int, ...], quality_target: float,
                   checkpoints: dict[int, str]) -> list[Precision]:
    """What a whole-model replica may run on this gpus.csv row: the precisions its engine runs that the target allows.

    A CPU runs costserve's engine at every allowed bit-width (weight-only int8/int4 kernels). A GPU runs vLLM: bf16;
    FP8 weights + activations + KV cache (quantization="fp8") where the GPU has FP8 tensor cores and FP8's published
    quality meets the target; int8/int4 weights only from a pre-quantized checkpoint of the model (`checkpoints`),
    which vLLM loads as it is. Other weight-only int8/int4 layouts on GPUs are the partition ILP's (costserve's engine)."""
    if bool(gpu_row["per_vcpu"]):
        return [Precision(b, BF16, q, "costserve") for b, q in allowed.items()]
    menu = [Precision(16, BF16, allowed[16], "vllm")] if 16 in allowed else []
    if 8 in bit_widths and float(gpu_row.get("fp8_tflops", 0.0)) > 0 and FP8_QUALITY >= quality_target:
        menu.append(Precision(8, FP8, FP8_QUALITY, "vllm"))
    menu += [Precision(b, BF16, allowed[b], "vllm", checkpoints[b]) for b in (8, 4) if b in allowed and b in checkpoints]
    return menu


def uniform_throughputs(model: ModelShape, device: Device, bits: int, workload: Workload,
                        numerics: Numerics = BF16) -> tuple[int, list[float]]:
    """(batch, requests/s per class) of one whole-model replica at `bits` and `numerics`: one batch for every class, the
    largest that fits the class with the biggest KV footprint among those that fit at all (a worker runs one batch size;
    a class that fits no batch gets 0)."""
    shape = (bits,) * model.layers
    fits = [b for c in workload.classes
            if (b := max_batch(model, device, shape, c.input_tokens, c.output_tokens, numerics)) > 0]
    if not fits:
        return 1, [0.0] * len(workload.classes)
    batch = min(fits)
    return batch, [class_throughput(model, device, shape, c.input_tokens, c.output_tokens, batch, numerics).requests_per_s
                   for c in workload.classes]


def profile_calibration(profile: ThroughputProfile, specs: pd.DataFrame, model: ModelShape, workload: Workload) -> dict[str, list[float]]:
    """Per profiled GPU, per class: measured req/s ÷ modelled req/s (16 bits, one GPU, at the batch its candidates run)."""
    factors: dict[str, list[float]] = {}
    for gpu in profile.gpu_info:
        _, modelled = uniform_throughputs(model, Device.from_catalog(specs.loc[gpu], 1), 16, workload)  # as candidates run
        row = []
        for c, rate in zip(workload.classes, modelled):
            measured = profile.requests_per_s(gpu, c.input_tokens, c.output_tokens) or 0.0
            # where the model finds no memory for a class at 16 bits, the memory check stands
            row.append(measured / rate if rate > 0 else 0.0)
        factors[gpu] = row
    return factors
