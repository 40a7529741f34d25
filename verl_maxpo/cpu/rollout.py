"""The `hf_cpu` rollout: Hugging Face sampling on a CPU behind verl's async rollout interfaces.

verl 0.9.1 rolls out only through an inference server (vLLM, SGLang, TRT-LLM): `rollout.name=hf` fails with
"Rollout hf with mode async not found" (workers/rollout/base.py ~89-106, engine_workers.py ~667, replica side
workers/rollout/replica.py ~388), and none of those servers installs for a CPU. Three pieces stand in:
  - `HFCPUServer`: a Ray actor holding an HF causal LM; `generate` samples one request token by token and returns
    verl's `TokenOutput` with the sampled tokens' log-probs;
  - `HFCPUReplica`: verl's `RolloutReplica` for it (one server per replica, named so the adapter can find it);
  - `HFCPUServerAdapter`: verl's `BaseRollout` in each actor worker; verl's in-process ("naive") weight sync hands
    it the actor's weights after every update and it forwards them to its replica's server.
"""

from __future__ import annotations

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


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (V,) logits outside the top-k tokens and outside the smallest set holding top_p of the mass."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return logits


class HFCPUServer:
    """One rollout replica's sampler: an HF causal LM on the CPU, float32, eager attention."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int) -> None:
        from transformers import AutoModelForCausalLM
        from verl.utils.fs import copy_to_local

        from verl_maxpo.cpu import trace

        self.config = config
        path = copy_to_local(_get(model_config, "path"))
        self.model = AutoModelForCausalLM.from_pretrained(
            path,
            torch_dtype=torch.float32,
            attn_implementation="eager",
            trust_remote_code=bool(_get(model_config, "trust_remote_code", False)),
        ).eval()
        eos = self.model.generation_config.eos_token_id
        eos = eos if eos is not None else self.model.config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.generator = torch.Generator().manual_seed(int(_get(config, "seed", 0)) + replica_rank)
        self.global_steps: int | None = None
        self.syncs = 0
        self.initial = (
            {k: v.detach().clone() for k, v in self.model.state_dict().items()} if trace.trace_dir() else None
        )

    def _max_tokens(self, prompt_len: int, sampling_params: dict[str, Any]) -> int:
        cfg = self.config
        room = int(cfg.prompt_length) + int(cfg.response_length) - prompt_len
        asked = sampling_params.pop("max_tokens", sampling_params.pop("max_new_tokens", None))
        limit = min(int(cfg.response_length), room) if asked is None else int(asked)
        return max(1, min(limit, room))

    @torch.no_grad()
    def _sample(self, prompt_ids: list[int], max_tokens: int, params: dict[str, Any]) -> tuple[list[int], list[float]]:
        temperature = float(params.get("temperature", 1.0) or 0.0)
        top_k, top_p = int(params.get("top_k", -1) or -1), float(params.get("top_p", 1.0) or 1.0)
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        past, tokens, logps = None, [], []
        for _ in range(max_tokens):
            out = self.model(input_ids=ids if past is None else ids[:, -1:], past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float()
            if temperature > 0:
                logits = filter_logits(logits / temperature, top_k, top_p)
                token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=self.generator))
            else:
                token = int(logits.argmax())
            tokens.append(token)
            logps.append(float(torch.log_softmax(logits, -1)[token]))
            if token in self.eos_ids:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        return tokens, logps

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
        tokens, logps = self._sample(list(prompt_ids), max_tokens, params)
        return TokenOutput(
            token_ids=tokens,
            log_probs=logps if params.get("logprobs") else None,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    def update_weights(self, state: dict[str, torch.Tensor], global_steps: int | None = None) -> int:
        """Load the actor's weights (HF names); returns how many tensors were loaded."""
        from verl_maxpo.cpu import trace

        result = self.model.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise KeyError(f"hf_cpu rollout: weights the model does not have: {result.unexpected_keys[:5]}")
        self.global_steps = global_steps
        self.syncs += 1
        if self.initial is not None:
            now = self.model.state_dict()
            change = max(float((now[k] - v).abs().max()) for k, v in self.initial.items())
            trace.append("weights.jsonl", {"sync": self.syncs, "global_steps": global_steps, "max_abs_change": change})
        return len(state)

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


class HFCPUReplica(RolloutReplica):
    """verl's rollout replica for `hf_cpu`: one `HFCPUServer` actor, needing no Ray resources of its own."""

    async def launch_servers(self) -> None:
        if self.world_size != 1:
            raise ValueError("the hf_cpu rollout needs rollout.tensor_model_parallel_size=1 (and dp=pp=1)")
        if self.is_reward_model or self.is_teacher_model:
            raise NotImplementedError("the hf_cpu rollout serves the policy only (no reward/teacher model)")
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
        # Every rank drains the generator: FSDP gathers each full tensor collectively while it yields.
        state = {}
        for name, tensor in weights:
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[name] = full.detach().to("cpu", torch.float32, copy=True)
        if self.is_leader:
            if self._server is None:
                self._server = ray.get_actor(server_name(self.replica_rank))
            await self._server.update_weights.remote(state, kwargs.get("global_steps"))
