"""The `hf_cpu` rollout: Hugging Face sampling on a CPU behind verl's async rollout interfaces.

verl 0.9.1 rolls out only through an inference server (vLLM, SGLang, TRT-LLM): `rollout.name=hf` fails with
"Rollout hf with mode async not found" (`get_rollout_class` in verl.workers.rollout.base, called from the engine
workers' `init_model`; replica side `get_rollout_replica_class`), and none of those servers installs for a CPU.
Three pieces stand in:
  - `HFCPUServer`: a Ray actor holding an HF causal LM; `generate` queues each request, and the requests that arrive
    together are sampled in one batched call per set of sampling parameters (left padding, a KV cache), each
    answered with verl's `TokenOutput` and the sampled tokens' log-probs;
  - `HFCPUReplica`: verl's `RolloutReplica` for it (one server per replica, named so the adapter can find it);
  - `HFCPUServerAdapter`: verl's `BaseRollout` in each actor worker; verl's in-process ("naive") weight sync hands
    it the actor's weights after every update and it forwards them to its replica's server.
"""

from __future__ import annotations

import asyncio
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput


def server_name(replica_rank: int, suffix: str = "") -> str:
    return f"verl_maxpo_hf_cpu_server_{replica_rank}{suffix}"


def _get(section: Any, key: str, default: Any = None) -> Any:
    value = section.get(key, default) if hasattr(section, "get") else getattr(section, key, default)
    return default if value is None else value


# How long the first queued request waits for the others verl's agent loop sends with it (they arrive one Ray call
# at a time); requests arriving while a batch samples form the next batch.
BATCH_WINDOW_S = 0.005


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (..., V) logits outside the top-k tokens and outside the smallest set holding top_p of the mass."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(-1) - probs >= top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sampling_key(params: dict[str, Any]) -> tuple[float, int, float]:
    """(temperature, top_k, top_p) as sampled: requests with equal keys share a batched call."""
    return (
        float(params.get("temperature", 1.0) or 0.0),
        int(params.get("top_k", -1) or -1),
        float(params.get("top_p", 1.0) or 1.0),
    )


def rollout_dtype(config: Any) -> torch.dtype:
    """The sampler's dtype: `rollout.dtype` (verl's default bfloat16, the dtype of the FSDP actor's forward pass
    under its mixed precision); float32 when the config names none."""
    from verl.utils.torch_dtypes import PrecisionType

    return PrecisionType.to_dtype(_get(config, "dtype", "float32"))


