"""Architecture facts of a decoder-only model and the bytes they imply (weights, KV cache, activations).

Units: parameters, bytes. The bit-widths are weight storage bits per decoder layer (solver.plan.ENGINE_BITS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Weight-only quantisation: stored bits per weight including scales (int8 per-channel:
# one fp16 scale per row, negligible; int4 group 64: one fp16 scale per 64 weights). 32: the
# engine's unquantized fp32 layers (a `--replica` may ask for them on a CPU).
STORED_BITS = {32: 32.0, 16: 16.0, 8: 8.0, 4: 4.25, 3: 3.25}
KV_BYTES_PER_VALUE = 2  # a 16-bit KV cache (vLLM kv_cache_dtype="auto"); "fp8" stores 1 byte


@dataclass(frozen=True)
class ModelShape:
    """Architecture facts of a decoder-only model (a row of models.csv)."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    experts: int = 1
    experts_per_token: int = 1
    tied_embeddings: bool = False
    context: int = 0  # the model's context window (tokens); 0: not known

    @classmethod
    def from_row(cls, row: Any) -> ModelShape:
        """From a models.csv row (a pandas Series or a dict with the same keys)."""
        return cls(
            name=row["model"],
            layers=int(row["layers"]),
            hidden=int(row["hidden"]),
            intermediate=int(row["intermediate"]),
            heads=int(row["heads"]),
            kv_heads=int(row["kv_heads"]),
            vocab=int(row["vocab"]),
            experts=int(row["experts"]),
            experts_per_token=int(row["experts_per_token"]),
            tied_embeddings=bool(row["tied_embeddings"]),
            context=int(row["context"]) if "context" in row and row["context"] == row["context"] else 0,
        )

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def _attention_params(self) -> int:
        kv = self.kv_heads * self.head_dim
        return 2 * self.hidden * self.hidden + 2 * self.hidden * kv  # q, o; k, v

    def layer_params(self) -> int:
        """Stored parameters of one decoder layer (all experts)."""
        return self._attention_params() + 3 * self.hidden * self.intermediate * self.experts

    def layer_active_params(self) -> int:
        """Parameters one token multiplies through in one decoder layer (routed experts only)."""
        return self._attention_params() + 3 * self.hidden * self.intermediate * self.experts_per_token

    def embedding_params(self) -> int:
        """Token embedding plus LM head (kept at 16 bits)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def kv_bytes_per_token(self, value_bytes: int = KV_BYTES_PER_VALUE) -> int:
        """KV cache bytes one token of context costs across all layers (`value_bytes` per cached value)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * value_bytes

    def layer_kv_bytes_per_token(self, value_bytes: int = KV_BYTES_PER_VALUE) -> float:
        """KV cache bytes one token of context costs in one decoder layer."""
        return self.kv_bytes_per_token(value_bytes) / self.layers

    def layer_weight_bytes(self, bits: int) -> float:
        """Stored bytes of one decoder layer's weights at `bits` bits (quantisation scales included)."""
        return self.layer_params() * STORED_BITS[bits] / 8

    def activation_bytes(self, tokens: float) -> float:
        """Hidden and MLP activations (fp16 bytes) of `tokens` tokens computed in one pass."""
        return tokens * (4 * self.hidden + 2 * self.intermediate) * 2
