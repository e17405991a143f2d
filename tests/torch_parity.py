#!/usr/bin/env python3
"""Writes PyTorch reference cases for attn's nn modules to one safetensors file.

Usage: torch_parity.py OUT.safetensors [SEED]

Every case draws random weights and inputs, runs them through an
independent implementation (torch.nn modules, or a Llama-style block written
here in plain torch), and stores weights, inputs and outputs under
"<case>/<name>"; the case's shape parameters go to the file's metadata as
JSON under the case name. tests/test_nn_torch.cc loads the file, runs the
same computation with attn::nn and compares. Float32 throughout; the script
runs with autograd enabled so torch takes its reference (not the fused
inference) paths.
"""
import json
import math
import struct
import sys
import time

import torch

tensors = {}
metadata = {}


def put(case, name, t):
    tensors[f"{case}/{name}"] = t.detach().to(torch.float32).contiguous()


def write(path):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {k: json.dumps(v) for k, v in metadata.items()}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def randomize(module, scale=0.3):
    for p in module.parameters():
        with torch.no_grad():
            p.copy_(torch.randn_like(p) * scale)


def mha_self():
    E, H, B, S = 48, 4, 3, 13
    m = torch.nn.MultiheadAttention(E, H, batch_first=True)
    randomize(m)
    x = torch.randn(B, S, E)
    lengths = [13, 6, 1]
    pad = torch.arange(S)[None, :] >= torch.tensor(lengths)[:, None]
    causal = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)
    out_pad, _ = m(x, x, x, key_padding_mask=pad, need_weights=False)
    out_causal, _ = m(x, x, x, attn_mask=causal, need_weights=False)
    bias = torch.randn(S, S)
    out_bias, _ = m(x, x, x, attn_mask=bias, key_padding_mask=pad,
                    need_weights=False)
    c = "mha_self"
    metadata[c] = {"E": E, "H": H, "B": B, "S": S, "lengths": lengths}
    put(c, "in_proj_weight", m.in_proj_weight)
    put(c, "in_proj_bias", m.in_proj_bias)
    put(c, "out_proj.weight", m.out_proj.weight)
    put(c, "out_proj.bias", m.out_proj.bias)
    put(c, "x", x)
    put(c, "bias", bias)
    put(c, "out_pad", out_pad)
    put(c, "out_causal", out_causal)
    put(c, "out_bias", out_bias)


def mha_cross():
    E, H, B, S, L, KD = 32, 4, 2, 5, 70, 24
    m = torch.nn.MultiheadAttention(E, H, batch_first=True, kdim=KD, vdim=KD)
    randomize(m)
    x = torch.randn(B, S, E)
    mem = torch.randn(B, L, KD)
    pad = torch.rand(B, L) < 0.3
    pad[:, 0] = False  # every row keeps a key (torch gives NaN otherwise)
    out, _ = m(x, mem, mem, key_padding_mask=pad, need_weights=False)
    c = "mha_cross"
    metadata[c] = {"E": E, "H": H, "B": B, "S": S, "L": L, "KD": KD}
    put(c, "q_proj_weight", m.q_proj_weight)
    put(c, "k_proj_weight", m.k_proj_weight)
    put(c, "v_proj_weight", m.v_proj_weight)
    put(c, "in_proj_bias", m.in_proj_bias)
    put(c, "out_proj.weight", m.out_proj.weight)
    put(c, "out_proj.bias", m.out_proj.bias)
    put(c, "x", x)
    put(c, "memory", mem)
    put(c, "keep", (~pad).to(torch.float32))
    put(c, "out", out)


def encoder_layer(case, norm_first, activation):
    E, H, F, B, S = 48, 6, 96, 2, 67
    m = torch.nn.TransformerEncoderLayer(E, H, F, dropout=0.0,
                                         activation=activation,
                                         batch_first=True,
                                         norm_first=norm_first)
    randomize(m)
    m.eval()
    x = torch.randn(B, S, E)
    lengths = [67, 40]
    pad = torch.arange(S)[None, :] >= torch.tensor(lengths)[:, None]
    out = m(x, src_key_padding_mask=pad)
    metadata[case] = {"E": E, "H": H, "F": F, "B": B, "S": S,
                      "lengths": lengths, "norm_first": norm_first,
                      "activation": activation}
    for name, p in m.named_parameters():
        put(case, name, p)
    put(case, "x", x)
    put(case, "out", out)


