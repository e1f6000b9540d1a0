"""Decoding passes of a Llama-family model written out by hand, for CPU generation.

A decoding pass feeds each row of the batch its next token (and a few draft tokens) over
a key/value cache of hundreds of tokens. On a CPU, the transformers modules spend a large
share of such a pass outside the matrix products: the key/value cache grows by
concatenation (every layer copies its whole cache every pass), grouped-query attention
copies each key/value head for the query heads that share it, and each layer runs dozens
of small operations through module calls. :class:`FusedLlamaDecoder` computes the same
layers with

- the query/key/value projections fused into one matrix, and the gate/up projections
  into another (one product each instead of three and two);
- its own key/value cache, preallocated and written in place, attended over its whole
  capacity with the unused columns masked (a contiguous matrix product, no copy);
- attention over the grouped query heads without copying keys or values (the query heads
  that share a key/value head are stacked as rows of one product);
- one additive mask per pass and rotary tables computed once, by the model's own rotary
  module;
- the linear layers and the output layer run only over the fed tokens that are not
  padding (rows with short drafts are padded to the longest one).

Its logits equal the model's own (eager attention) up to float rounding; a test checks
them against transformers. Only plain Llama-architecture models qualify
(:func:`fused_decoding_supported`); others decode through transformers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

STATIC_ROPE_TYPES = ("default", "linear", "llama3")
"""Rotary embeddings whose tables depend on the position only (not on the length seen so
far, as "dynamic" scaling does): they can be computed once."""

CACHE_STEP = 64
"""The key/value cache grows in multiples of this many columns (and by at least a quarter
of its size), so that a pass rarely reallocates it."""


def fused_decoding_supported(model: Any) -> bool:
    """Whether :class:`FusedLlamaDecoder` computes what ``model`` computes: a Llama
    causal LM without attention or MLP biases, SiLU-gated MLPs and a static rotary
    embedding."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) != "llama":
        return False
    rope = getattr(config, "rope_parameters", None) or {}
    return (
        not getattr(config, "attention_bias", False)
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "hidden_act", None) == "silu"
        and rope.get("rope_type", "default") in STATIC_ROPE_TYPES
        and getattr(config, "pretraining_tp", 1) == 1
    )


def _rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of ``x`` (``[..., head dim]``), as Llama applies it."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), -1) * sin


def fuse_linear_weights(linears: list[torch.nn.Linear]) -> torch.Tensor:
    """One weight matrix stacking the outputs of ``linears`` (bias-free, same input), whose
    own weights become views of it: the model computes as before, with no second copy,
    and a change made in place to either is seen by both."""
    fused = torch.cat([linear.weight.detach() for linear in linears])
    row = 0
    for linear in linears:
        rows = linear.weight.shape[0]
        trainable = linear.weight.requires_grad
        linear.weight = torch.nn.Parameter(fused[row : row + rows], requires_grad=trainable)
        row += rows
    return fused


