"""A Llama-family decoder (Llama, Mistral, Qwen2, SmolLM2) split into pipeline stages.

gpt-fast style: plain modules, a static per-slot KV cache, no framework. A `StageModel`
holds a contiguous range of decoder layers, plus the token embedding when it is the first
stage and the final norm + LM head when it is the last. Each row of a batch belongs to a
cache *slot* and carries its own positions, so sequences of different lengths share one
batch (continuous batching) and padded rows never see each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelArgs:
    """Shape of a Llama-family model, read from a Hugging Face `config.json`."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float
    rope_theta: float
    tie_embeddings: bool
    max_position: int
    qkv_bias: bool = False

    @classmethod
    def from_hf_config(cls, config: Any) -> ModelArgs:
        """Build from a transformers config (LlamaConfig, MistralConfig, Qwen2Config)."""
        rope = getattr(config, "rope_parameters", None) or {}
        theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
        heads = config.num_attention_heads
        return cls(
            vocab_size=config.vocab_size,
            dim=config.hidden_size,
            n_layers=config.num_hidden_layers,
            n_heads=heads,
            n_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            intermediate_size=config.intermediate_size,
            norm_eps=config.rms_norm_eps,
            rope_theta=float(theta),
            tie_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            max_position=config.max_position_embeddings,
            qkv_bias=config.model_type == "qwen2" or bool(getattr(config, "attention_bias", False)),
        )


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class KVCache(nn.Module):
    """Keys and values of one layer: [slots, kv_heads, max_seq, head_dim]."""

    k: Tensor
    v: Tensor

    def __init__(self, slots: int, n_kv_heads: int, max_seq: int, head_dim: int, dtype: torch.dtype) -> None:
        super().__init__()
        shape = (slots, n_kv_heads, max_seq, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype), persistent=False)

    def update(self, slots: Tensor, pos: Tensor, k: Tensor, v: Tensor, seen: int) -> tuple[Tensor, Tensor]:
        """Write k, v [B, kv_heads, T, head_dim] at `pos` [B, T] of `slots` [B]; return [B, kv, seen, hd] on k's device.

        The cache may live on another device than the layer computes on (a host-resident
        layer of a hybrid replica, see workers/offload.py); then k, v cross over.
        """
        cache = self.k.device
        slots, pos = slots.to(cache), pos.to(cache)
        rows = slots[:, None]
        self.k[rows, :, pos] = k.transpose(1, 2).to(cache, self.k.dtype)
        self.v[rows, :, pos] = v.transpose(1, 2).to(cache, self.v.dtype)
        first, n = int(slots[0]), slots.shape[0]
        if bool((slots == torch.arange(first, first + n, device=cache)).all()):
            keys, values = self.k[first : first + n, :, :seen], self.v[first : first + n, :, :seen]  # a view, no copy
        else:
            keys, values = self.k[slots, :, :seen], self.v[slots, :, :seen]
        return keys.to(k.device), values.to(k.device)


