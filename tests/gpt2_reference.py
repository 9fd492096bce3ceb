#!/usr/bin/python3
"""An independent GPT-2 for tests/gpt2_files_test.sh: random weights written in Hugging Face's and
llm.c's file layouts, and the logits and loss of a GPT-2 forward written here from the paper's
definition (Radford et al., 2019; Vaswani et al., 2017), in float64, without seqgen.

    gpt2_reference.py OUT_DIR [--shape small|124M] [--seed N]
    gpt2_reference.py --read A.safetensors B.bin     (files seqgen wrote: see read_files)

Writes into OUT_DIR:
  model.safetensors        F32, unprefixed GPT2Model names, with the attn.bias mask buffers;
                           metadata n_head (the heads; seqgen writes it too)
  model_bf16.safetensors   BF16, "transformer." prefix, lm_head.weight equal to wte (tied), no
                           n_head
  model.bin                llm.c version 3 (float32); the padded wte rows hold junk (never read)
  model_bf16.bin           llm.c version 5 (bfloat16); padded rows zero, as llm.c writes them
  ref.txt                  "B T V C L NH context", the input ids, the target ids, the loss (F32
                           weights) and the loss with the weights rounded to bfloat16
  ref_logits.f64           (B*T, V) logits, row-major little-endian float64, F32 weights
  ref_logits_bf16.f64      the same for the bfloat16-rounded weights
  encoder.json, vocab.bpe  a toy GPT-2 tokenizer of the model's 300 tokens (256 bytes in GPT-2's
  tokenizer.bin            order, 43 merges of English bigrams, <|endoftext|> = 299), as OpenAI's
                           files and as llm.c's tokenizer.bin (version 2)
With --shape 124M: GPT-2 124M's shape (V 50257, context 1024, C 768, L 12, NH 12) with weights
N(0, 0.02) as GPT-2's initialisation, only model.bin and model.safetensors, a single prompt of
64 tokens (B 1, T 64).

Only Debian's python3-torch and python3-numpy: the safetensors files are written by hand (an
8-byte header length, the JSON header, the raw bytes).
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch


def layer_norm(x, w, b, eps=1e-5):
    # LayerNorm(x) = (x - mean) / sqrt(var + eps) * w + b, biased variance, over the channels
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):
    # GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(p, cfg, idx):
    """Logits (B, T, V) of a GPT-2 with HF-named float64 weights p; idx (B, T) ids."""
    B, T = idx.shape
    C, NH, L = cfg["C"], cfg["NH"], cfg["L"]
    hs = C // NH
    x = p["wte.weight"][idx] + p["wpe.weight"][torch.arange(T)][None]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = f"h.{l}."
        a = layer_norm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"])
        qkv = a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]  # Conv1D: x @ W, W (C, 3C)
        q, k, v = qkv.split(C, dim=-1)
        q = q.view(B, T, NH, hs).transpose(1, 2)
        k = k.view(B, T, NH, hs).transpose(1, 2)
        v = v.view(B, T, NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        a = layer_norm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"])
        m = gelu_tanh(a @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"])
        x = x + m @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    x = layer_norm(x, p["ln_f.weight"], p["ln_f.bias"])
    return x @ p["wte.weight"].T  # tied head


def cross_entropy(logits, targets):
    lp = logits.log_softmax(-1)
    return -lp.gather(-1, targets[..., None]).mean().item()


def random_weights(cfg, gen, small):
    V, C, L, T = cfg["V"], cfg["C"], cfg["L"], cfg["context"]
    # Small shape: larger weights than GPT-2's initialisation, so attention and GELU are far from
    # linear and a transposed or misplaced tensor changes the logits a lot.
    s = (0.3, 0.2, 0.1, 0.5) if small else (0.02, 0.02, 0.02, 0.02)
    n = lambda *shape, std: torch.randn(*shape, generator=gen, dtype=torch.float32) * std
    p = {"wte.weight": n(V, C, std=s[3]), "wpe.weight": n(T, C, std=s[3])}
    for l in range(L):
        h = f"h.{l}."
        p[h + "ln_1.weight"] = 1 + n(C, std=s[2])
        p[h + "ln_1.bias"] = n(C, std=s[2])
        p[h + "attn.c_attn.weight"] = n(C, 3 * C, std=s[0])
        p[h + "attn.c_attn.bias"] = n(3 * C, std=s[2])
        p[h + "attn.c_proj.weight"] = n(C, C, std=s[1])
        p[h + "attn.c_proj.bias"] = n(C, std=s[2])
        p[h + "ln_2.weight"] = 1 + n(C, std=s[2])
        p[h + "ln_2.bias"] = n(C, std=s[2])
        p[h + "mlp.c_fc.weight"] = n(C, 4 * C, std=s[0])
        p[h + "mlp.c_fc.bias"] = n(4 * C, std=s[2])
        p[h + "mlp.c_proj.weight"] = n(4 * C, C, std=s[1])
        p[h + "mlp.c_proj.bias"] = n(C, std=s[2])
    p["ln_f.weight"] = 1 + n(C, std=s[2])
    p["ln_f.bias"] = n(C, std=s[2])
    return p


def raw_bytes(t, dtype):
    t = t.contiguous()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "U8":
        return t.to(torch.uint8).numpy().tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, torch tensor, dtype string). Header + raw little-endian bytes."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t, dtype in tensors:
        b = raw_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_llmc(path, p, cfg, version, pad_fill):
    """llm.c's gpt2 .bin: 256 int32 header, then the 16 tensors with Linear (out, in) matrices."""
    V, C, L, T = cfg["V"], cfg["C"], cfg["L"], cfg["context"]
    Vp = (V + 127) // 128 * 128
    header = np.zeros(256, dtype="<i4")
    header[:8] = [20240326, version, T, V, L, cfg["NH"], C, Vp]
    wte = torch.full((Vp, C), pad_fill, dtype=torch.float32)
    wte[:V] = p["wte.weight"]
    stack = lambda key, transpose: torch.stack([p[f"h.{l}.{key}"].T if transpose else p[f"h.{l}.{key}"]
                                                for l in range(L)])
    tensors = [wte, p["wpe.weight"],
               stack("ln_1.weight", False), stack("ln_1.bias", False),
               stack("attn.c_attn.weight", True), stack("attn.c_attn.bias", False),
               stack("attn.c_proj.weight", True), stack("attn.c_proj.bias", False),
               stack("ln_2.weight", False), stack("ln_2.bias", False),
               stack("mlp.c_fc.weight", True), stack("mlp.c_fc.bias", False),
               stack("mlp.c_proj.weight", True), stack("mlp.c_proj.bias", False),
               p["ln_f.weight"], p["ln_f.bias"]]
    dtype = "F32" if version == 3 else "BF16"
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for t in tensors:
            f.write(raw_bytes(t, dtype))


