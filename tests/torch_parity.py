#!/usr/bin/env python3
"""Writes PyTorch reference cases for attn's nn modules and models.

Usage: torch_parity.py OUT_DIR [SEED]

Every case draws random weights and inputs, runs them through an
independent implementation (torch.nn modules, or the public modeling
code's equations written here in plain torch), and stores weights, inputs
and outputs under "<case>/<name>" in OUT_DIR/cases.safetensors; the case's
shape parameters go to the file's metadata as JSON under the case name.
Whole models (GPT-2, BERT, Llama) are also written as checkpoints the way
their public releases lay them out: OUT_DIR/<model>/config.json and
model.safetensors with the public tensor names (a GPT-2 checkpoint's Conv1D
weights [in, out] included). tests/test_nn_torch.cc loads them, runs the
same computation with attn::nn and compares. Float32 throughout; the script
runs with autograd enabled so torch takes its reference (not the fused
inference) paths.
"""
import json
import math
import os
import struct
import sys
import time

import torch

tensors = {}
metadata = {}


def put(case, name, t):
    tensors[f"{case}/{name}"] = t.detach().to(torch.float32).contiguous()


def write(path, tensors=tensors, metadata=metadata, dtype="F32"):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if dtype == "BF16":
            data = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        else:
            data = t.to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {
        k: v if isinstance(v, str) else json.dumps(v)
        for k, v in metadata.items()}
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
    x = torch.randn(B, S, E, requires_grad=True)
    lengths = [67, 40]
    pad = torch.arange(S)[None, :] >= torch.tensor(lengths)[:, None]
    out = m(x, src_key_padding_mask=pad)
    dout = torch.randn(B, S, E)
    (out * dout).sum().backward()  # x requires grad: torch's slow path
    metadata[case] = {"E": E, "H": H, "F": F, "B": B, "S": S,
                      "lengths": lengths, "norm_first": norm_first,
                      "activation": activation}
    for name, p in m.named_parameters():
        put(case, name, p)
        put(case, "d_" + name, p.grad)
    put(case, "x", x)
    put(case, "out", out)
    put(case, "dout", dout)
    put(case, "dx", x.grad)


def decoder_layer(c="decoder_layer", norm_first=False):
    E, H, F, B, S, L = 32, 4, 80, 2, 9, 11
    m = torch.nn.TransformerDecoderLayer(E, H, F, dropout=0.0,
                                         batch_first=True,
                                         norm_first=norm_first)
    randomize(m)
    m.eval()
    x = torch.randn(B, S, E, requires_grad=True)
    mem = torch.randn(B, L, E, requires_grad=True)
    mem_lengths = [11, 5]
    mem_pad = torch.arange(L)[None, :] >= torch.tensor(mem_lengths)[:, None]
    causal = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)
    out = m(x, mem, tgt_mask=causal, memory_key_padding_mask=mem_pad)
    dout = torch.randn(B, S, E)
    (out * dout).sum().backward()
    metadata[c] = {"E": E, "H": H, "F": F, "B": B, "S": S, "L": L,
                   "mem_lengths": mem_lengths, "norm_first": norm_first}
    for name, p in m.named_parameters():
        put(c, name, p)
        put(c, "d_" + name, p.grad)
    put(c, "x", x)
    put(c, "memory", mem)
    put(c, "out", out)
    put(c, "dout", dout)
    put(c, "dx", x.grad)
    put(c, "dmemory", mem.grad)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llama_attention(h, wq, wk, wv, wo, H, KVH, D, theta):
    """Llama's attention on h [B, S, E]: projections, RoPE (rotate-half),
    GQA, causal softmax, output projection."""
    B, S, _ = h.shape
    q = (h @ wq.T).view(B, S, H, D).transpose(1, 2)
    k = (h @ wk.T).view(B, S, KVH, D).transpose(1, 2)
    v = (h @ wv.T).view(B, S, KVH, D).transpose(1, 2)
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
    return a.transpose(1, 2).reshape(B, S, H * D) @ wo.T


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
    for t in w.values():
        t.requires_grad_()
    x = torch.randn(B, S, E, requires_grad=True)
    h = rms_norm(x, w["input_layernorm.weight"], eps)
    a = llama_attention(h, w["self_attn.q_proj.weight"],
                        w["self_attn.k_proj.weight"],
                        w["self_attn.v_proj.weight"],
                        w["self_attn.o_proj.weight"], H, KVH, D, theta)
    x1 = x + a
    h = rms_norm(x1, w["post_attention_layernorm.weight"], eps)
    gate = torch.nn.functional.silu(h @ w["mlp.gate_proj.weight"].T)
    up = h @ w["mlp.up_proj.weight"].T
    out = x1 + (gate * up) @ w["mlp.down_proj.weight"].T
    c = "llama_block"
    metadata[c] = {"E": E, "H": H, "KVH": KVH, "D": D, "F": F, "B": B,
                   "S": S, "theta": theta, "eps": eps}
    dout = torch.randn(B, S, E)
    (out * dout).sum().backward()
    for name, t in w.items():
        put(c, name, t)
        put(c, "d_" + name, t.grad)
    put(c, "x", x)
    put(c, "out", out)
    put(c, "dout", dout)
    put(c, "dx", x.grad)