def rotary_tables(args: ModelArgs, max_seq: int) -> tuple[Tensor, Tensor]:
    """cos and sin [max_seq, head_dim] of rotary position embeddings (the rotate-half layout of HF)."""
    inv_freq = 1.0 / (args.rope_theta ** (torch.arange(0, args.head_dim, 2, dtype=torch.int64).float() / args.head_dim))
    freqs = torch.outer(torch.arange(max_seq).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x [B, heads, T, hd]; cos, sin [B, T, hd]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


class Attention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        q, kv = args.n_heads * args.head_dim, args.n_kv_heads * args.head_dim
        self.wqkv = nn.Linear(args.dim, q + 2 * kv, bias=args.qkv_bias)
        self.wo = nn.Linear(q, args.dim, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, slots: Tensor, pos: Tensor) -> Tensor:
        a = self.args
        bsz, seqlen, _ = x.shape
        q_size, kv_size = a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim
        q, k, v = self.wqkv(x).split([q_size, kv_size, kv_size], dim=-1)
        q = q.view(bsz, seqlen, a.n_heads, a.head_dim).transpose(1, 2)
        k = k.view(bsz, seqlen, a.n_kv_heads, a.head_dim).transpose(1, 2)
        v = v.view(bsz, seqlen, a.n_kv_heads, a.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        assert self.kv_cache is not None, "call StageModel.setup_cache first"
        k, v = self.kv_cache.update(slots, pos, k, v, mask.shape[-1])
        if k.dtype == torch.float32:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=a.n_kv_heads != a.n_heads)
        elif seqlen == 1:
            y = _decode_attention(q.to(k.dtype), k, v, mask).float()
        else:  # prefill from a bf16 cache: fp32 SDPA (torch's bf16 SDPA on CPU is ~3x slower than fp32)
            y = F.scaled_dot_product_attention(
                q, k.float(), v.float(), attn_mask=mask, enable_gqa=a.n_kv_heads != a.n_heads
            )
        return self.wo(y.transpose(1, 2).reshape(bsz, seqlen, q_size))


def _decode_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """One query per row against a bf16 cache, grouped-query: q [B, H, 1, hd], k/v [B, KV, S, hd].

    Written out because torch's CPU SDPA in bf16 is slow for a single query: 64 rows x 700
    cached tokens take 27.7 ms in SDPA bf16, 8.3 ms in SDPA fp32 and 3.8 ms here. The cache
    views are folded to [B*KV, S, hd] (still views: the cache's rows are evenly strided) so
    bmm reads them in place; a 4-D broadcasting matmul would copy the whole cache slice.
    """
    bsz, heads, _, hd = q.shape
    kv_heads, seen = k.shape[1], k.shape[2]
    group = heads // kv_heads
    k3, v3 = k.reshape(bsz * kv_heads, seen, hd), v.reshape(bsz * kv_heads, seen, hd)
    scores = torch.bmm(q.reshape(bsz * kv_heads, group, hd), k3.transpose(1, 2)) * hd**-0.5
    scores = scores.float().view(bsz, kv_heads * group, seen).masked_fill(~mask.view(bsz, 1, seen), float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(v.dtype).view(bsz * kv_heads, group, seen)
    return torch.bmm(probs, v3).view(bsz, heads, 1, hd)


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.w13 = nn.Linear(args.dim, 2 * args.intermediate_size, bias=False)  # gate and up, fused
        self.w2 = nn.Linear(args.intermediate_size, args.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, slots: Tensor, pos: Tensor) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, mask, slots, pos)
        return h + self.feed_forward(self.ffn_norm(h))


class StageModel(nn.Module):
    """Decoder layers [first, last] of a model; embeds tokens if first, returns logits if last."""

    def __init__(self, args: ModelArgs, first: int, last: int) -> None:
        super().__init__()
        self.args, self.first, self.last = args, first, last
        self.is_first, self.is_last = first == 0, last == args.n_layers - 1
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim) if self.is_first else None
        self.layers = nn.ModuleList(Block(args) for _ in range(first, last + 1))
        self.norm = RMSNorm(args.dim, args.norm_eps) if self.is_last else None
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False) if self.is_last else None
        self.rope_cos = self.rope_sin = torch.empty(0)
        self.compute_device = torch.device("cpu")  # where its layers compute (workers.loader.build_stage sets it)

    def setup_cache(self, slots: int, max_seq: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> None:
        """Allocate this stage's KV caches: `slots` sequences of up to `max_seq` tokens each."""
        a = self.args
        for layer in self.blocks:
            with torch.device(
                getattr(layer, "kv_device", None) or device
            ):  # host-resident layers may keep theirs on the host
                layer.attention.kv_cache = KVCache(slots, a.n_kv_heads, max_seq, a.head_dim, dtype)
        cos, sin = rotary_tables(a, max_seq)
        self.rope_cos, self.rope_sin = cos.to(device), sin.to(device)

    def kv_cache_bytes(self) -> int:
        """Bytes held by this stage's KV caches."""
        return sum(c.k.nbytes + c.v.nbytes for layer in self.blocks if (c := layer.attention.kv_cache) is not None)

    @property
    def blocks(self) -> list[Block]:
        """The stage's decoder blocks, typed (an nn.ModuleList yields plain Modules; some may be wrapped, see
        workers/offload.py, and keep a Block's `attention`)."""
        return cast("list[Block]", list(self.layers))

    def position_inputs(self, pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Rotary cos, sin [B, T, hd] and the causal mask [B, 1, T, seen] for positions `pos` [B, T]."""
        seen = int(pos.max()) + 1
        mask = (torch.arange(seen, device=pos.device)[None, None, :] <= pos[:, :, None])[:, None]
        return self.rope_cos[pos], self.rope_sin[pos], mask

    @torch.inference_mode()
    def forward(self, x: Tensor, slots: Tensor, pos: Tensor, last_index: Tensor | None = None) -> Tensor:
        """Run the stage on token ids [B, T] (first stage) or hidden states [B, T, dim].

        `slots` [B] are the cache rows, `pos` [B, T] the positions of each token. The last
        stage returns logits [B, vocab] of the token at `last_index` [B] of each row (the
        last real token of a right-padded prompt); other stages return hidden states.
        """
        h = self.tok_embeddings(x) if self.tok_embeddings is not None else x
        cos, sin, mask = self.position_inputs(pos)
        for layer in self.layers:
            h = layer(h, cos, sin, mask, slots, pos)
        if not self.is_last:
            return h
        assert self.norm is not None and self.output is not None
        if last_index is not None:
            h = h[torch.arange(h.shape[0], device=h.device), last_index]
        else:
            h = h[:, -1]
        return self.output(self.norm(h)).float()


# Hugging Face parameter names -> ours, per decoder layer (q/k/v and gate/up are fused).
_LAYER_KEYS = {
    "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
}


def layer_state_dict(hf: Mapping[str, Tensor], args: ModelArgs, i: int) -> dict[str, Tensor]:
    """Our Block state dict for decoder layer `i` from a Hugging Face Llama state dict."""
    p = f"model.layers.{i}."
    out = {mine: hf[p + theirs] for theirs, mine in _LAYER_KEYS.items()}
    out["attention.wqkv.weight"] = torch.cat([hf[f"{p}self_attn.{n}_proj.weight"] for n in "qkv"])
    if args.qkv_bias:
        out["attention.wqkv.bias"] = torch.cat([hf[f"{p}self_attn.{n}_proj.bias"] for n in "qkv"])
    out["feed_forward.w13.weight"] = torch.cat([hf[p + "mlp.gate_proj.weight"], hf[p + "mlp.up_proj.weight"]])
    return out


def outer_state_dict(hf: Mapping[str, Tensor], args: ModelArgs, first: int, last: int) -> dict[str, Tensor]:
    """The embedding (first stage) and final norm + LM head (last stage); a tied head shares the embedding."""
    out: dict[str, Tensor] = {}
    if first == 0:
        out["tok_embeddings.weight"] = hf["model.embed_tokens.weight"]
    if last == args.n_layers - 1:
        out["norm.weight"] = hf["model.norm.weight"]
        tied = args.tie_embeddings or "lm_head.weight" not in hf
        out["output.weight"] = hf["model.embed_tokens.weight"] if tied else hf["lm_head.weight"]
    return out
