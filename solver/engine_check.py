"""The capability check: a plan names only replicas the engine it names can run on the instance it rents.

costserve's engine (workers/) runs CPU groups, per-layer mixed-bit pipelines and CPU–GPU hybrid layouts;
vLLM runs whole-model GPU replicas at one precision (solver/vllm_settings.py). Each rule below is a
limit of that engine as costserve drives it, checked where the planner builds a group (solver/planner.py).
"""

from __future__ import annotations

from solver.plan import Replica, ReplicaError


class EngineCapabilityError(ReplicaError):
    """The engine that would run a replica cannot run it (layers, bits, devices, precision or parallelism)."""


def check_engine_can_run(
    replica: Replica, n_layers: int, gpus_per_instance: int, replicas: int = 1, fp8_tensor_cores: bool = False
) -> None:
    """Raise EngineCapabilityError unless the replica's engine can run `replicas` copies of `replica` on one instance
    with `gpus_per_instance` GPUs (0: a CPU instance; `fp8_tensor_cores`: its GPUs have them) for a model of
    `n_layers` decoder layers.

    Bit-widths are checked when a Stage is built (only ENGINE_BITS exist)."""
    try:
        replica.check_layers(n_layers)
    except ReplicaError as exc:
        raise EngineCapabilityError(str(exc)) from None
    if replica.engine == "vllm":
        _check_vllm(replica, gpus_per_instance, fp8_tensor_cores)
    on_cpu = [s.device for s in replica.stages if s.device.lower() in ("cpu", "host")]
    if gpus_per_instance == 0:
        if len(on_cpu) != len(replica.stages) or replica.tp != 1:
            raise EngineCapabilityError("a CPU instance runs only cpu stages at tp 1")
        if any(s.host_layers for s in replica.stages):
            raise EngineCapabilityError("host-resident layers need a GPU stage")
        return
    if on_cpu:
        raise EngineCapabilityError(f"a GPU instance's replica puts a stage on {on_cpu[0]!r}; stages run on its GPUs")
    needed = replica.tp * len(replica.stages) * replicas
    if needed > gpus_per_instance:
        raise EngineCapabilityError(
            f"{replicas} replica(s) of tp{replica.tp} x {len(replica.stages)} stage(s) need "
            f"{needed} GPUs; the instance has {gpus_per_instance}"
        )


def _check_vllm(replica: Replica, gpus_per_instance: int, fp8_tensor_cores: bool) -> None:
    """vLLM as costserve plans it: GPU instances, one precision for the whole model, no host-resident layers."""
    settings = replica.vllm
    assert settings is not None  # Replica's validator: a vllm replica carries its settings
    if gpus_per_instance == 0:
        raise EngineCapabilityError("vLLM replicas run on GPU instances; a CPU group runs costserve's engine")
    if any(s.host_layers for s in replica.stages):
        raise EngineCapabilityError(
            "vLLM keeps no chosen layers in host memory (cpu_offload_gb offloads by size); "
            "a CPU–GPU hybrid layout runs costserve's engine"
        )
    if len(set(replica.bits)) != 1:
        raise EngineCapabilityError(
            "vLLM runs one precision for the whole model; a mixed-bit layout runs costserve's engine"
        )
    if settings.quantization == "fp8" and not fp8_tensor_cores:
        raise EngineCapabilityError("vLLM's fp8 quantization needs FP8 tensor cores (L4, L40S, H100, H200)")
    stored = settings.checkpoint_bits or (8 if settings.quantization == "fp8" else 16)
    if replica.bits[0] != stored:
        raise EngineCapabilityError(
            f"the replica's layers are {replica.bits[0]}-bit but vLLM would load {stored}-bit weights "
            "(int8/int4 only from a pre-quantized checkpoint)"
        )
