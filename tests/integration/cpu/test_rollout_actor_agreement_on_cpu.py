"""After an actor update, the hf_cpu rollout samples from the policy the actor trains (issue 27).

verl's FSDP actor keeps fp32 master weights and computes in bf16 (mixed precision param_dtype, autocast). The
rollout receives the fp32 weights at every sync; it must hold them rounded to its `rollout.dtype` (bf16), or its
token distribution drifts from the actor's. Here the actor is simulated on a tiny Llama: one fp32 Adam step with a
large learning rate, then log-probs of the rollout's own samples are recomputed the actor's way (bf16 parameters,
bf16 autocast) and compared with the log-probs the rollout returned.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import verl  # noqa: F401  # first, as in any verl process: its plugin imports verl_maxpo.cpu

transformers = pytest.importorskip("transformers")

from verl_maxpo.cpu.rollout import HFCPUServer  # noqa: E402

PROMPTS = [[3, 4, 5], [7, 1, 2, 9, 9, 4, 3], [5], [2, 2, 8, 6, 1]] * 4
SAMPLE = (1.0, -1, 1.0)


@pytest.fixture(scope="module")
def updated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A saved tiny Llama (what the rollout starts from) and the actor's fp32 weights after one large update."""
    path = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, eos_token_id=31, pad_token_id=0, initializer_range=0.2,
        attn_implementation="eager",  # as verl's actor on a CPU (the recipes' override_config)
    )  # fmt: skip  # large weights: peaked distributions, where a policy mismatch shows
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(path)
    actor = copy.deepcopy(model).float().train()
    optim = torch.optim.Adam(actor.parameters(), lr=3e-3)
    ids = torch.randint(1, 31, (8, 12), generator=torch.Generator().manual_seed(1))
    actor(input_ids=ids, labels=ids).loss.backward()
    optim.step()
    return path, actor.eval()


def actor_logps(actor: torch.nn.Module, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """Log-probs of `tokens` as verl's FSDP actor computes them: bf16 parameters, fp32 buffers (mixed precision
    param_dtype bf16, buffer_dtype fp32), bf16 autocast, fp32 log-softmax."""
    compute = copy.deepcopy(actor)
    for param in compute.parameters():
        param.data = param.data.to(torch.bfloat16)
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = compute(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(tokens)[:, None]).squeeze(1)


def synced(path: Path, actor: torch.nn.Module, dtype: str) -> HFCPUServer:
    server = HFCPUServer({"prompt_length": 8, "response_length": 10, "seed": 0, "dtype": dtype}, {"path": str(path)}, 0)
    server.load_weights({n: t.detach().clone() for n, t in actor.state_dict().items()})  # fp32, as the adapter has them
    return server


def rollout_logps(server: HFCPUServer, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """The rollout policy's log-probs of `tokens`: the server's model, one unpadded forward pass in its dtype."""
    with torch.no_grad():
        logits = server.model(input_ids=torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(tokens)[:, None]).squeeze(1)


def test_the_rollout_holds_the_synced_weights_in_its_dtype(updated) -> None:
    path, actor = updated
    server = synced(path, actor, "bfloat16")
    assert server.model.dtype == torch.bfloat16
    for name, param in server.model.state_dict().items():
        assert param.dtype == torch.bfloat16
        torch.testing.assert_close(param, actor.state_dict()[name].to(torch.bfloat16), atol=0, rtol=0)


def test_rollout_and_actor_policies_agree_after_an_update(updated) -> None:
    path, actor = updated
    rounded, full = synced(path, actor, "bfloat16"), synced(path, actor, "float32")
    samples = rounded.sample_batch(PROMPTS, [10] * len(PROMPTS), SAMPLE)
    gap = {"bf16": [], "fp32": [], "sampled": []}
    for prompt, (tokens, logps) in zip(PROMPTS, samples, strict=True):
        want = actor_logps(actor, prompt, tokens)
        gap["bf16"].append((rollout_logps(rounded, prompt, tokens) - want).abs())
        gap["fp32"].append((rollout_logps(full, prompt, tokens) - want).abs())
        gap["sampled"].append((torch.tensor(logps) - want).abs())
    gap = {key: torch.cat(values) for key, values in gap.items()}
    # the same policy: bf16 weights and bf16 compute on both sides (measured: identical)
    assert float(gap["bf16"].max()) < 1e-4, float(gap["bf16"].max())
    # an fp32 sampler of the same synced weights (the old behaviour) is another policy
    assert float(gap["fp32"].mean()) > 5e-3, float(gap["fp32"].mean())  # measured 0.022
    # what the sampler returned while sampling (left padding, KV cache, bf16 rounding in another order): close
    assert float(gap["sampled"].mean()) < min(0.01, float(gap["fp32"].mean()) / 3), float(gap["sampled"].mean())
