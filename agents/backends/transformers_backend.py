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

Decoding is this module's own loop (:meth:`TransformersBackend._decode`): bf16 weights
where the CPU has bf16 units, drafts looked up in each row's own text and kept by
speculative sampling, rows leaving the batch as they end, and for Llama models the
hand-written passes of :mod:`agents.backends.fused_llama` (see ``TransformersBackend``).

Scoring runs the prompt and the continuation through the model in one forward pass and
reads the continuation's token log-probabilities; common prompt prefixes run once there
too.
"""

from __future__ import annotations

import copy
import os
import zlib
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.modeling_outputs import CausalLMOutputWithPast

from agents.backends.base import (
    GENERATION_DTYPES,
    LINE_BREAKS,
    Completion,
    GenerationParams,
    Prompt,
    Score,
    check_params,
    check_prompts,
    cpu_has_bf16_units,
    first_line_complete,
)
from agents.backends.chat import encode_chat, end_token_ids, render_chat
from agents.backends.fused_llama import FusedLlamaDecoder, fused_decoding_supported
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

    ``generation_dtype`` is the weights' precision for ``generate``: ``"bfloat16"`` runs
    prompts about twice as fast as ``"float32"`` on a CPU that multiplies bf16 in hardware
    (AVX512-BF16, AMX), and samples from next-token distributions within about 0.001 nats
    (KL) of fp32's; ``"auto"`` (the default) takes bf16 exactly where the CPU has it
    (:func:`~agents.backends.base.cpu_has_bf16_units`) and the model is fp32. ``score``
    always runs the model as loaded (fp32 from a folder): bf16 would move log-probabilities
    by about 0.05 nats a token. A
    bf16 generator is a copy of the weights taken here (+50% memory): a model changed
    afterwards is scored as changed but generates as it was.

    ``draft_tokens`` is how many tokens a row may draft in a decoding pass (see
    :meth:`_decode`); the rows of one pass share ``draft_budget`` of them
    (:data:`DRAFT_BUDGET`): one summary drafts 8 tokens a pass, 16 agents 2 each.

    ``fused_decoding`` runs the decoding passes of a plain Llama model (SmolLM2 among
    them) through :class:`~agents.backends.fused_llama.FusedLlamaDecoder` instead of the
    model's modules (about 1.25x faster here, same logits up to float rounding); the
    generation model's query/key/value and gate/up weights then become views of its fused
    matrices. Other models decode through transformers (``self.fused_decoding`` says which).
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
        generation_dtype: str = "auto",
        draft_tokens: int = 8,
        fused_decoding: bool = True,
        name: str | None = None,
    ) -> None:
        if generation_dtype not in GENERATION_DTYPES:
            raise ValueError(
                f"generation_dtype must be one of {GENERATION_DTYPES}, got {generation_dtype!r}"
            )
        check_count("batch_size", batch_size, 1)
        check_count("draft_tokens", draft_tokens, 0)
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
        self.draft_tokens = draft_tokens
        self.draft_budget = DRAFT_BUDGET
        self._end_ids = end_token_ids(
            tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)
        )
        self._line_break_ids = self._line_break_token_ids()
        self._generator = self._generation_model(generation_dtype)
        self.generation_dtype = str(self._generator.dtype).removeprefix("torch.")
        self._prefill_attention = self._generator.config._attn_implementation
        self._fused = (
            FusedLlamaDecoder(self._generator)
            if fused_decoding and fused_decoding_supported(self._generator)
            else None
        )
        self.fused_decoding = self._fused is not None
        self._scorer = self.model

    def _generation_model(self, requested: str) -> Any:
        """The model ``generate`` runs: this one, or a bf16 copy of it (see the class
        docstring)."""
        dtype = self.model.dtype
        wants_bf16 = requested == "bfloat16" or (
            requested == "auto" and dtype == torch.float32 and cpu_has_bf16_units()
        )
        if requested == "float32" and dtype != torch.float32:
            raise ValueError(f"generation_dtype='float32' needs an fp32 model, this one is {dtype}")
        if not wants_bf16 or dtype == torch.bfloat16:
            return self.model
        return copy.deepcopy(self.model).to(torch.bfloat16).eval()

    def _set_attention(self, model: Any, *, decoding: bool) -> None:
        """Prompts run with the model's own attention (SDPA by default); one-token decoding
        steps of a bf16 model run eager attention: torch's CPU SDPA kernel is several times
        slower than fp32's for a one-token bf16 query (a 1,000-token summary decoded at
        77 ms a token against 55 with eager attention, one thread)."""
        eager = decoding and model.dtype == torch.bfloat16
        model.config._attn_implementation = "eager" if eager else self._prefill_attention

    def _line_break_token_ids(self) -> frozenset[int]:
        """The tokens whose text holds a line break: where a first line can end."""
        vocabulary = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        texts = self.tokenizer.convert_tokens_to_string  # byte-level pieces -> text
        return frozenset(
            i
            for i, piece in enumerate(vocabulary)
            if piece is not None and any(ch in LINE_BREAKS for ch in texts([piece]))
        )

    def render(self, messages: Prompt) -> str:
        return render_chat(self.tokenizer, messages)

    def encode_prompts(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        return encode_chat(self.tokenizer, prompts, self.max_prompt_tokens)

    # -- generation ------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        check_prompts(prompts)
        check_params(params)
        if not prompts:
            return []
        encoded = self.encode_prompts(prompts)
        completions = []
        for ids, row in zip(encoded, self._sample(encoded, params, keep_end=False), strict=True):
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            for stop in params.stop:
                text = text.split(stop, 1)[0]
            completions.append(Completion(text, len(ids), len(row)))
        return completions

    def generate_ids(
        self, encoded: Sequence[Sequence[int]], params: GenerationParams
    ) -> list[list[int]]:
        """:meth:`generate` for prompts given as token ids (used as they are: no chat
        template, no cut to ``max_prompt_tokens``), returning each row's new token ids, with
        the end-of-turn token that ended a row kept at its end (a trainer scores it)."""
        check_params(params)
        encoded = [list(ids) for ids in encoded]
        if not all(encoded):
            raise ValueError("every prompt needs at least one token")
        return self._sample(encoded, params, keep_end=True)

    def _sample(
        self, encoded: list[list[int]], params: GenerationParams, *, keep_end: bool
    ) -> list[list[int]]:
        """Each prompt's new token ids, in batches of at most ``batch_size`` rows, each
        prompt drawn from its own seeded generator (:func:`row_seeds`)."""
        seeds = row_seeds(encoded, params.seed)
        rows: list[list[int]] = []
        for start in range(0, len(encoded), self.batch_size):
            batch = slice(start, start + self.batch_size)
            rows += self._new_tokens(encoded[batch], params, seeds[batch], keep_end=keep_end)
        return rows

    def _new_tokens(
        self,
        encoded: list[list[int]],
        params: GenerationParams,
        seeds: list[int],
        *,
        keep_end: bool,
    ) -> list[list[int]]:
        pad = self.tokenizer.pad_token_id
        groups = prefix_groups(encoded) if self.share_prefixes else None
        # Prompts (and shared prefixes) always run the prompt attention; decoding switches
        # it and the model is put back afterwards, so every call computes the same.
        self._set_attention(self._generator, decoding=False)
        with torch.inference_mode():
            try:
                if groups is None:
                    width = max(len(ids) for ids in encoded)
                    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded])
                    attention = torch.tensor(
                        [[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded]
                    )
                    cache, cached = None, 0
                else:
                    input_ids, attention, cache = self._prefix_cached_inputs(encoded, groups)
                    cached = cache.get_seq_length()
                return self._decode(
                    encoded, input_ids, attention, cache, cached, params, seeds, keep_end
                )
            finally:
                self._set_attention(self._generator, decoding=False)

    def _decode(
        self,
        encoded: list[list[int]],
        input_ids: torch.Tensor,
        attention: torch.Tensor,
        cache: Any,
        cached: int,
        params: GenerationParams,
        seeds: list[int],
        keep_end: bool = False,
    ) -> list[list[int]]:
        """The new tokens of each row (the end-of-turn token that ended a row only with
        ``keep_end``).

        The uncached part of ``input_ids`` runs in one forward pass; then each pass feeds
        every row still going its latest token plus a draft of the tokens likely to follow
        (prompt lookup decoding): the tokens that followed the latest earlier occurrence of
        the row's last tokens in its own text (:func:`draft_from_context`). Decoding is
        bound by reading the weights once per pass, so checking a few draft tokens costs
        little more than one token, and text that repeats what is already there (a summary
        quoting the event or the previous summary, a reply quoting the post) comes several
        tokens a pass. Draft tokens are kept by speculative sampling (:meth:`RowSampler.verify`:
        each token is distributed exactly as in plain sampling, with other draws; greedy
        decoding keeps a draft token only where it is the argmax, so greedy output is
        unchanged). Refused draft tokens stay in the key/value cache, masked out. A row
        that ends (end-of-turn, ``max_new_tokens``, a stop string, its first line when
        ``params.until_first_line``) leaves the batch and its cache.
        """
        model = self._generator
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = model(
            input_ids=input_ids[:, cached:],
            attention_mask=attention,
            position_ids=positions[:, cached:],
            use_cache=True,
            logits_to_keep=1,
            **({CACHE_ARGUMENT: cache} if cache is not None else {}),
        )
        passes = self._decoding_passes(out[CACHE_ARGUMENT])
        live = list(range(input_ids.shape[0]))  # batch row -> input row
        generated: list[list[int]] = [[] for _ in live]
        contexts = [list(ids) for ids in encoded]  # prompt + new tokens, for the drafts
        sampler = (
            RowSampler(params.temperature, params.top_p, seeds=seeds)
            if params.temperature > 0
            else None
        )
        chosen = self._pick(sampler, out.logits[:, -1, :], live)
        del out  # its key/value cache now lives in ``passes``
        next_position = positions[:, -1:] + 1
        pad = self.tokenizer.pad_token_id
        while True:
            going = []
            for j, row in enumerate(live):
                if self._take(generated[row], chosen[j], params, keep_end):
                    contexts[row].append(chosen[j])
                    going.append(j)
            if not going:
                return generated
            if len(going) < len(live):
                index = torch.tensor(going)
                passes.select(index)
                attention, next_position = attention[index], next_position[index]
                live, chosen = [live[j] for j in going], [chosen[j] for j in going]
            # A pass over many rows is bound by arithmetic, not by reading the weights:
            # there every draft token costs about as much as a kept one, so the rows
            # share a budget of draft tokens (one row drafts all of ``draft_tokens``).
            draft_limit = min(self.draft_tokens, max(1, self.draft_budget // len(live)))
            drafts = [
                draft_from_context(
                    contexts[row], min(draft_limit, params.max_new_tokens - len(generated[row]))
                )
                for row in live
            ]
            width = 1 + max(len(draft) for draft in drafts)
            fed, valid = [], []
            for token, draft in zip(chosen, drafts, strict=True):
                padding = width - 1 - len(draft)
                fed.append([token, *draft, *[pad] * padding])
                valid.append([1] * (1 + len(draft)) + [0] * padding)
            base = attention.shape[1]
            attention = torch.cat([attention, torch.tensor(valid)], dim=1)
            logits = passes.forward(
                torch.tensor(fed), attention, next_position + torch.arange(width)
            )
            chosen, bonus = [], []
            ended = set()
            for j, (row, draft) in enumerate(zip(live, drafts, strict=True)):
                kept, replacement = 0, None
                for i, token in enumerate(draft):
                    accepted, replacement = self._verify(sampler, logits[j, i], token, row)
                    if not accepted:
                        break
                    kept += 1
                    replacement = None
                    if not self._take(generated[row], token, params, keep_end):
                        ended.add(j)
                        break
                    contexts[row].append(token)
                # Refused draft tokens stay in the cache, masked.
                attention[j, base + 1 + kept :] = 0
                next_position[j] += 1 + kept
                chosen.append(-1 if replacement is None else replacement)
                if replacement is None and j not in ended:
                    bonus.append((j, kept))
            if bonus:  # every draft token kept: the next token comes from the last position
                rows = [j for j, _ in bonus]
                picks = self._pick(
                    sampler,
                    logits[torch.tensor(rows), torch.tensor([k for _, k in bonus])],
                    [live[j] for j in rows],
                )
                for j, token in zip(rows, picks, strict=True):
                    chosen[j] = token
            if ended:
                going = [j for j in range(len(live)) if j not in ended]
                if not going:
                    return generated
                index = torch.tensor(going)
                passes.select(index)
                attention, next_position = attention[index], next_position[index]
                live, chosen = [live[j] for j in going], [chosen[j] for j in going]

    def _decoding_passes(self, cache: Any) -> FusedLlamaDecoder | ModelPasses:
        """What runs the decoding passes after a prompt pass that left ``cache``: the
        hand-written Llama passes where the model qualifies (``fused_decoding``), else
        the model's own forward."""
        if self._fused is not None:
            self._fused.start(cache)
            return self._fused
        self._set_attention(self._generator, decoding=True)
        return ModelPasses(self._generator, cache)

    @staticmethod
    def _pick(sampler: RowSampler | None, logits: torch.Tensor, rows: list[int]) -> list[int]:
        return (sampler.pick(logits, rows) if sampler else logits.argmax(-1)).tolist()

    @staticmethod
    def _verify(
        sampler: RowSampler | None, logits: torch.Tensor, draft: int, row: int
    ) -> tuple[bool, int]:
        if sampler is None:
            best = int(logits.argmax())
            return best == draft, best
        return sampler.verify(logits, draft, row)

    def _take(
        self, tokens: list[int], token: int, params: GenerationParams, keep_end: bool = False
    ) -> bool:
        """Add ``token`` to a row's new ``tokens`` (unless it ends the turn and not
        ``keep_end``); whether the row goes on."""
        if token in self._end_ids:
            if keep_end:
                tokens.append(token)
            return False
        tokens.append(token)
        if len(tokens) >= params.max_new_tokens:
            return False
        if (
            params.until_first_line
            and token in self._line_break_ids
            and first_line_complete(self.tokenizer.decode(tokens))
        ):
            return False
        return not (params.stop and self._has_stop(tokens, params.stop))

    def _has_stop(self, tokens: list[int], stops: tuple[str, ...]) -> bool:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return any(stop in text for stop in stops)

    def _prefix_cached_inputs(
        self, encoded: list[list[int]], groups: list[tuple[int, list[int]]], model: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Inputs ``[pad][prefix][pad][suffix]`` per row, and the cache of the prefixes
        (run once per group by ``model``, the generation model by default, then copied to
        the group's rows)."""
        pad = self.tokenizer.pad_token_id
        prefixes = [encoded[rows[0]][:length] for length, rows in groups]
        p_width = max(len(p) for p in prefixes)
        prefix_ids = torch.tensor([[pad] * (p_width - len(p)) + p for p in prefixes])
        prefix_mask = torch.tensor([[0] * (p_width - len(p)) + [1] * len(p) for p in prefixes])
        positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            cache = (model or self._generator)(
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

    def scoring_with_generation_weights(self) -> TransformersBackend:
        """This backend with :meth:`score` run by the generation weights (bf16 where
        ``generate`` runs bf16): prompts score about twice as fast on a CPU with bf16
        units, log-probabilities move by about 0.05 nats a token (see the class docstring).
        Every weight is shared with this backend; do not use both from two threads."""
        view = copy.copy(self)
        view._scorer = self._generator
        view.name = f"{self.name} (scored in {self.generation_dtype})"
        return view

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[Score]:
        check_prompts(prompts, continuations)
        if not prompts:
            return []
        encoded = self.encode_prompts(prompts)
        targets = self.tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
        picked: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(encoded), self.batch_size):
                rows = slice(start, start + self.batch_size)
                groups = prefix_groups(encoded[rows]) if self.share_prefixes else None
                if groups is None:
                    picked += continuation_logprobs(
                        self._scorer, encoded[rows], targets[rows], self.tokenizer.pad_token_id,
                        max_rows=self.batch_size,
                    )  # fmt: skip
                else:
                    picked += self._shared_prefix_logprobs(encoded[rows], targets[rows], groups)
        return [Score(tuple(row.tolist())) for row in picked]

    def _shared_prefix_logprobs(
        self,
        encoded: list[list[int]],
        targets: list[list[int]],
        groups: list[tuple[int, list[int]]],
    ) -> list[torch.Tensor]:
        """:func:`continuation_logprobs` with each group's common prompt prefix run once
        (the rows of one step, or of one summary's targets, share the system message, the
        event and the context), the scoring model's rows laid out as in generation."""
        rows = [list(p) + list(t) for p, t in zip(encoded, targets, strict=True)]
        input_ids, attention, cache = self._prefix_cached_inputs(rows, groups, self._scorer)
        p_width = cache.get_seq_length()
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        hidden = self._scorer.get_decoder()(
            input_ids=input_ids[:, p_width:],
            attention_mask=attention,
            position_ids=positions[:, p_width:],
            use_cache=True,
            **{CACHE_ARGUMENT: cache},
        ).last_hidden_state
        width = hidden.shape[1]  # the rows' own parts are right-aligned in it
        row_index, columns, token_ids, lengths = [], [], [], []
        for i, target in enumerate(targets):
            first = width - len(target)  # the first target token's column
            row_index += [i] * len(target)
            columns += range(first - 1, width - 1)  # predicted by the column before
            token_ids += target
            lengths.append(len(target))
        if not token_ids:
            return [torch.zeros(0) for _ in targets]
        head = self._scorer.get_output_embeddings()
        logits = head(hidden[torch.tensor(row_index), torch.tensor(columns)]).float()
        picked = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(token_ids)[:, None])
        return list(torch.split(picked[:, 0], lengths))


class ModelPasses:
    """Decoding passes through a transformers model's own forward and key/value cache
    (the interface of :class:`~agents.backends.fused_llama.FusedLlamaDecoder`)."""

    def __init__(self, model: Any, cache: Any) -> None:
        self.model, self.cache = model, cache

    def select(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)

    def forward(
        self, input_ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            **{CACHE_ARGUMENT: self.cache},
        )
        self.cache = out[CACHE_ARGUMENT]
        return out.logits


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


TOP_K = 50
"""Sampling draws from the 50 most likely tokens (transformers' default top-k)."""


class RowSampler:
    """Samples each row's next token from that row's own generator.

    Top-k (``top_k``, 50 as in transformers' default), then temperature, then top-p
    within those k, then one draw per row from the generator of its prompt (seeded by
    :func:`row_seeds`), so a row's sample never depends on the rest of the batch. Done
    here because transformers' own top-p sorts the whole 49k-token vocabulary and its
    sampler scans it, every step (20% of a 16-agent generation's time on this CPU), and
    because its one global generator makes a row's sample depend on the rest of the batch.
    """

    def __init__(
        self, temperature: float, top_p: float, *, seeds: Sequence[int], top_k: int = TOP_K
    ) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def distribution(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampling distribution of each row: probabilities (unnormalised after top-p)
        of the top-k token ids, and those ids."""
        values, indices = torch.topk(logits.float(), min(self.top_k, logits.shape[-1]), dim=-1)
        probs = torch.softmax(values / self.temperature, dim=-1)
        if self.top_p < 1.0:
            # Keep the smallest set of top tokens whose mass reaches top_p (at least one).
            before = probs.cumsum(dim=-1) - probs
            probs = probs.masked_fill(before >= self.top_p, 0.0)
        return probs, indices

    def pick(self, logits: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """One token id per row of ``logits``; ``rows[i]`` is the prompt whose generator
        draws row ``i``."""
        probs, indices = self.distribution(logits)
        picks = torch.cat(
            [
                torch.multinomial(row, 1, generator=self.generators[r])
                for row, r in zip(probs, rows, strict=True)
            ]
        )
        return indices.gather(-1, picks[:, None])[:, 0]

    def verify(self, logits: torch.Tensor, draft: int, row: int) -> tuple[bool, int]:
        """Speculative sampling of one position (``logits``: one row): keep ``draft`` with
        its probability under the sampling distribution; else draw from that distribution
        without ``draft``. ``(kept, the replacement token)``; both draws come from the
        generator of prompt ``row``, so the token is distributed exactly as :meth:`pick`
        would draw it."""
        probs, indices = self.distribution(logits[None])
        probs, indices = probs[0] / probs[0].sum(), indices[0]
        at = (indices == draft).nonzero()
        p_draft = float(probs[at[0, 0]]) if len(at) else 0.0
        generator = self.generators[row]
        if float(torch.rand((), generator=generator)) < p_draft:
            return True, draft
        if len(at):
            probs = probs.clone()
            probs[at[0, 0]] = 0.0
        return False, int(indices[torch.multinomial(probs, 1, generator=generator)])


DRAFT_NGRAMS = (3, 2)
"""Lengths of the row's last tokens looked up for a draft, longest first (a one-token
match proposes too much that is then refused)."""


def draft_from_context(context: Sequence[int], limit: int) -> list[int]:
    """``limit`` tokens that continue ``context`` the way it went on after the latest
    earlier occurrence of its last 3 (else 2) tokens -- periodically, where that occurrence
    is so recent that its continuation reaches the end (a repeated phrase repeats again);
    empty when they never occurred before."""
    if limit < 1:
        return []
    for n in DRAFT_NGRAMS:
        if len(context) <= n:
            continue
        tail = list(context[-n:])
        for start in range(len(context) - n - 1, -1, -1):
            if context[start] == tail[0] and list(context[start : start + n]) == tail:
                period = len(context) - n - start
                copied = context[start + n :]
                return [copied[j % period] for j in range(limit)]
    return []


DRAFT_BUDGET = 32
"""Draft tokens per decoding pass, shared by its rows (at most ``draft_tokens`` a row)."""


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
