"""A local model run with transformers: one padded batch per call.

Generation left-pads the batch (decoder-only models continue from the right edge), applies
the tokenizer's chat template, samples under a fixed seed and cuts each completion at the
end-of-turn token or the first stop string.

**Shared prefixes are computed once.** In a simulation step every agent's prompt starts
with the same system message, event and population context, and only the agent's own
state differs; on a CPU the prompt's forward pass, not decoding, is then most of the cost.
So rows are grouped by their common token prefix (:func:`prefix_groups`), each group's
prefix runs through the model once, and its key/value cache is copied to the group's rows;
generation then starts from each row's own suffix. Rows sit in the batch as
``[pad][prefix][pad][suffix]`` with the pads masked, and positions follow the unmasked
tokens, so each row computes what it would alone (up to float rounding).

Scoring runs the prompt and the continuation through the model in one forward pass and
reads the continuation's token log-probabilities.
"""

from __future__ import annotations

import os
import zlib
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

from agents.backends.base import (
    Completion,
    GenerationParams,
    Prompt,
    Score,
    check_params,
    check_prompts,
)
from agents.backends.chat import render_chat
from mfllm_env.checks import check_count

CACHE_ARGUMENT = (
    "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
)
"""The name under which this transformers passes a key/value :class:`~transformers.Cache`
in and out of a model (``cache`` since the rename that deprecated ``past_key_values``,
whose use prints a deprecation warning; ``past_key_values`` before it)."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def load_model_and_tokenizer(source: str | Path) -> tuple[Any, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a local folder or a hub id, with an error that
    says what to do when a hub id cannot be fetched."""
    local = Path(source).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    except OSError as error:
        if local:
            raise ValueError(f"{source} is not a transformers model folder: {error}") from None
        hint = (
            "HF_HUB_OFFLINE is set, so nothing is downloaded; unset it on a machine with "
            "network access, or pass a local model folder"
            if _offline()
            else "downloading it needs network access to the Hugging Face hub; pass a local "
            "model folder or 'smollm2' (the offline default) instead"
        )
        raise ValueError(f"cannot load model {str(source)!r}: {hint}") from None
    return model, tokenizer


