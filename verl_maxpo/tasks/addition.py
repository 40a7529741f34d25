"""The tiny verifiable task and policy shared by `verl-maxpo demo` and the CPU backend's tiny assets.

Fixed-width addition ("047+385=" -> "0432</s>") with a character-level tokenizer made here (no downloads), a
randomly initialised 2-layer Llama small enough to train in minutes on 2 cores, and its supervised warm start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------------------------
# Task: fixed-width addition with an exact-match reward
# ----------------------------------------------------------------------------------------------------------------


class AdditionTask:
    """a + b with `digits`-digit operands; answers zero-padded to digits+1 so every response has the same length.

    Fixed lengths keep batching trivial (no padding, no attention masks): prompt "<s>047+385=", response
    "0432</s>". Held-out pairs are excluded from every training draw.
    """

    SPECIALS = ("<pad>", "<s>", "</s>")
    REWARDS = ("exact", "partial")  # the RL reward; `score` (exact match) is what pass@k counts either way

    def __init__(self, digits: int, val_prompts: int, seed: int, reward: str = "exact"):
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        if reward not in self.REWARDS:
            raise ValueError(f"reward must be one of {self.REWARDS}, got {reward!r}")
        self.digits = digits
        self.reward_kind = reward
        vocab = {tok: i for i, tok in enumerate([*self.SPECIALS, *"0123456789+="])}
        char_level = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
        char_level.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
        char_level.decoder = decoders.Fuse()  # decode "0432", not "0 4 3 2"
        self.tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=char_level, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
        )
        self.vocab_size = len(vocab)
        self.bos, self.eos, self.pad = (vocab[t] for t in ("<s>", "</s>", "<pad>"))
        self.response_len = digits + 2  # digits+1 answer digits, then </s>
        rng = np.random.default_rng([seed, 1])
        self.val_pairs = self._unique_pairs(rng, val_prompts)
        self._held_out = {tuple(p) for p in self.val_pairs.tolist()}

    def _unique_pairs(self, rng: np.random.Generator, count: int) -> np.ndarray:
        space = 10 ** (2 * self.digits)
        if count > space // 2:
            raise ValueError(f"--val-prompts {count} is too many for {self.digits}-digit operands")
        flat = rng.choice(space, size=count, replace=False)
        return np.stack([flat // 10**self.digits, flat % 10**self.digits], axis=1)

    def train_pairs(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` random training pairs, none of them held out."""
        out = []
        while len(out) < count:
            a, b = rng.integers(0, 10**self.digits, size=2).tolist()
            if (a, b) not in self._held_out:
                out.append((a, b))
        return np.asarray(out, dtype=np.int64)

    def prompt_texts(self, pairs: np.ndarray) -> list[str]:
        d = self.digits
        return [f"{a:0{d}d}+{b:0{d}d}=" for a, b in pairs.tolist()]

    def answer_texts(self, pairs: np.ndarray) -> list[str]:
        return [f"{a + b:0{self.digits + 1}d}" for a, b in pairs.tolist()]

    def encode(self, pairs: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt_ids (B, P) starting with <s>, target response ids (B, R) ending with </s>)."""
        prompts = self.tokenizer(self.prompt_texts(pairs), add_special_tokens=False)["input_ids"]
        answers = self.tokenizer(self.answer_texts(pairs), add_special_tokens=False)["input_ids"]
        prompt_ids = torch.tensor([[self.bos, *p] for p in prompts], device=device)
        target_ids = torch.tensor([[*a, self.eos] for a in answers], device=device)
        return prompt_ids, target_ids

    def score(self, responses: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """1.0 for an exact answer followed by </s>, else 0.0 (a verifiable reward)."""
        return (responses == targets).all(dim=1).float()

    def reward(self, responses: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The RL reward: `score` for "exact"; for "partial", the fraction of the digits+2 response tokens (answer
        digits and </s>) that are right, so an exact answer still scores 1.0 and pass@k still counts exact answers,
        but near misses get partial credit (rewards in {0, 1/(d+2), ..., 1}: the centered arms then differ by more
        than a per-group weight)."""
        if self.reward_kind == "exact":
            return self.score(responses, targets)
        return (responses == targets).float().mean(dim=1)

    def response_mask(self, responses: torch.Tensor) -> torch.Tensor:
        """1 up to and including the first </s>: tokens sampled after it are not part of the response."""
        is_eos = (responses == self.eos).int()
        after_eos = (torch.cumsum(is_eos, dim=1) - is_eos) > 0
        return (~after_eos).float()

    def decode(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> list[str]:
        rows = ids.tolist()
        if mask is not None:
            rows = [r[: int(m)] for r, m in zip(rows, mask.sum(1).tolist(), strict=True)]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)


