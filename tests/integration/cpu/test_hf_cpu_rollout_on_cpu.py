"""The hf_cpu rollout samples each batch in one call: same log-probs as one request alone, per-row EOS and budgets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
import verl  # noqa: F401  # first, as in any verl process: its plugin imports verl_maxpo.cpu

transformers = pytest.importorskip("transformers")

from verl_maxpo.cpu.rollout import HFCPUServer, filter_logits  # noqa: E402

PROMPTS = [[3, 4, 5], [7, 1, 2, 9, 9, 4, 3], [5], [2, 2, 8, 6, 1]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> HFCPUServer:
    """A random 2-layer Llama (vocabulary 32) behind the rollout server, as verl's replica would build it."""
    path = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, eos_token_id=31, pad_token_id=0,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(Path(path))
    return HFCPUServer({"prompt_length": 8, "response_length": 12, "seed": 0}, {"path": str(path)}, replica_rank=0)


def forced_logps(server: HFCPUServer, prompt: list[int], tokens: list[int], key: tuple[float, int, float]) -> list:
    """Log-probs of `tokens` after `prompt` from one unpadded, uncached forward pass (one request alone)."""
    temperature, top_k, top_p = key
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits = server.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    if temperature > 0:
        logits = filter_logits(logits / temperature, top_k, top_p)
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(tokens)[:, None]).squeeze(1).tolist()


@pytest.mark.parametrize("key", [(1.0, -1, 1.0), (0.7, 5, 0.9), (0.0, -1, 1.0)])
def test_batched_logprobs_equal_the_per_request_ones(server: HFCPUServer, key: tuple[float, int, float]) -> None:
    out = server.sample_batch(PROMPTS, [12, 12, 12, 12], key)
    assert len(out) == len(PROMPTS)
    for prompt, (tokens, logps) in zip(PROMPTS, out, strict=True):
        assert 1 <= len(tokens) == len(logps) <= 12
        assert all(0 <= t < 32 for t in tokens) and all(lp <= 0 for lp in logps)
        assert 31 not in tokens[:-1]  # nothing after EOS
        torch.testing.assert_close(torch.tensor(logps), torch.tensor(forced_logps(server, prompt, tokens, key)),
                                   atol=1e-5, rtol=0)  # fmt: skip
        if key[1] > 0:
            assert all(lp > -float("inf") for lp in logps)  # sampled tokens are inside the top-k set


def test_greedy_batch_equals_each_request_alone(server: HFCPUServer) -> None:
    greedy = (0.0, -1, 1.0)
    together = server.sample_batch(PROMPTS, [6, 2, 9, 4], greedy)
    alone = [server.sample_batch([p], [n], greedy)[0] for p, n in zip(PROMPTS, [6, 2, 9, 4], strict=True)]
    assert [t for t, _ in together] == [t for t, _ in alone]
    assert [len(t) for t, _ in together] == [6, 2, 9, 4]  # each row's own budget (no EOS in the random model's picks)
    for (_, a), (_, b) in zip(together, alone, strict=True):
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-5, rtol=0)


def test_a_row_stops_at_its_eos_while_the_others_go_on(server: HFCPUServer, monkeypatch) -> None:
    greedy = (0.0, -1, 1.0)
    free = server.sample_batch(PROMPTS, [8] * 4, greedy)
    stop = free[1][0][2]  # the third token row 1 picks becomes an EOS id
    monkeypatch.setattr(server, "eos_ids", {31, stop})
    out = server.sample_batch(PROMPTS, [8] * 4, greedy)
    for (tokens, _), (free_tokens, _) in zip(out, free, strict=True):
        cut = next((i + 1 for i, t in enumerate(free_tokens) if t == stop), len(free_tokens))
        assert tokens == free_tokens[:cut]
    assert len(out[1][0]) <= 3 and out[1][0][-1] == stop


def test_generate_batches_concurrent_requests_by_sampling_params(server: HFCPUServer, monkeypatch) -> None:
    calls: list[tuple[int, tuple]] = []
    sample = server.sample_batch

    def counting(prompts, max_tokens, key):
        calls.append((len(prompts), key))
        return sample(prompts, max_tokens, key)

    monkeypatch.setattr(server, "sample_batch", counting)
    hot = {"temperature": 1.0, "logprobs": True}
    cold = {"temperature": 0.0, "max_tokens": 3}

    async def main() -> list:
        asks = [server.generate(p, hot, f"r{i}") for i, p in enumerate(PROMPTS)]
        asks += [server.generate(p, cold, f"g{i}") for i, p in enumerate(PROMPTS[:2])]
        return await asyncio.gather(*asks)

    outs = asyncio.run(main())
    assert sorted(calls) == [(2, (0.0, -1, 1.0)), (4, (1.0, -1, 1.0))]  # one batched call per set of params
    for out in outs[:4]:
        assert len(out.log_probs) == len(out.token_ids) >= 1
    for out in outs[4:]:
        assert out.log_probs is None and len(out.token_ids) == 3  # max_tokens honoured, log-probs not asked for
