"""Quality calibration: per-layer perplexity sensitivity at each bit-width, and a replica's perplexity.

A layer's sensitivity at b bits is log(ppl with only that layer at b bits / ppl of the
fp32 model) on the calibration text shipped in `workers/data/calibration.txt` (written for
the project). The planner predicts a replica's perplexity additively:
ppl(replica) ≈ ppl(fp32) · exp(Σ_i loss_i(b_i)); `replica_perplexity` measures the real one
so the prediction can be checked. The fp32 input of every layer is computed once, so
measuring layer i re-runs only layers i..L-1.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from solver.plan import Replica
from workers.loader import build_stage, read_model_args
from workers.model import StageModel
from workers.quantize import quantize_block

CALIBRATION_TEXT = Path(__file__).with_name("data") / "calibration.txt"
WINDOW = 256  # tokens per calibration sequence


@dataclass
class QualityProfile:
    """What `costserve calibrate` writes: per-layer log-perplexity increase per bit-width."""

    model: str
    base_perplexity: float
    tokens: int
    layer_loss: dict[int, list[float]]

    def predicted_perplexity(self, bits: list[int]) -> float:
        """ppl(fp32) · exp(Σ loss of each layer at its bits); 32-bit layers add nothing."""
        return self.base_perplexity * math.exp(sum(self.layer_loss[b][i] for i, b in enumerate(bits) if b != 32))

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["layer_loss"] = {str(b): v for b, v in self.layer_loss.items()}
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> QualityProfile:
        data = json.loads(Path(path).read_text())
        data["layer_loss"] = {int(b): v for b, v in data["layer_loss"].items()}
        return cls(**data)


def calibration_windows(tokenizer: Any, text: str | None = None, window: int = WINDOW) -> Tensor:
    """The calibration text as token windows [N, window] (the tail shorter than a window is dropped)."""
    ids = tokenizer.encode(text if text is not None else CALIBRATION_TEXT.read_text())
    n = max(1, len(ids) // window)
    ids = (ids + ids)[: n * window] if len(ids) < window else ids[: n * window]
    return torch.tensor(ids).view(n, window)


def _nll(logits: Tensor, windows: Tensor) -> float:
    """Mean next-token negative log-likelihood (nats/token)."""
    return float(
        torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    )


class _Runner:
    """One fp32 stage over the whole model, with the fp32 input of every layer cached."""

    def __init__(self, model_dir: Path, windows: Tensor) -> None:
        self.args = read_model_args(model_dir)
        spec = Replica.uniform(self.args.n_layers, 32).stages[0]
        self.stage: StageModel = build_stage(model_dir, self.args, spec)
        self.windows = windows
        n, t = windows.shape
        self.stage.setup_cache(n, t)
        self.slots, self.pos = torch.arange(n), torch.arange(t).repeat(n, 1)
        self.position = self.stage.position_inputs(self.pos)  # the same for every layer and every run
        self.inputs: list[Tensor] = []
        assert self.stage.tok_embeddings is not None  # one stage over the whole model: it embeds
        with torch.inference_mode():
            h = self.stage.tok_embeddings(windows)
            for layer in self.stage.layers:
                self.inputs.append(h)
                h = self._layer(layer, h)
            self.base_nll = self._head_nll(h)

    def _layer(self, layer: torch.nn.Module, h: Tensor) -> Tensor:
        return layer(h, *self.position, self.slots, self.pos)

    def _head_nll(self, h: Tensor) -> float:
        assert self.stage.norm is not None and self.stage.output is not None  # the whole model: it has the head
        return _nll(self.stage.output(self.stage.norm(h)), self.windows)

    @torch.inference_mode()
    def nll_with(self, layers: dict[int, torch.nn.Module], start: int = 0) -> float:
        """NLL with some layers replaced, running from the cached input of layer `start`."""
        h = self.inputs[start]
        for i in range(start, len(self.stage.layers)):
            h = self._layer(layers.get(i, self.stage.layers[i]), h)
        return self._head_nll(h)

    def quantized(self, i: int, bits: int) -> torch.nn.Module:
        block = copy.deepcopy(self.stage.layers[i])
        quantize_block(block, bits)
        return block


def profile_quality(
    model_dir: Path,
    model_name: str,
    bits: tuple[int, ...] = (16, 8, 4),
    progress: Callable[[int, int], None] | None = None,
) -> QualityProfile:
    """Measure every layer's sensitivity at each of `bits`; `progress(done, total)` after each."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    runner = _Runner(model_dir, calibration_windows(tokenizer))
    n = runner.args.n_layers
    loss: dict[int, list[float]] = {b: [] for b in bits}
    done = 0
    for b in bits:
        for i in range(n):
            loss[b].append(runner.nll_with({i: runner.quantized(i, b)}, start=i) - runner.base_nll)
            done += 1
            if progress:
                progress(done, n * len(bits))
    return QualityProfile(model_name, math.exp(runner.base_nll), runner.windows.numel(), loss)


def replica_perplexity(model_dir: Path, bits: list[int]) -> float:
    """Measured perplexity of the model with layer i at bits[i], on the calibration text."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    runner = _Runner(model_dir, calibration_windows(tokenizer))
    layers = {i: runner.quantized(i, b) for i, b in enumerate(bits) if b != 32}
    return math.exp(runner.nll_with(layers))