# ----------------------------------------------------------------------------------------------------------------
# Policy: a tiny Llama, sampling and per-token log-probs
# ----------------------------------------------------------------------------------------------------------------


def build_policy(task: AdditionTask, seed: int, device: torch.device) -> torch.nn.Module:
    """A 2-layer, 64-wide Llama with random init (about 0.1M parameters): fast enough for minutes on 2 cores."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=task.vocab_size,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        bos_token_id=task.bos,
        eos_token_id=task.eos,
        pad_token_id=task.pad,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(device)


@torch.no_grad()
def sample(
    model: torch.nn.Module, prompt_ids: torch.Tensor, length: int, temperature: float, gen: torch.Generator
) -> torch.Tensor:
    """Sample `length` tokens per row with an explicit generator (reproducible). Sequences are ~14 tokens, so a
    full forward per token is about as fast as a KV cache and has no cache bookkeeping."""
    ids = prompt_ids
    for _ in range(length):
        logits = model(input_ids=ids).logits[:, -1].float()
        probs = torch.softmax(logits / temperature, dim=-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)], dim=1)
    return ids[:, prompt_ids.shape[1] :]


def response_log_probs(model: torch.nn.Module, prompt_ids: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """(B, R) log-probability of each response token under the model (with grad), via verl's helper."""
    from verl.utils.torch_functional import logprobs_from_logits

    ids = torch.cat([prompt_ids, responses], dim=1)
    p = prompt_ids.shape[1]
    logits = model(input_ids=ids).logits[:, p - 1 : -1].float()
    return logprobs_from_logits(logits, responses)


# ----------------------------------------------------------------------------------------------------------------
# Warm start: supervised training on correct answers
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmStart:
    steps: int
    train_pass1: float  # sampled pass@1 on fresh training prompts at the last check (nan: never checked)
    loss: float


def warm_start(
    model: torch.nn.Module,
    task: AdditionTask,
    *,
    steps: int,
    seed: int,
    lr: float = 3e-3,
    batch: int = 64,
    target: float | None = None,
    temperature: float = 1.0,
    check_every: int = 25,
    on_step: Callable[[int, float], None] | None = None,
) -> WarmStart:
    """Teacher-forced cross-entropy on correct answers for at most `steps` AdamW steps.

    With a `target`, every `check_every` steps (and at the last) it samples 4 answers to each of 128 fresh
    *training* prompts and stops once their pass@1 reaches the target: the held-out set never steers anything.
    The check prompts are drawn only when there is a target, so a fixed-step warm start draws exactly the
    training batches. `on_step(step, last_pass1)` reports progress.
    """
    device = next(model.parameters()).device
    rng = np.random.default_rng([seed, 2])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    if target is not None:
        gen = torch.Generator(device=device).manual_seed(seed + 2)
        check_prompts, check_targets = (
            x.repeat_interleave(4, 0) for x in task.encode(task.train_pairs(rng, 128), device)
        )
    pass1, loss, step = float("nan"), torch.tensor(float("nan")), 0
    while step < steps:
        prompt_ids, target_ids = task.encode(task.train_pairs(rng, batch), device)
        loss = -response_log_probs(model, prompt_ids, target_ids).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if target is not None and (step % check_every == 0 or step == steps):
            responses = sample(model, check_prompts, task.response_len, temperature, gen)
            pass1 = task.score(responses, check_targets).mean().item()
        if on_step is not None:
            on_step(step, pass1)
        if target is not None and pass1 >= target:
            break
    return WarmStart(steps=step, train_pass1=pass1, loss=loss.item())