def bytes_to_unicode():
    """GPT-2's table: printable bytes stand for themselves, the others become U+0100, U+0101, ..."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs))), bs


def write_toy_tokenizer(out, V):
    """encoder.json + vocab.bpe and llm.c's tokenizer.bin for a vocabulary of V = 300 tokens."""
    table, order = bytes_to_unicode()
    tokens = [bytes([b]) for b in order]  # ids 0..255: the bytes in GPT-2's order
    bigrams = ("th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co "
               "me de hi ri ro ic ne ea ra ce").split()
    merges = [(b[0], b[1]) for b in bigrams] + [("th", "e")]
    assert len(tokens) + len(merges) + 1 == V
    for a, b in merges:
        tokens.append((a + b).encode())
    tokens.append(b"<|endoftext|>")
    enc = {"".join(table[c] for c in t): i for i, t in enumerate(tokens)}
    with open(os.path.join(out, "encoder.json"), "w") as f:
        json.dump(enc, f)
    with open(os.path.join(out, "vocab.bpe"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    header = np.zeros(256, dtype="<u4")
    header[:4] = [20240328, 2, V, V - 1]
    with open(os.path.join(out, "tokenizer.bin"), "wb") as f:
        f.write(header.tobytes())
        for t in tokens:
            f.write(bytes([len(t)]) + t)


def read_safetensors(path):
    """A safetensors file read by the rules of Hugging Face's library: 8-aligned header, tensors
    contiguous from offset 0 without holes, covering the data exactly. Returns name -> float64 tensor."""
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0, f"{path}: header length {n} is not a multiple of 8"
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    assert meta.get("format") == "pt", f"{path}: metadata {meta} lacks format 'pt' (transformers requires it)"
    buf = data[8 + n:]
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    end, out = 0, {}
    dt = {"F32": (np.float32, 4), "F16": (np.float16, 2)}
    for name, e in entries:
        b, f = e["data_offsets"]
        assert b == end, f"{path}: '{name}' starts at {b}, the previous tensor ended at {end}"
        kind, width = dt[e["dtype"]]
        assert f - b == width * int(np.prod(e["shape"])), name
        out[name] = torch.from_numpy(np.frombuffer(buf[b:f], dtype=kind).astype(np.float64).reshape(e["shape"]))
        end = f
    assert end == len(buf), f"{path}: {len(buf) - end} bytes after the last tensor"
    return out, meta


def read_llmc(path):
    """llm.c's v3 .bin as HF-named float64 tensors (Linear weights transposed back to Conv1D)."""
    data = open(path, "rb").read()
    h = np.frombuffer(data[:1024], dtype="<i4")
    assert h[0] == 20240326 and h[1] == 3, h[:2]
    T, V, L, NH, C, Vp = (int(x) for x in h[2:8])
    w = torch.from_numpy(np.frombuffer(data[1024:], dtype="<f4").astype(np.float64))
    sizes = [Vp * C, T * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C, L * C, L * C,
             L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C]
    assert sum(sizes) == w.numel(), "size"
    parts = list(torch.split(w, sizes))
    p = {"wte.weight": parts[0].view(Vp, C)[:V], "wpe.weight": parts[1].view(T, C)}
    assert torch.all(parts[0].view(Vp, C)[V:] == 0), "the padded rows of wte are not zero"
    kinds = [("ln_1.weight", (C,), False), ("ln_1.bias", (C,), False), ("attn.c_attn.weight", (3 * C, C), True),
             ("attn.c_attn.bias", (3 * C,), False), ("attn.c_proj.weight", (C, C), True),
             ("attn.c_proj.bias", (C,), False), ("ln_2.weight", (C,), False), ("ln_2.bias", (C,), False),
             ("mlp.c_fc.weight", (4 * C, C), True), ("mlp.c_fc.bias", (4 * C,), False),
             ("mlp.c_proj.weight", (C, 4 * C), True), ("mlp.c_proj.bias", (C,), False)]
    for (key, shape, transposed), part in zip(kinds, parts[2:14]):
        for l, t in enumerate(part.view(L, *shape)):
            p[f"h.{l}.{key}"] = t.T if transposed else t
    p["ln_f.weight"], p["ln_f.bias"] = parts[14], parts[15]
    return p, dict(V=V, context=T, C=C, L=L, NH=NH)


def read_files(st_path, bin_path):
    """Files seqgen wrote, read here with this script's own parsers: the two hold the same weights,
    and this script's forward gives the same loss on them."""
    st, meta = read_safetensors(st_path)
    llmc, cfg = read_llmc(bin_path)
    assert sorted(st) == sorted(llmc), sorted(set(st) ^ set(llmc))
    for k in st:
        assert st[k].shape == llmc[k].shape and torch.equal(st[k], llmc[k]), k
    assert int(meta["n_head"]) == cfg["NH"], meta
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(0, cfg["V"], (2, cfg["context"] + 1), generator=gen)
    with torch.no_grad():
        a = cross_entropy(forward(st, cfg, ids[:, :-1]), ids[:, 1:])
        b = cross_entropy(forward(llmc, cfg, ids[:, :-1]), ids[:, 1:])
    assert a == b and math.isfinite(a), (a, b)
    print(f"gpt2_reference: {st_path} and {bin_path} hold the same {len(st)} tensors; loss {a:.6f}")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    if args[0] == "--read":
        read_files(args[1], args[2])
        return
    out = args[0]
    shape = args[args.index("--shape") + 1] if "--shape" in args else "small"
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 1234
    small = shape == "small"
    if small:
        cfg = dict(V=300, context=16, C=32, L=2, NH=4)  # V not a multiple of 128: Vp = 384
        B, T = 2, 12
    elif shape == "124M":
        cfg = dict(V=50257, context=1024, C=768, L=12, NH=12)
        B, T = 1, 64
    else:
        sys.exit(f"unknown --shape {shape}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    os.makedirs(out, exist_ok=True)
    p = random_weights(cfg, gen, small)
    # T + 1 tokens per sequence: inputs and the next-token targets.
    ids = torch.randint(0, cfg["V"], (B, T + 1), generator=gen)
    inputs, targets = ids[:, :-1], ids[:, 1:]

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    names = list(p.keys())
    masks = [(f"h.{l}.attn.bias", torch.tril(torch.ones(1, 1, cfg["context"], cfg["context"])), "F32")
             for l in range(cfg["L"])] if small else []
    # The heads are not in a safetensors file: model.safetensors says them in its metadata (as seqgen
    # writes it); model_bf16.safetensors does not, and the reader is told them.
    write_safetensors(os.path.join(out, "model.safetensors"), [(k, p[k], "F32") for k in names] + masks,
                      {"format": "pt", "n_head": str(cfg["NH"])})
    write_llmc(os.path.join(out, "model.bin"), p, cfg, 3, 1e3 if small else 0.0)

    with torch.no_grad():
        p64 = {k: v.double() for k, v in p.items()}
        logits = forward(p64, cfg, inputs)
        loss = cross_entropy(logits, targets)
        logits.reshape(B * T, cfg["V"]).numpy().astype("<f8").tofile(os.path.join(out, "ref_logits.f64"))
        loss_bf16 = float("nan")
        if small:
            pb = {k: v.to(torch.bfloat16).double() for k, v in p.items()}
            logits_b = forward(pb, cfg, inputs)
            loss_bf16 = cross_entropy(logits_b, targets)
            logits_b.reshape(B * T, cfg["V"]).numpy().astype("<f8").tofile(os.path.join(out, "ref_logits_bf16.f64"))
            prefixed = [("transformer." + k, p[k], "BF16") for k in names]
            prefixed.append(("lm_head.weight", p["wte.weight"], "BF16"))
            write_safetensors(os.path.join(out, "model_bf16.safetensors"), prefixed, {"format": "pt"})
            write_llmc(os.path.join(out, "model_bf16.bin"), p, cfg, 5, 0.0)
            write_toy_tokenizer(out, cfg["V"])

    with open(os.path.join(out, "ref.txt"), "w") as f:
        f.write(f"{B} {T} {cfg['V']} {cfg['C']} {cfg['L']} {cfg['NH']} {cfg['context']}\n")
        f.write(" ".join(str(int(i)) for i in inputs.reshape(-1)) + "\n")
        f.write(" ".join(str(int(i)) for i in targets.reshape(-1)) + "\n")
        f.write(f"{loss!r} {loss_bf16!r}\n")
    print(f"gpt2_reference: {shape} model in {out}: loss {loss:.6f} (bf16 weights {loss_bf16:.6f})")


if __name__ == "__main__":
    main()