class TransformersBackend:
    """A causal language model run locally with transformers (see the module docstring).

    ``model`` is a folder, a hub id, or an already-built model (then ``tokenizer`` is
    required). ``adapter`` is a PEFT adapter folder, merged into the weights for speed.
    ``threads`` sets torch's intra-op threads (one thread is never slow for small-batch
    decoding on shared CPUs; two help big batches). ``batch_size`` caps the rows of one
    forward pass (bigger calls are split). ``max_prompt_tokens`` keeps the end of longer
    prompts (their start is cut) so that one long prompt cannot exhaust memory.
    ``share_prefixes`` computes common prompt prefixes once (see the module docstring).
    """

    def __init__(
        self,
        model: str | Path | Any,
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
        adapter: str | Path | None = None,
        threads: int | None = None,
        batch_size: int = 64,
        max_prompt_tokens: int = 1536,
        share_prefixes: bool = True,
        name: str | None = None,
    ) -> None:
        check_count("batch_size", batch_size, 1)
        check_count("max_prompt_tokens", max_prompt_tokens, 1)  # -1 kept the last token only
        if threads is not None:
            check_count("threads", threads, 1)
            torch.set_num_threads(threads)
        if isinstance(model, (str, Path)):
            self.name = name or str(model)
            model, loaded_tokenizer = load_model_and_tokenizer(model)
            tokenizer = tokenizer or loaded_tokenizer
        else:
            if not isinstance(model, torch.nn.Module):
                raise TypeError(
                    f"model must be a folder, a hub id or a model, got {type(model).__name__}"
                )
            if tokenizer is None:
                raise ValueError("a model object needs its tokenizer: pass tokenizer=")
            self.name = name or type(model).__name__
        if adapter is not None:
            from peft import PeftModel

            if not (Path(adapter) / "adapter_config.json").is_file():
                raise FileNotFoundError(f"{adapter} is not a PEFT adapter folder")
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
            self.name += f"+{Path(adapter).name}"
        self.model = model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.share_prefixes = share_prefixes
        self._end_ids = self._end_token_ids()

    def _end_token_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(configured)
        return {i for i in ids if i is not None}

    def render(self, messages: Prompt) -> str:
        return render_chat(self.tokenizer, messages)

    def encode_prompts(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        encoded = self.tokenizer([self.render(p) for p in prompts], add_special_tokens=False)[
            "input_ids"
        ]
        return [ids[-self.max_prompt_tokens :] for ids in encoded]

    # -- generation ------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        check_prompts(prompts)
        check_params(params)
        if not prompts:
            return []
        encoded = self.encode_prompts(prompts)
        seeds = row_seeds(encoded, params.seed)
        completions: list[Completion] = []
        for start in range(0, len(encoded), self.batch_size):
            stop = start + self.batch_size
            completions.extend(self._generate_batch(encoded[start:stop], params, seeds[start:stop]))
        return completions

    def _generate_batch(
        self, encoded: list[list[int]], params: GenerationParams, seeds: list[int]
    ) -> list[Completion]:
        pad = self.tokenizer.pad_token_id
        groups = prefix_groups(encoded) if self.share_prefixes else None
        cache = None
        if groups is None:
            width = max(len(ids) for ids in encoded)
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded])
            attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded])
        else:
            input_ids, attention, cache = self._prefix_cached_inputs(encoded, groups)
            width = input_ids.shape[1]
        options: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": False,  # sampling, if any, happens in TopKTopPSampler
            "pad_token_id": pad,
            "eos_token_id": sorted(self._end_ids),
        }
        if params.temperature > 0:
            sampler = TopKTopPSampler(params.temperature, params.top_p, seeds=seeds)
            options["logits_processor"] = LogitsProcessorList([sampler])
        if params.stop:
            options.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if cache is not None:
            options[CACHE_ARGUMENT] = cache
        with torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=attention, **options)
        new_tokens = output[:, width:].tolist()
        completions = []
        for ids, row in zip(encoded, new_tokens, strict=True):
            length = next((j for j, t in enumerate(row) if t in self._end_ids), len(row))
            text = self.tokenizer.decode(row[:length], skip_special_tokens=True)
            for stop in params.stop:
                text = text.split(stop, 1)[0]
            completions.append(Completion(text, len(ids), length))
        return completions

    def _prefix_cached_inputs(
        self, encoded: list[list[int]], groups: list[tuple[int, list[int]]]
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Inputs ``[pad][prefix][pad][suffix]`` per row, and the cache of the prefixes
        (run once per group, then copied to the group's rows)."""
        pad = self.tokenizer.pad_token_id
        prefixes = [encoded[rows[0]][:length] for length, rows in groups]
        p_width = max(len(p) for p in prefixes)
        prefix_ids = torch.tensor([[pad] * (p_width - len(p)) + p for p in prefixes])
        prefix_mask = torch.tensor([[0] * (p_width - len(p)) + [1] * len(p) for p in prefixes])
        positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            cache = self.model(
                input_ids=prefix_ids,
                attention_mask=prefix_mask,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
            )[CACHE_ARGUMENT]
        row_group = [0] * len(encoded)
        suffixes: list[list[int]] = [[] for _ in encoded]
        for g, (length, rows) in enumerate(groups):
            for row in rows:
                row_group[row] = g
                suffixes[row] = encoded[row][length:]
        cache.reorder_cache(torch.tensor(row_group))
        s_width = max(len(s) for s in suffixes)
        input_ids = torch.tensor(
            [
                prefix_ids[row_group[i]].tolist() + [pad] * (s_width - len(s)) + s
                for i, s in enumerate(suffixes)
            ]
        )
        attention = torch.tensor(
            [
                prefix_mask[row_group[i]].tolist() + [0] * (s_width - len(s)) + [1] * len(s)
                for i, s in enumerate(suffixes)
            ]
        )
        return input_ids, attention, cache

    # -- scoring -----------------------------------------------------------------------

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[Score]:
        check_prompts(prompts, continuations)
        if not prompts:
            return []
        encoded = self.encode_prompts(prompts)
        targets = self.tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            picked = continuation_logprobs(
                self.model, encoded, targets, self.tokenizer.pad_token_id, max_rows=self.batch_size
            )
        return [Score(tuple(row.tolist())) for row in picked]


SCORE_TOKEN_BUDGET = 8192
"""Padded tokens per scoring forward pass (bounds the activations' memory)."""


def continuation_logprobs(
    model: Any,
    prompts: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    pad_id: int,
    *,
    max_rows: int = 64,
    token_budget: int = SCORE_TOKEN_BUDGET,
) -> list[torch.Tensor]:
    """Log-probability of each target token after its prompt, one 1-d tensor per row.

    Runs in chunks of at most ``max_rows`` rows and about ``token_budget`` padded tokens.
    The output layer and the softmax run only at the target positions (the vocabulary is
    49k tokens wide for SmolLM2: over all positions that was most of the memory). Gradients
    flow when called outside ``torch.no_grad``. It applies the decoder and the output
    layer itself, so a model that post-processes its logits in ``forward`` (Gemma's logit
    soft-capping, for one) would be scored without that step; Llama-family models such as
    SmolLM2 have none.
    """
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    results: list[torch.Tensor] = []
    start = 0
    while start < len(prompts):
        stop, width = start, 0
        while stop < len(prompts) and stop - start < max_rows:
            row_width = max(width, len(prompts[stop]) + len(targets[stop]))
            if stop > start and row_width * (stop - start + 1) > token_budget:
                break
            width, stop = row_width, stop + 1
        rows = [
            list(p) + list(t) for p, t in zip(prompts[start:stop], targets[start:stop], strict=True)
        ]
        input_ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        hidden = decoder(input_ids=input_ids, attention_mask=attention).last_hidden_state
        # The token at position p is predicted by the hidden state at position p - 1.
        row_index, positions, token_ids, lengths = [], [], [], []
        for i, (prompt, target) in enumerate(
            zip(prompts[start:stop], targets[start:stop], strict=True)
        ):
            row_index += [i] * len(target)
            positions += range(len(prompt) - 1, len(prompt) + len(target) - 1)
            token_ids += target
            lengths.append(len(target))
        if token_ids:
            logits = head(hidden[torch.tensor(row_index), torch.tensor(positions)]).float()
            picked = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(token_ids)[:, None])
            results.extend(torch.split(picked[:, 0], lengths))
        else:
            results.extend(torch.zeros(0) for _ in lengths)
        start = stop
    return results


def row_seeds(encoded: Sequence[Sequence[int]], seed: int) -> list[int]:
    """One sampling seed per prompt, from the call's seed and the prompt's tokens (and, for
    repeated prompts, which repeat it is), never from its row: a prompt samples the same
    completion alone or in any batch (up to float rounding), and identical prompts in one
    call still draw different samples."""
    seen: dict[bytes, int] = {}
    seeds = []
    for ids in encoded:
        key = array("l", ids).tobytes()
        repeat = seen[key] = seen.get(key, -1) + 1
        seeds.append(zlib.crc32(key, zlib.crc32(f"{seed}:{repeat}".encode())))
    return seeds


class TopKTopPSampler(LogitsProcessor):
    """Samples the next token itself and hands generation a one-hot score row.

    Top-k (``top_k``, 50 as in transformers' default), then temperature, then top-p
    within those k, then one draw per row from that row's own generator (seeded by
    :func:`row_seeds`). Done here because transformers' own top-p sorts the whole
    49k-token vocabulary and its sampler scans it, every step (20% of a 16-agent
    generation's time on this CPU), and because its one global generator makes a row's
    sample depend on the rest of the batch. Generation runs greedily over the returned
    scores, so it picks exactly the sampled token.
    """

    def __init__(
        self, temperature: float, top_p: float, *, seeds: Sequence[int], top_k: int = 50
    ) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        values, indices = torch.topk(scores, min(self.top_k, scores.shape[-1]), dim=-1)
        probs = torch.softmax(values.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            # Keep the smallest set of top tokens whose mass reaches top_p (at least one).
            before = probs.cumsum(dim=-1) - probs
            probs = probs.masked_fill(before >= self.top_p, 0.0)
        picks = torch.stack(
            [
                torch.multinomial(row, 1, generator=g)
                for row, g in zip(probs, self.generators, strict=True)
            ]
        )
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, indices.gather(-1, picks), 0.0)


MIN_SHARED_TOKENS = 16
"""Shorter common prefixes are not worth a separate forward pass."""


def _common_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def prefix_groups(encoded: list[list[int]]) -> list[tuple[int, list[int]]] | None:
    """Group rows by shared token prefix: ``[(prefix length, row indices), ...]``.

    Rows are sorted so that rows with long common prefixes are neighbours; a row joins
    the current group while that keeps at least half of the group's common prefix (rows
    of one episode share the event and context, rows of different episodes only the
    system message). Every row keeps at least one token of its own. Returns ``None``
    when no group would share :data:`MIN_SHARED_TOKENS` tokens between two or more rows
    (then plain left padding is as good).
    """
    order = sorted(range(len(encoded)), key=lambda i: encoded[i])
    groups: list[tuple[int, list[int]]] = []
    for i in order:
        ids = encoded[i]
        if groups:
            length, rows = groups[-1]
            shared = min(_common_length(encoded[rows[0]][:length], ids), len(ids) - 1)
            if shared >= max(MIN_SHARED_TOKENS, length // 2):
                groups[-1] = (shared, [*rows, i])
                continue
        groups.append((len(ids) - 1, [i]))
    if not any(len(rows) > 1 and length >= MIN_SHARED_TOKENS for length, rows in groups):
        return None
    return groups
