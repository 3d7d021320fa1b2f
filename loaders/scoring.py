"""Score candidate answers after a prompt, and find where candidate answers diverge.

:func:`score_candidates` ranks cell types the way C2S classification is judged
here: the sum of log-probabilities of each candidate answer's tokens after the
prompt. The prompt runs once (its key/value cache is shared by all candidates),
so scoring ``C`` candidates costs little more than one prompt forward.

:func:`answer_divergence` names the answer position where candidates first
differ, and each candidate's token there: the logit that attribution explains.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch

from circuitdb.errors import InputError
from circuitdb.loaders.prompts import PromptTemplate


def _answer_ids(tokenizer: Any, candidates: Sequence[str]) -> list[list[int]]:
    out = []
    for c in candidates:
        ids = list(tokenizer(c, add_special_tokens=False)["input_ids"])
        if not ids:
            raise InputError(f"candidate answer {c!r} tokenizes to nothing; give a non-empty answer text")
        out.append(ids)
    return out


def _cache_kwarg(model: Any) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``; use whichever the model takes."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


@torch.no_grad()
def score_candidates(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    candidates: Sequence[str],
    batch_size: int = 16,
    *,
    callback: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Summed answer log-probabilities of every candidate after every prompt.

    Parameters
    ----------
    model
        A Hugging Face causal LM (``eval()`` mode is the caller's job).
    tokenizer
        Its tokenizer. Prompt and answer are tokenized separately and concatenated,
        as in training (answers start with a space, so the split is a token boundary).
    prompts
        Rendered prompts (text ending just before the answer).
    candidates
        Candidate answer texts, e.g. ``PromptTemplate().answer_text(cell_type)``.
    batch_size
        Prompts per forward pass; candidates multiply it (``batch_size x len(candidates)``
        short answer rows share the prompt's cache).
    callback
        Called with the number of prompts finished after each batch.

    Returns
    -------
    torch.Tensor
        ``(len(prompts), len(candidates))`` float32 tensor of summed log-probs.

    Examples
    --------
    >>> scores = score_candidates(model, tok, [p.text], [" B cell.", " T cell."])  # doctest: +SKIP
    """
    if not candidates:
        raise InputError("no candidate answers to score; pass at least one cell type")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ans = _answer_ids(tokenizer, candidates)
    n_c = len(ans)
    a_len = max(len(a) for a in ans)
    a_ids = torch.full((n_c, a_len), pad_id, dtype=torch.long)
    a_mask = torch.zeros((n_c, a_len), dtype=torch.long)
    for j, a in enumerate(ans):
        a_ids[j, : len(a)] = torch.tensor(a)
        a_mask[j, : len(a)] = 1
    a_ids, a_mask = a_ids.to(device), a_mask.to(device)
    cache_kw = _cache_kwarg(model)
    out_scores = torch.empty((len(prompts), n_c), dtype=torch.float32)

    for b0 in range(0, len(prompts), batch_size):
        chunk = list(prompts[b0 : b0 + batch_size])
        enc = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in chunk]
        if any(len(e) == 0 for e in enc):
            raise InputError("a prompt tokenizes to nothing; prompts must be non-empty text")
        b = len(enc)
        p_len = max(len(e) for e in enc)
        # left-pad the prompts so every prompt's last token sits in the last column
        p_ids = torch.full((b, p_len), pad_id, dtype=torch.long)
        p_mask = torch.zeros((b, p_len), dtype=torch.long)
        for i, e in enumerate(enc):
            p_ids[i, p_len - len(e) :] = torch.tensor(e)
            p_mask[i, p_len - len(e) :] = 1
        p_ids, p_mask = p_ids.to(device), p_mask.to(device)
        p_pos = (p_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=p_pos, use_cache=True)
        first_lp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # (b, V)
        cache = _output_cache(out)
        score = first_lp[:, a_ids[:, 0]]  # (b, C): the first answer token of each candidate
        if a_len > 1:
            cache.batch_repeat_interleave(n_c)
            rows_ids = a_ids.repeat(b, 1)  # (b*C, A), row i*C + j = prompt i, candidate j
            rows_mask = a_mask.repeat(b, 1)
            full_mask = torch.cat([p_mask.repeat_interleave(n_c, dim=0), rows_mask], dim=1)
            lens = p_mask.sum(-1).repeat_interleave(n_c)
            pos = lens[:, None] + torch.arange(a_len, device=device)[None, :]
            o2 = model(input_ids=rows_ids, attention_mask=full_mask, position_ids=pos, use_cache=True, **{cache_kw: cache})
            lp = torch.log_softmax(o2.logits[:, :-1, :].float(), dim=-1)  # predicts tokens 1..A-1
            tgt = rows_ids[:, 1:]
            tok_lp = lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1) * rows_mask[:, 1:]
            score = score + tok_lp.sum(-1).view(b, n_c)
        out_scores[b0 : b0 + b] = score.cpu()
        if callback is not None:
            callback(b)
    return out_scores


def answer_divergence(
    tokenizer: Any,
    candidates: Sequence[str],
    *,
    template: PromptTemplate | None = None,
) -> tuple[list[int], dict[str, int]]:
    """Where candidate cell types' answers first differ, in tokens.

    Each cell type is rendered as its answer (``template.answer_text``, default
    ``" {cell_type}."``) and tokenized as it follows the prompt.

    Parameters
    ----------
    tokenizer
        A Hugging Face tokenizer.
    candidates
        Cell types, e.g. ``["CD4+/CD25 T Reg", "CD4+/CD45RO+ Memory"]``; the keys of the
        returned dict are these strings as given.
    template
        The prompt template whose answer format is used (default :class:`PromptTemplate`).

    Returns
    -------
    (shared_prefix_ids, first_tokens)
        The answer tokens common to all candidates before the first divergence
        (append them to the prompt to reach the deciding position), and each
        candidate's token at that position. Candidates sharing that token (but
        differing later) map to the same id.

    Raises
    ------
    InputError
        If two candidates' answers tokenize identically, or one candidate's answer
        tokens are a prefix of another's.

    Examples
    --------
    >>> prefix, first = answer_divergence(tok, ["CD4+/CD25 T Reg", "CD4+/CD45RO+ Memory"])  # doctest: +SKIP
    >>> tok.decode(prefix)  # doctest: +SKIP
    ' CD4+/CD'
    """
    if len(candidates) < 2:
        raise InputError("answer divergence needs at least two candidate cell types")
    template = template or PromptTemplate()
    ids = _answer_ids(tokenizer, [template.answer_text(c) for c in candidates])
    seen: dict[tuple[int, ...], str] = {}
    for c, a in zip(candidates, ids):
        if tuple(a) in seen:
            raise InputError(f"cell types {seen[tuple(a)]!r} and {c!r} tokenize identically; rename one so the answers differ")
        seen[tuple(a)] = c
    pos = 0
    while all(len(a) > pos for a in ids) and len({a[pos] for a in ids}) == 1:
        pos += 1
    short = [c for c, a in zip(candidates, ids) if len(a) <= pos]
    if short:
        raise InputError(
            f"the answer for {short[0]!r} is a token prefix of another candidate's; end the answer template with a terminator such as '.'"
        )
    return list(ids[0][:pos]), {c: a[pos] for c, a in zip(candidates, ids)}