def t5_bucket(rel, bidirectional, num_buckets, max_distance):
    """T5's relative_position_bucket, as in the public T5 modeling code."""
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


def t5_buckets():
    bucket = t5_bucket
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


def save_checkpoint(out_dir, name, config, weights, dtype="F32"):
    """A checkpoint as public releases lay it out: config.json and
    model.safetensors in a directory."""
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write(os.path.join(d, "model.safetensors"), weights, {"format": "pt"},
          dtype)


def layer_norm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def attention(q, k, v, mask):
    """q [B, H, S, D], k/v [B, H, L, D]; mask [.., S, L] True = hidden."""
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def gpt2_model(out_dir):
    """GPT-2 (the public modeling code's equations; Conv1D: y = x W + b)."""
    V, P, E, H, L, B, S = 97, 40, 32, 4, 2, 2, 11
    D = E // H
    g = lambda *s: torch.randn(*s) * 0.2
    w = {"wte.weight": g(V, E), "wpe.weight": g(P, E)}
    for i in range(L):
        p = f"h.{i}."
        w.update({
            p + "ln_1.weight": 1 + 0.1 * torch.randn(E), p + "ln_1.bias": g(E),
            p + "attn.c_attn.weight": g(E, 3 * E), p + "attn.c_attn.bias": g(3 * E),
            p + "attn.c_proj.weight": g(E, E), p + "attn.c_proj.bias": g(E),
            p + "ln_2.weight": 1 + 0.1 * torch.randn(E), p + "ln_2.bias": g(E),
            p + "mlp.c_fc.weight": g(E, 4 * E), p + "mlp.c_fc.bias": g(4 * E),
            p + "mlp.c_proj.weight": g(4 * E, E), p + "mlp.c_proj.bias": g(E),
            # a buffer older checkpoints carry; loaders skip it
            p + "attn.bias": torch.tril(torch.ones(1, 1, P, P)),
        })
    w["ln_f.weight"] = 1 + 0.1 * torch.randn(E)
    w["ln_f.bias"] = g(E)
    eps = 1e-5

    def forward(ids):
        b, s = ids.shape
        h = w["wte.weight"][ids] + w["wpe.weight"][torch.arange(s)]
        causal = torch.triu(torch.ones(s, s, dtype=torch.bool), 1)
        for i in range(L):
            p = f"h.{i}."
            a = layer_norm(h, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
            qkv = a @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
            q, k, v = (t.view(b, s, H, D).transpose(1, 2)
                       for t in qkv.split(E, dim=2))
            o = attention(q, k, v, causal).transpose(1, 2).reshape(b, s, E)
            h = h + o @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
            m = layer_norm(h, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
            m = torch.nn.functional.gelu(
                m @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"],
                approximate="tanh")
            h = h + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        h = layer_norm(h, w["ln_f.weight"], w["ln_f.bias"], eps)
        return h @ w["wte.weight"].T

    ids = torch.randint(0, V, (B, S))
    logits = forward(ids)
    # Greedy continuation, recomputing the whole sequence each step.
    new = 8
    seq = ids[:1]
    for _ in range(new):
        nxt = forward(seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    config = {"model_type": "gpt2", "vocab_size": V, "n_positions": P,
              "n_embd": E, "n_layer": L, "n_head": H, "n_inner": None,
              "activation_function": "gelu_new", "layer_norm_epsilon": eps,
              "architectures": ["GPT2LMHeadModel"]}
    # Public GPT-2 files name tensors without a prefix; some add
    # "transformer." - the loader takes both.
    save_checkpoint(out_dir, "gpt2",
                    config, {"transformer." + k: t for k, t in w.items()})
    c = "gpt2"
    metadata[c] = {"B": B, "S": S, "V": V, "E": E, "new": new}
    put(c, "ids", ids.float())
    put(c, "logits", logits)
    put(c, "greedy", seq[0, S:].float())


def bert_model(out_dir):
    """BERT's encoder (post-LayerNorm, exact GELU), with padding."""
    V, P, T, E, H, F, L, B, S = 89, 30, 2, 48, 4, 80, 2, 2, 17
    D = E // H
    eps = 1e-12
    g = lambda *s: torch.randn(*s) * 0.2
    w = {"embeddings.word_embeddings.weight": g(V, E),
         "embeddings.position_embeddings.weight": g(P, E),
         "embeddings.token_type_embeddings.weight": g(T, E),
         "embeddings.LayerNorm.weight": 1 + 0.1 * torch.randn(E),
         "embeddings.LayerNorm.bias": g(E),
         "pooler.dense.weight": g(E, E), "pooler.dense.bias": g(E)}
    for i in range(L):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            w[p + f"attention.self.{n}.weight"] = g(E, E)
            w[p + f"attention.self.{n}.bias"] = g(E)
        w.update({
            p + "attention.output.dense.weight": g(E, E),
            p + "attention.output.dense.bias": g(E),
            p + "attention.output.LayerNorm.weight": 1 + 0.1 * torch.randn(E),
            p + "attention.output.LayerNorm.bias": g(E),
            p + "intermediate.dense.weight": g(F, E),
            p + "intermediate.dense.bias": g(F),
            p + "output.dense.weight": g(E, F), p + "output.dense.bias": g(E),
            p + "output.LayerNorm.weight": 1 + 0.1 * torch.randn(E),
            p + "output.LayerNorm.bias": g(E),
        })
    ids = torch.randint(0, V, (B, S))
    types = torch.randint(0, T, (B, S))
    lengths = [S, 9]
    pad = torch.arange(S)[None, :] >= torch.tensor(lengths)[:, None]
    lin = lambda x, n: x @ w[n + ".weight"].T + w[n + ".bias"]
    h = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][torch.arange(S)]
         + w["embeddings.token_type_embeddings.weight"][types])
    h = layer_norm(h, w["embeddings.LayerNorm.weight"],
                   w["embeddings.LayerNorm.bias"], eps)
    for i in range(L):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(h, p + f"attention.self.{n}").view(B, S, H, D)
                   .transpose(1, 2) for n in ("query", "key", "value"))
        a = attention(q, k, v, pad[:, None, None, :])
        a = lin(a.transpose(1, 2).reshape(B, S, E), p + "attention.output.dense")
        h = layer_norm(h + a, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        m = torch.nn.functional.gelu(lin(h, p + "intermediate.dense"))
        h = layer_norm(h + lin(m, p + "output.dense"),
                       w[p + "output.LayerNorm.weight"],
                       w[p + "output.LayerNorm.bias"], eps)
    config = {"model_type": "bert", "vocab_size": V, "hidden_size": E,
              "num_hidden_layers": L, "num_attention_heads": H,
              "intermediate_size": F, "hidden_act": "gelu",
              "max_position_embeddings": P, "type_vocab_size": T,
              "layer_norm_eps": eps, "position_embedding_type": "absolute"}
    save_checkpoint(out_dir, "bert", config,
                    {"bert." + k: t for k, t in w.items()})
    c = "bert"
    metadata[c] = {"B": B, "S": S, "E": E, "lengths": lengths}
    put(c, "ids", ids.float())
    put(c, "types", types.float())
    put(c, "hidden", h)


def llama3_inv_freq(D, theta, factor, low, high, original):
    """Llama 3.1's rope scaling, as in the public modeling code."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2).float() / D))
    low_wavelen, high_wavelen = original / low, original / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def llama_model(out_dir):
    """A two-layer Llama 3 with GQA, rope scaling and its own LM head,
    stored in bfloat16 as public releases are (the forward uses the
    rounded weights)."""
    V, E, H, KVH, D, F, L, B, S = 101, 64, 4, 2, 16, 96, 2, 2, 19
    theta, eps = 500000.0, 1e-5
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    g = lambda *s: (torch.randn(*s) * 0.2)
    w = {"model.embed_tokens.weight": g(V, E),
         "model.norm.weight": 1 + 0.1 * torch.randn(E),
         "lm_head.weight": g(V, E)}
    for i in range(L):
        p = f"model.layers.{i}."
        w.update({
            p + "input_layernorm.weight": 1 + 0.1 * torch.randn(E),
            p + "self_attn.q_proj.weight": g(H * D, E),
            p + "self_attn.k_proj.weight": g(KVH * D, E),
            p + "self_attn.v_proj.weight": g(KVH * D, E),
            p + "self_attn.o_proj.weight": g(E, H * D),
            p + "post_attention_layernorm.weight": 1 + 0.1 * torch.randn(E),
            p + "mlp.gate_proj.weight": g(F, E),
            p + "mlp.up_proj.weight": g(F, E),
            p + "mlp.down_proj.weight": g(E, F),
        })
    w = {k: t.to(torch.bfloat16).to(torch.float32) for k, t in w.items()}
    inv_freq = llama3_inv_freq(D, theta, scaling["factor"],
                               scaling["low_freq_factor"],
                               scaling["high_freq_factor"],
                               scaling["original_max_position_embeddings"])
    ids = torch.randint(0, V, (B, S))
    h = w["model.embed_tokens.weight"][ids]
    freqs = torch.outer(torch.arange(S).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)
    for i in range(L):
        p = f"model.layers.{i}."
        a = rms_norm(h, w[p + "input_layernorm.weight"], eps)
        q = (a @ w[p + "self_attn.q_proj.weight"].T).view(B, S, H, D).transpose(1, 2)
        k = (a @ w[p + "self_attn.k_proj.weight"].T).view(B, S, KVH, D).transpose(1, 2)
        v = (a @ w[p + "self_attn.v_proj.weight"].T).view(B, S, KVH, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KVH, dim=1)
        v = v.repeat_interleave(H // KVH, dim=1)
        o = attention(q, k, v, causal).transpose(1, 2).reshape(B, S, H * D)
        h = h + o @ w[p + "self_attn.o_proj.weight"].T
        m = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        m = (torch.nn.functional.silu(m @ w[p + "mlp.gate_proj.weight"].T)
             * (m @ w[p + "mlp.up_proj.weight"].T))
        h = h + m @ w[p + "mlp.down_proj.weight"].T
    h = rms_norm(h, w["model.norm.weight"], eps)
    logits = h @ w["lm_head.weight"].T
    config = {"model_type": "llama", "vocab_size": V, "hidden_size": E,
              "intermediate_size": F, "num_hidden_layers": L,
              "num_attention_heads": H, "num_key_value_heads": KVH,
              "head_dim": D, "hidden_act": "silu", "rms_norm_eps": eps,
              "rope_theta": theta, "rope_scaling": scaling,
              "max_position_embeddings": 1024, "tie_word_embeddings": False,
              "attention_bias": False, "mlp_bias": False,
              "torch_dtype": "bfloat16"}
    save_checkpoint(out_dir, "llama", config, w, "BF16")
    c = "llama"
    metadata[c] = {"B": B, "S": S, "V": V, "E": E}
    put(c, "ids", ids.float())
    put(c, "logits", logits)


def vit():
    """ViT's front end (Conv2d patches, class token, positions) and two
    pre-norm encoder layers with a final LayerNorm."""
    C, I, P, E, H, F, B, L = 3, 32, 8, 48, 4, 96, 2, 2
    N = (I // P) ** 2
    conv = torch.nn.Conv2d(C, E, P, stride=P)
    randomize(conv)
    cls = torch.randn(1, 1, E) * 0.3
    pos = torch.randn(1, N + 1, E) * 0.3
    layers = [torch.nn.TransformerEncoderLayer(E, H, F, dropout=0.0,
                                               activation="gelu",
                                               batch_first=True,
                                               norm_first=True)
              for _ in range(L)]
    norm = torch.nn.LayerNorm(E, eps=1e-6)
    for m in layers + [norm]:
        randomize(m)
        m.eval()
    images = torch.randn(B, C, I, I)
    x = conv(images).flatten(2).transpose(1, 2)
    x = torch.cat([cls.expand(B, -1, -1), x], dim=1) + pos
    embedded = x
    for m in layers:
        x = m(x)
    x = norm(x)
    c = "vit"
    metadata[c] = {"C": C, "I": I, "P": P, "E": E, "H": H, "F": F, "B": B,
                   "L": L}
    put(c, "conv.weight", conv.weight.reshape(E, -1))
    put(c, "conv.bias", conv.bias)
    put(c, "cls", cls.reshape(E))
    put(c, "pos", pos.reshape(N + 1, E))
    for i, m in enumerate(layers):
        for name, p in m.named_parameters():
            put(c, f"layers.{i}.{name}", p)
    put(c, "norm.weight", norm.weight)
    put(c, "norm.bias", norm.bias)
    put(c, "images", images)
    put(c, "embedded", embedded)
    put(c, "out", x)


def t5_attention():
    """T5's attention (the public modeling code): no scaling, a learned bias
    per head and relative-position bucket, bidirectional (encoder) and
    causal (decoder)."""
    E, H, D, B, S, NB, MD = 32, 4, 8, 2, 150, 32, 128
    g = lambda *s: torch.randn(*s) * 0.2
    wq, wk, wv, wo = g(H * D, E), g(H * D, E), g(H * D, E), g(E, H * D)
    x = torch.randn(B, S, E)
    rel = torch.arange(S)[None, :] - torch.arange(S)[:, None]  # key - query
    c = "t5_attention"
    metadata[c] = {"E": E, "H": H, "D": D, "B": B, "S": S, "NB": NB, "MD": MD}
    for name, bidirectional in (("bi", True), ("causal", False)):
        table = g(NB, H)
        buckets = t5_bucket(rel, bidirectional, NB, MD)
        bias = table[buckets].permute(2, 0, 1)  # [H, S, S]
        q, k, v = ((x @ m.T).view(B, S, H, D).transpose(1, 2)
                   for m in (wq, wk, wv))
        s = q @ k.transpose(-1, -2) + bias
        if not bidirectional:
            s = s.masked_fill(torch.triu(torch.ones(S, S, dtype=torch.bool), 1),
                              float("-inf"))
        o = torch.softmax(s, dim=-1) @ v
        put(c, f"{name}.table", table)
        put(c, f"{name}.out", o.transpose(1, 2).reshape(B, S, H * D) @ wo.T)
    for n, m in (("q", wq), ("k", wk), ("v", wv), ("o", wo)):
        put(c, n, m)
    put(c, "x", x)


def mha_grad_self():
    """Gradients of torch.nn.MultiheadAttention (causal, padded) through
    autograd: loss = sum(out * dout)."""
    E, H, B, S = 48, 4, 3, 13
    m = torch.nn.MultiheadAttention(E, H, batch_first=True)
    randomize(m)
    x = torch.randn(B, S, E, requires_grad=True)
    lengths = [13, 6, 1]
    pad = torch.arange(S)[None, :] >= torch.tensor(lengths)[:, None]
    causal = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)
    out, _ = m(x, x, x, key_padding_mask=pad, attn_mask=causal,
               need_weights=False)
    dout = torch.randn(B, S, E)
    (out * dout).sum().backward()
    c = "mha_grad_self"
    metadata[c] = {"E": E, "H": H, "B": B, "S": S, "lengths": lengths}
    put(c, "in_proj_weight", m.in_proj_weight)
    put(c, "in_proj_bias", m.in_proj_bias)
    put(c, "out_proj.weight", m.out_proj.weight)
    put(c, "out_proj.bias", m.out_proj.bias)
    put(c, "x", x)
    put(c, "dout", dout)
    put(c, "out", out)
    put(c, "dx", x.grad)
    put(c, "d_in_proj_weight", m.in_proj_weight.grad)
    put(c, "d_in_proj_bias", m.in_proj_bias.grad)
    put(c, "d_out_proj.weight", m.out_proj.weight.grad)
    put(c, "d_out_proj.bias", m.out_proj.bias.grad)


def mha_grad_cross():
    E, H, B, S, L, KD = 32, 4, 2, 5, 70, 24
    m = torch.nn.MultiheadAttention(E, H, batch_first=True, kdim=KD, vdim=KD)
    randomize(m)
    x = torch.randn(B, S, E, requires_grad=True)
    mem = torch.randn(B, L, KD, requires_grad=True)
    out, _ = m(x, mem, mem, need_weights=False)
    dout = torch.randn(B, S, E)
    (out * dout).sum().backward()
    c = "mha_grad_cross"
    metadata[c] = {"E": E, "H": H, "B": B, "S": S, "L": L, "KD": KD}
    for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
        put(c, name, getattr(m, name))
        put(c, "d_" + name, getattr(m, name).grad)
    put(c, "in_proj_bias", m.in_proj_bias)
    put(c, "d_in_proj_bias", m.in_proj_bias.grad)
    put(c, "out_proj.weight", m.out_proj.weight)
    put(c, "out_proj.bias", m.out_proj.bias)
    put(c, "d_out_proj.weight", m.out_proj.weight.grad)
    put(c, "d_out_proj.bias", m.out_proj.bias.grad)
    put(c, "x", x)
    put(c, "memory", mem)
    put(c, "dout", dout)
    put(c, "dx", x.grad)
    put(c, "dmemory", mem.grad)


def llama_attention_grad():
    """Llama's attention (RoPE, GQA, causal, no biases) in plain torch, its
    gradients through autograd."""
    E, H, KVH, D, B, S = 64, 4, 2, 16, 2, 21
    theta = 10000.0
    w = {n: (torch.randn(*shape) * 0.2).requires_grad_()
         for n, shape in (("q", (H * D, E)), ("k", (KVH * D, E)),
                          ("v", (KVH * D, E)), ("o", (E, H * D)))}
    x = torch.randn(B, S, E, requires_grad=True)
    out = llama_attention(x, w["q"], w["k"], w["v"], w["o"], H, KVH, D, theta)
    dout = torch.randn(B, S, E)
    (out * dout).sum().backward()
    c = "llama_attention_grad"
    metadata[c] = {"E": E, "H": H, "KVH": KVH, "D": D, "B": B, "S": S,
                   "theta": theta}
    for n, t in w.items():
        put(c, n, t)
        put(c, "d_" + n, t.grad)
    put(c, "x", x)
    put(c, "dout", dout)
    put(c, "dx", x.grad)


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
    decoder_layer("decoder_layer_pre", True)
    llama_block()
    mha_grad_self()
    mha_grad_cross()
    llama_attention_grad()
    t5_buckets()
    sinusoidal()
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    gpt2_model(out_dir)
    bert_model(out_dir)
    llama_model(out_dir)
    vit()
    t5_attention()
    metadata["seed"] = seed
    path = os.path.join(out_dir, "cases.safetensors")
    write(path)
    print(f"torch_parity: wrote {len(tensors)} tensors to {path} and the "
          "gpt2, bert, llama checkpoints")


if __name__ == "__main__":
    main()