class HFCPUServer:
    """One rollout replica's sampler: an HF causal LM on the CPU in `rollout_dtype`, eager attention.

    The actor trains fp32 master weights but computes its forward pass in bf16 (FSDP mixed precision); a sampler
    holding the fp32 weights would draw from a different policy after the first update (token KL 0.01-0.15 on
    SmolLM2-135M). Holding the synced weights rounded to the same dtype keeps the two policies together.
    """

    def __init__(self, config: Any, model_config: Any, replica_rank: int) -> None:
        from transformers import AutoModelForCausalLM
        from verl.utils.fs import copy_to_local

        self.config = config
        self.dtype = rollout_dtype(config)
        path = copy_to_local(_get(model_config, "path"))
        self.model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=self.dtype,
            attn_implementation="eager",
            trust_remote_code=bool(_get(model_config, "trust_remote_code", False)),
        ).eval()
        eos = self.model.generation_config.eos_token_id
        eos = eos if eos is not None else self.model.config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        pad = self.model.config.pad_token_id
        self.pad_id = int(pad if isinstance(pad, int) else 0)  # any valid id: padded positions are masked out
        self.generator = torch.Generator().manual_seed(int(_get(config, "seed", 0)) + replica_rank)
        self.global_steps: int | None = None
        self.syncs = 0
        self._queue: list[tuple[list[int], int, tuple[float, int, float], asyncio.Future]] = []
        self._batcher: asyncio.Task | None = None
        # One thread runs the model (sampling and weight loads, in arrival order) so the actor's event loop keeps
        # taking requests meanwhile.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf_cpu")

    def _max_tokens(self, prompt_len: int, sampling_params: dict[str, Any]) -> int:
        cfg = self.config
        room = int(_get(cfg, "prompt_length")) + int(_get(cfg, "response_length")) - prompt_len
        asked = sampling_params.pop("max_tokens", sampling_params.pop("max_new_tokens", None))
        limit = min(int(_get(cfg, "response_length")), room) if asked is None else int(asked)
        return max(1, min(limit, room))

    @torch.no_grad()
    def sample_batch(
        self, prompts: list[list[int]], max_tokens: list[int], key: tuple[float, int, float]
    ) -> list[tuple[list[int], list[float]]]:
        """Sample every prompt in one batch: left padding, per-row EOS and token budget; (tokens, log-probs) per row.

        The log-prob of a token is under the distribution it was drawn from (temperature, top-k, top-p applied; the
        raw model distribution when greedy)."""
        temperature, top_k, top_p = key
        rows, width = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[i, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # each row counts from its first real token
        budget = torch.tensor(max_tokens)
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long)
        done = torch.zeros(rows, dtype=torch.bool)
        tokens = torch.zeros((rows, int(budget.max())), dtype=torch.long)
        logps = torch.zeros((rows, int(budget.max())))
        lengths = torch.zeros(rows, dtype=torch.long)
        past, step_ids, step_pos = None, ids, positions
        for step in range(int(budget.max())):
            # logits_to_keep=1: only the last position's logits (the prefill would otherwise project every prompt
            # position onto the vocabulary: 2.4 GB and most of the prefill's time for 128 x 190 tokens x 49152).
            out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, past_key_values=past,
                             use_cache=True, logits_to_keep=1)  # fmt: skip
            past, logits = out.past_key_values, out.logits[:, -1].float()
            if temperature > 0:
                logits = filter_logits(logits / temperature, top_k, top_p)
                token = torch.multinomial(torch.softmax(logits, -1), 1, generator=self.generator).squeeze(1)
            else:
                token = logits.argmax(-1)
            logp = torch.log_softmax(logits, -1).gather(1, token[:, None]).squeeze(1)
            live = ~done
            tokens[live, step], logps[live, step] = token[live], logp[live]
            lengths += live.long()
            done |= torch.isin(token, eos) | (lengths >= budget)
            if bool(done.all()):
                break
            step_ids = torch.where(done, self.pad_id, token)[:, None]  # finished rows: filler, never returned
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones((rows, 1), dtype=torch.long)], dim=1)
        return [(tokens[i, :n].tolist(), logps[i, :n].tolist()) for i, n in enumerate(lengths.tolist())]

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            await asyncio.sleep(BATCH_WINDOW_S)
            batch, self._queue = self._queue, []
            batch.sort(key=lambda request: request[2])
            for key, group in itertools.groupby(batch, key=lambda request: request[2]):
                requests = list(group)
                try:
                    results = await loop.run_in_executor(
                        self._executor, self.sample_batch, [r[0] for r in requests], [r[1] for r in requests], key
                    )
                except Exception as err:  # every waiting request learns why, instead of hanging
                    results = [err] * len(requests)
                for (*_, future), result in zip(requests, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Any = None,
        video_data: Any = None,
        **kwargs: Any,
    ) -> TokenOutput:
        if image_data is not None or video_data is not None:
            raise NotImplementedError("the hf_cpu rollout serves text-only prompts")
        params = dict(sampling_params)
        max_tokens = self._max_tokens(len(prompt_ids), params)
        future = asyncio.get_running_loop().create_future()
        self._queue.append((list(prompt_ids), max_tokens, sampling_key(params), future))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.get_running_loop().create_task(self._run_batches())
        tokens, logps = await future
        return TokenOutput(
            token_ids=tokens,
            log_probs=logps if params.get("logprobs") else None,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    def load_weights(self, state: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """Load the actor's weights (HF names), rounded to the sampler's dtype; returns how many were loaded."""
        state = {n: t.to(self.dtype) if t.is_floating_point() else t for n, t in state.items()}  # no-op if rounded
        result = self.model.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise KeyError(f"hf_cpu rollout: weights the model does not have: {result.unexpected_keys[:5]}")
        self.global_steps = global_steps
        self.syncs += 1
        return len(state)

    async def update_weights(self, state: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """`load_weights` on the model thread, so it never overlaps a batch being sampled."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.load_weights, state, global_steps)

    # verl's replicas and checkpoint manager drive these around weight syncs; nothing to free or pause on a CPU.
    async def wake_up(self) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def abort_all_requests(self, reject_request: bool = False) -> None:
        return None

    async def resume_generation(self) -> None:
        return None

    async def start_profile(self, **kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


# The sampler holds one plain HF model: LoRA reaches it only merged into the base weights.
LORA_UNMERGED = (
    "the hf_cpu rollout loads full weights, not LoRA adapters: with actor_rollout_ref.model.lora_rank > 0 also set "
    "actor_rollout_ref.model.lora.merge=true"
)


def check_lora_merged(model_config: Any) -> None:
    """Refuse, at start-up, a LoRA run whose weight syncs would send adapters instead of merged weights."""
    if getattr(model_config, "lora_rank", 0) and not (getattr(model_config, "lora", None) or {}).get("merge", False):
        raise NotImplementedError(LORA_UNMERGED)


class HFCPUReplica(RolloutReplica):
    """verl's rollout replica for `hf_cpu`: one `HFCPUServer` actor, needing no Ray resources of its own."""

    async def launch_servers(self) -> None:
        if self.world_size != 1:
            raise ValueError("the hf_cpu rollout needs rollout.tensor_model_parallel_size=1 (and dp=pp=1)")
        if self.is_reward_model or self.is_teacher_model:
            raise NotImplementedError("the hf_cpu rollout serves the policy only (no reward/teacher model)")
        check_lora_merged(self.model_config)
        name = server_name(self.replica_rank, self.name_suffix)
        server = (
            ray.remote(HFCPUServer)
            .options(name=name, num_cpus=0, max_concurrency=self.max_concurrency)
            .remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        )
        self.servers = [server]
        self._server_handle = server
        self._server_address = name  # no HTTP endpoint: verl's agent loop calls server.generate directly


class HFCPUServerAdapter(BaseRollout):
    """Runs inside each actor worker: forwards verl's weight sync to this rank's `HFCPUServer`."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, model_config, device_mesh, *args, **kwargs)
        self.replica_rank = device_mesh.get_local_rank("dp")
        self.is_leader = device_mesh.get_local_rank("infer_tp") == 0 and device_mesh.get_local_rank("infer_pp") == 0
        self._server = None

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(self, weights: Any, wire_format: str = "named_tensors", **kwargs: Any) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"the hf_cpu rollout takes full named tensors, not {wire_format!r}")
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError(LORA_UNMERGED)
        # Every rank drains the generator: FSDP gathers each full tensor collectively while it yields. The copy sent
        # is already in the sampler's dtype (half the bytes of fp32 for bf16).
        dtype = rollout_dtype(self.config)
        state = {}
        for name, tensor in weights:
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[name] = full.detach().to("cpu", dtype if full.is_floating_point() else full.dtype, copy=True)
        if self.is_leader:
            if self._server is None:
                self._server = ray.get_actor(server_name(self.replica_rank))
            await self._server.update_weights.remote(state, kwargs.get("global_steps"))
