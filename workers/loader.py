"""Build one pipeline stage from a safetensors model directory, quantizing layer by layer.

Only the stage's own tensors are read (safetensors `safe_open`), and each decoder layer
is quantized as soon as it is loaded, so peak memory is the quantized stage plus one fp32
layer — not the whole fp32 model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor

from solver.plan import Stage
from workers.model import ModelArgs, StageModel, layer_state_dict, outer_state_dict
from workers.offload import HostResidentBlock, WeightStreamer, link_prefetch
from workers.quantize import quantize_block


def read_model_args(model_dir: Path) -> ModelArgs:
    """ModelArgs of the model in a Hugging Face directory (reads config.json only)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return ModelArgs.from_hf_config(SimpleNamespace(**config))


class SafetensorsDir(Mapping[str, Tensor]):
    """The tensors of a model directory's safetensors files, each read (as fp32) on access."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors import safe_open

        files = sorted(Path(model_dir).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{model_dir}: no .safetensors files")
        self._where = {k: h for h in (safe_open(str(f), framework="pt") for f in files) for k in h.keys()}

    def __getitem__(self, key: str) -> Tensor:
        return self._where[key].get_tensor(key).float()

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def build_stage(model_dir: Path, args: ModelArgs, spec: Stage, device: str = "cpu") -> StageModel:
    """The StageModel for `spec`'s layers at `spec.bits`, on `device`; `spec.host_layers` stay in host memory."""
    tensors = SafetensorsDir(model_dir)
    with torch.device("meta"):
        stage = StageModel(args, spec.first_layer, spec.last_layer)
    stage.load_state_dict(outer_state_dict(tensors, args, spec.first_layer, spec.last_layer), strict=False, assign=True)
    host = spec.host_modes()
    streamer = WeightStreamer(torch.device(device)) if host else None
    for i, (block, bits) in enumerate(zip(list(stage.layers), spec.bits)):
        block.load_state_dict(layer_state_dict(tensors, args, spec.first_layer + i), assign=True)
        quantize_block(block, bits)
        if spec.first_layer + i in host:
            assert streamer is not None
            stage.layers[i] = HostResidentBlock(block, *host[spec.first_layer + i], torch.device(device), streamer)
    link_prefetch(stage.layers)
    stage = stage.to(device)
    stage.compute_device = torch.device(device)
    return stage