def decoder_layer():
    E, H, F, B, S, L = 32, 4, 80, 2, 9, 11
    m = torch.nn.TransformerDecoderLayer(E, H, F, dropout=0.0,
                                         batch_first=True)
    randomize(m)
    m.eval()
    x = torch.randn(B, S, E)
    mem = torch.randn(B, L, E)
    mem_lengths = [11, 5]
    mem_pad = torch.arange(L)[None, :] >= torch.tensor(mem_lengths)[:, None]
    causal = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)
    out = m(x, mem, tgt_mask=causal, memory_key_padding_mask=mem_pad)
    c = "decoder_layer"
    metadata[c] = {"E": E, "H": H, "F": F, "B": B, "S": S, "L": L,
                   "mem_lengths": mem_lengths}
    for name, p in m.named_parameters():
        put(c, name, p)
    put(c, "x", x)
    put(c, "memory", mem)
    put(c, "out", out)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llama_block():
    """A Llama decoder layer in plain torch (the public modeling code's
    equations): pre-RMSNorm, RoPE (rotate-half), GQA, causal, SwiGLU."""
    E, H, KVH, D, F, B, S = 64, 4, 2, 16, 96, 2, 21
    theta, eps = 10000.0, 1e-5
    g = lambda *s: torch.randn(*s) * 0.2
    w = {
        "input_layernorm.weight": 1 + 0.1 * torch.randn(E),
        "self_attn.q_proj.weight": g(H * D, E),
        "self_attn.k_proj.weight": g(KVH * D, E),
        "self_attn.v_proj.weight": g(KVH * D, E),
        "self_attn.o_proj.weight": g(E, H * D),
        "post_attention_layernorm.weight": 1 + 0.1 * torch.randn(E),
        "mlp.gate_proj.weight": g(F, E),
        "mlp.up_proj.weight": g(F, E),
        "mlp.down_proj.weight": g(E, F),
    }
    x = torch.randn(B, S, E)
    h = rms_norm(x, w["input_layernorm.weight"], eps)
    q = (h @ w["self_attn.q_proj.weight"].T).view(B, S, H, D).transpose(1, 2)
    k = (h @ w["self_attn.k_proj.weight"].T).view(B, S, KVH, D).transpose(1, 2)
    v = (h @ w["self_attn.v_proj.weight"].T).view(B, S, KVH, D).transpose(1, 2)
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2).float() / D))
    freqs = torch.outer(torch.arange(S).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k = k.repeat_interleave(H // KVH, dim=1)
    v = v.repeat_interleave(H // KVH, dim=1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    s = s.masked_fill(torch.triu(torch.ones(S, S, dtype=torch.bool), 1),
                      float("-inf"))
    a = torch.softmax(s, dim=-1) @ v
    a = a.transpose(1, 2).reshape(B, S, H * D) @ w["self_attn.o_proj.weight"].T
    x1 = x + a
    h = rms_norm(x1, w["post_attention_layernorm.weight"], eps)
    gate = torch.nn.functional.silu(h @ w["mlp.gate_proj.weight"].T)
    up = h @ w["mlp.up_proj.weight"].T
    out = x1 + (gate * up) @ w["mlp.down_proj.weight"].T
    c = "llama_block"
    metadata[c] = {"E": E, "H": H, "KVH": KVH, "D": D, "F": F, "B": B,
                   "S": S, "theta": theta, "eps": eps}
    for name, t in w.items():
        put(c, name, t)
    put(c, "x", x)
    put(c, "out", out)


def t5_buckets():
    """T5's relative_position_bucket, as in the public T5 modeling code."""
    def bucket(rel, bidirectional, num_buckets, max_distance):
        ret = 0
        if bidirectional:
            num_buckets //= 2
            ret += (rel > 0).to(torch.long) * num_buckets
            rel = torch.abs(rel)
        else:
            rel = -torch.min(rel, torch.zeros_like(rel))
        max_exact = num_buckets // 2
        small = rel < max_exact
        large = max_exact + (torch.log(rel.float() / max_exact)
                             / math.log(max_distance / max_exact)
                             * (num_buckets - max_exact)).to(torch.long)
        large = torch.min(large, torch.full_like(large, num_buckets - 1))
        return ret + torch.where(small, rel, large)

    rel = torch.arange(-300, 301)
    c = "t5_buckets"
    metadata[c] = {"first": -300}
    put(c, "bidirectional", bucket(rel, True, 32, 128))
    put(c, "unidirectional", bucket(rel, False, 32, 128))


def sinusoidal():
    """The sinusoidal table as the PyTorch tutorial's PositionalEncoding."""
    P, E = 50, 24
    position = torch.arange(P).unsqueeze(1)
    div = torch.exp(torch.arange(0, E, 2) * (-math.log(10000.0) / E))
    pe = torch.zeros(P, E)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    metadata["sinusoidal"] = {"P": P, "E": E}
    put("sinusoidal", "table", pe)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    seed = int(sys.argv[2]) if len(sys.argv) == 3 else int(time.time())
    print(f"torch_parity: torch {torch.__version__}, seed {seed}")
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    mha_self()
    mha_cross()
    encoder_layer("encoder_post_gelu", False, "gelu")
    encoder_layer("encoder_pre_relu", True, "relu")
    decoder_layer()
    llama_block()
    t5_buckets()
    sinusoidal()
    metadata["seed"] = seed
    write(sys.argv[1])
    print(f"torch_parity: wrote {len(tensors)} tensors to {sys.argv[1]}")


if __name__ == "__main__":
    main()