class FusedLlamaDecoder:
    """The decoding passes of a Llama model over a batch (see the module docstring).

    Built once per model: the model's query/key/value and gate/up weights become views of
    the fused matrices (:func:`fuse_linear_weights`). Weights changed in place (an
    optimizer step, ``load_state_dict``) are seen by both; a model wrapped or changed
    otherwise afterwards (a PEFT adapter, replaced modules) is not: build a new one.
    :meth:`start` takes the key/value cache a prompt pass of the model left,
    :meth:`forward` runs one pass and returns its logits, :meth:`select` keeps some rows.
    Not thread-safe: one generation at a time.
    """

    def __init__(self, model: Any) -> None:
        if not fused_decoding_supported(model):
            raise ValueError(f"{type(model).__name__} is not a plain Llama model")
        config = model.config
        inner = model.get_decoder()
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.groups = self.heads // self.kv_heads
        self.scaling = self.head_dim**-0.5
        self.eps = config.rms_norm_eps
        self.embedding = inner.embed_tokens.weight
        self.dtype = self.embedding.dtype
        with torch.no_grad():
            self.layers = [
                (
                    layer.input_layernorm.weight,
                    fuse_linear_weights(
                        [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]
                    ),
                    layer.self_attn.o_proj.weight,
                    layer.post_attention_layernorm.weight,
                    fuse_linear_weights([layer.mlp.gate_proj, layer.mlp.up_proj]),
                    layer.mlp.down_proj.weight,
                )
                for layer in inner.layers
            ]
        self.norm = inner.norm.weight
        self.output = model.get_output_embeddings().weight
        self.rotary = inner.rotary_emb
        self._rotary_tables(config.max_position_embeddings)
        self.keys = self.values = torch.empty(0)
        self.length = 0
        self.rows = torch.arange(0)  # the cache row of each row still going

    def _rotary_tables(self, positions: int) -> None:
        """The rotary cosines and sines of positions ``0 .. positions - 1``, computed by the
        model's own rotary module (static types only: see :data:`STATIC_ROPE_TYPES`)."""
        with torch.no_grad():
            cos, sin = self.rotary(self.embedding[:1], torch.arange(positions)[None])
        self.cos, self.sin = cos[0], sin[0]

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    def start(self, cache: Any) -> None:
        """Take over the key/value cache of a prompt pass (a transformers ``Cache`` with
        one entry per layer, ``[rows, kv heads, columns, head dim]``)."""
        layers = cache.layers
        rows, _, length, _ = layers[0].keys.shape
        self.keys = self._allocate(rows, self._capacity(length))
        self.values = torch.zeros_like(self.keys)
        for i, layer in enumerate(layers):
            self.keys[i, :, :, :length] = layer.keys
            self.values[i, :, :, :length] = layer.values
        self.length = length
        self.rows = torch.arange(rows)

    @staticmethod
    def _capacity(columns: int) -> int:
        wanted = columns + max(CACHE_STEP, columns // 4)
        return -(-wanted // CACHE_STEP) * CACHE_STEP

    def _allocate(self, rows: int, capacity: int) -> torch.Tensor:
        # Zeros, not empty: unused columns are masked, and 0 * garbage could be NaN.
        shape = (len(self.layers), rows, self.kv_heads, capacity, self.head_dim)
        return torch.zeros(shape, dtype=self.dtype)

    def _reserve(self, columns: int) -> None:
        capacity = self.keys.shape[3]
        if columns <= capacity:
            return
        keys = self._allocate(self.keys.shape[1], self._capacity(columns))
        values = torch.zeros_like(keys)
        keys[..., :capacity, :] = self.keys
        values[..., :capacity, :] = self.values
        self.keys, self.values = keys, values

    def select(self, rows: torch.Tensor) -> None:
        """Keep only these rows (indices into the current rows), in this order.

        Copying the cache for every row that ends cost a policy call 7% of its time:
        rows that left stay in the cache, fed nothing (so the linear layers skip them),
        until at most half the cache's rows are still going; then it is compacted."""
        self.rows = self.rows[rows]
        if 2 * len(self.rows) <= self.keys.shape[1]:
            self.keys, self.values = self.keys[:, self.rows], self.values[:, self.rows]
            self.rows = torch.arange(len(self.rows))

    def forward(
        self, input_ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """One pass: ``input_ids`` ``[rows, width]`` fed after the cached columns,
        ``attention`` ``[rows, cached + width]`` (1 for a column a row may attend to, the
        fed columns included: 0 marks padding), ``positions`` ``[rows, width]``. Returns
        the logits ``[rows, width, vocabulary]`` (float; zero where the fed token is
        padding)."""
        rows, width = input_ids.shape
        end = self.length + width
        if rows != len(self.rows) or attention.shape != (rows, end):
            raise ValueError(
                f"attention must be {(len(self.rows), end)}, got {tuple(attention.shape)}"
            )
        cache_rows = self.keys.shape[1]
        if rows == cache_rows:  # no row has left since the last compaction
            return self._forward(input_ids, attention, positions)
        # Rows that left are fed nothing and attend to one column (their output unused).
        all_ids = input_ids.new_zeros(cache_rows, width)
        all_attention = attention.new_zeros(cache_rows, end)
        all_attention[:, 0] = 1
        all_positions = positions.new_zeros(cache_rows, width)
        all_ids[self.rows], all_attention[self.rows] = input_ids, attention
        all_positions[self.rows] = positions
        return self._forward(all_ids, all_attention, all_positions)[self.rows]

    def _forward(
        self, input_ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` over every row of the cache."""
        rows, width = input_ids.shape
        start, end = self.length, self.length + width
        self._reserve(end)
        capacity = self.keys.shape[3]
        heads, kv_heads, head_dim, groups = self.heads, self.kv_heads, self.head_dim, self.groups
        # The mask: every cached column a row attends to, then the fed columns causally.
        allowed = torch.zeros(rows, width, capacity, dtype=torch.bool)
        allowed[:, :, :end] = attention[:, None, :].bool()
        allowed[:, :, start:end] &= torch.ones(width, width, dtype=torch.bool).tril()
        mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill_(~allowed, float("-inf"))
        mask = mask[:, None, None]  # [rows, 1, 1, width, capacity]: broadcast over heads
        fed = attention[:, start:].reshape(-1).nonzero()[:, 0]  # the tokens that are not padding
        packed = fed.numel() < rows * width
        last = int(positions.max())
        if last >= len(self.cos):  # past the model's trained length, as transformers goes on
            self._rotary_tables(max(last + 1, 2 * len(self.cos)))
        cos = self.cos[positions][:, None]  # [rows, 1, width, head dim]
        sin = self.sin[positions][:, None]
        x = F.embedding(input_ids.reshape(-1)[fed], self.embedding)  # [fed tokens, hidden]
        qkv_width = (heads + 2 * kv_heads) * head_dim
        for i, (norm_in, qkv_weight, out_weight, norm_mlp, gate_up, down) in enumerate(self.layers):
            qkv = F.linear(self._rms_norm(x, norm_in), qkv_weight)
            if packed:
                qkv = qkv.new_zeros(rows * width, qkv_width).index_copy_(0, fed, qkv)
            qkv = qkv.view(rows, width, heads + 2 * kv_heads, head_dim).transpose(1, 2)
            q, k, v = qkv[:, :heads], qkv[:, heads : heads + kv_heads], qkv[:, heads + kv_heads :]
            q = _rotary(q, cos, sin)
            self.keys[i, :, :, start:end] = _rotary(k, cos, sin)
            self.values[i, :, :, start:end] = v
            # Query heads sharing a key/value head are rows of one product.
            scores = torch.matmul(
                q.reshape(rows, kv_heads, groups * width, head_dim), self.keys[i].transpose(2, 3)
            )
            scores = (scores * self.scaling).view(rows, kv_heads, groups, width, capacity) + mask
            weights = torch.softmax(scores, -1, dtype=torch.float32).to(self.dtype)
            attended = torch.matmul(
                weights.view(rows, kv_heads, groups * width, capacity), self.values[i]
            )
            attended = attended.view(rows, heads, width, head_dim).transpose(1, 2)
            attended = attended.reshape(rows * width, heads * head_dim)
            if packed:
                attended = attended[fed]
            x = x + F.linear(attended, out_weight)
            gate, up = F.linear(self._rms_norm(x, norm_mlp), gate_up).chunk(2, -1)
            x = x + F.linear(F.silu(gate) * up, down)
        self.length = end
        logits = F.linear(self._rms_norm(x, self.norm), self.output).float()
        if packed:
            logits = logits.new_zeros(rows * width, logits.shape[-1]).index_copy_(0, fed, logits)
        return logits.view(rows, width, -1)
