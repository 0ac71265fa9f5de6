#!/usr/bin/env python3
"""A straightforward PyTorch (Python) Video U-Net with the same blocks, widths and shapes as the one
`vidfarm bench unet` builds (ResBlock + spatial self-attention + cross-attention + temporal attention
with a relative-position bias at every level, stride-2 downsampling, conv + nearest upsampling, skip
concatenation). Written the way such a model is usually written in Python: nn.Conv2d in the default
memory layout, einsum-free reshapes, softmax attention. It is the baseline for the fp32 speed target.

  /usr/bin/python3 bench/unet_reference.py --dim 32 --mults 1,2,4,8 --frames 16 --size 32 --batch 2
(needs Debian's python3-torch)
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = nn.Linear(emb, 2 * cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb, t):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb_proj(emb).repeat_interleave(t, 0)[:, :, None, None].chunk(2, 1)
        h = self.norm2(h) * (scale + 1) + shift
        h = self.conv2(F.silu(h))
        return (self.skip(x) if self.skip is not None else x) + h


def attend(q, k, v, bias=None, mask=None):
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return logits.softmax(-1) @ v


class SpatialAttention(nn.Module):
    def __init__(self, ch, heads, hd, groups):
        super().__init__()
        self.heads, self.hd = heads, hd
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Linear(ch, 3 * heads * hd)
        self.out = nn.Linear(heads * hd, ch)

    def forward(self, x, ctx):
        n, c, h, w = x.shape
        tok = self.norm(x).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tok).view(n, h * w, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        a = attend(q, k, v).transpose(1, 2).reshape(n, h * w, -1)
        return x + self.out(a).transpose(1, 2).reshape(n, c, h, w)


class CrossAttention(nn.Module):
    def __init__(self, ch, text_dim, heads, hd, groups):
        super().__init__()
        self.heads, self.hd = heads, hd
        self.norm = nn.GroupNorm(groups, ch)
        self.q = nn.Linear(ch, heads * hd)
        self.kv = nn.Linear(text_dim, 2 * heads * hd)
        self.null_kv = nn.Parameter(torch.randn(2, heads * hd))
        self.out = nn.Linear(heads * hd, ch)

    def forward(self, x, ctx):
        bt, c, h, w = x.shape
        b, t = ctx["b"], ctx["t"]
        tok = self.norm(x).view(b, t, c, h * w).permute(0, 1, 3, 2).reshape(b, t * h * w, c)
        q = self.q(tok).view(b, -1, self.heads, self.hd).transpose(1, 2)
        text = ctx["text"]
        kv = torch.cat([self.null_kv.view(1, 1, -1).expand(b, 1, -1), self.kv(text)], 1)
        k, v = kv.view(b, -1, 2, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool), ctx["mask"]], 1)[:, None, None, :]
        a = attend(q, k, v, mask=mask).transpose(1, 2).reshape(b, t, h * w, -1)
        y = self.out(a).view(b, t, h, w, c).permute(0, 1, 4, 2, 3).reshape(bt, c, h, w)
        return x + y


class TemporalAttention(nn.Module):
    def __init__(self, ch, heads, hd, groups, max_dist=32):
        super().__init__()
        self.heads, self.hd, self.max_dist = heads, hd, max_dist
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Linear(ch, 3 * heads * hd)
        self.out = nn.Linear(heads * hd, ch)
        self.rel_bias = nn.Parameter(torch.zeros(heads, 2 * max_dist + 1))

    def forward(self, x, ctx):
        bt, c, h, w = x.shape
        b, t = ctx["b"], ctx["t"]
        tok = self.norm(x).view(b, t, c, h * w).permute(0, 3, 1, 2)  # b p t c
        q, k, v = self.qkv(tok).view(b * h * w, t, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        pos = torch.arange(t)
        idx = (pos[None, :] - pos[:, None]).clamp(-self.max_dist, self.max_dist) + self.max_dist
        a = attend(q, k, v, bias=self.rel_bias[:, idx][None])  # (b p) h t d
        a = a.transpose(1, 2).reshape(b, h * w, t, -1)
        y = self.out(a).permute(0, 2, 3, 1).reshape(bt, c, h, w)
        return x + y


class Block(nn.Module):
    def __init__(self, cin, cout, emb, text_dim, heads, hd, groups, attn=True, temporal=True):
        super().__init__()
        self.res = ResBlock(cin, cout, emb, groups)
        self.attn = SpatialAttention(cout, heads, hd, groups) if attn else None
        self.cross = CrossAttention(cout, text_dim, heads, hd, groups) if attn else None
        self.temporal = TemporalAttention(cout, heads, hd, groups) if temporal else None

    def forward(self, x, ctx):
        x = self.res(x, ctx["emb"], ctx["t"])
        for m in (self.attn, self.cross, self.temporal):
            if m is not None:
                x = m(x, ctx)
        return x


def sinusoidal(x, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    args = x[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], 1)


class VideoUNet(nn.Module):
    def __init__(self, dim, mults, text_dim=64, heads=4, hd=32, groups=8, channels=3):
        super().__init__()
        emb = 4 * dim
        self.dim = dim
        self.time1, self.time2 = nn.Linear(dim, emb), nn.Linear(emb, emb)
        self.text_pool = nn.Linear(text_dim, emb)
        widths = [dim * m for m in mults]
        self.conv_in = nn.Conv2d(channels, widths[0], 3, padding=1)
        mk = lambda i, o, **kw: Block(i, o, emb, text_dim, heads, hd, groups, **kw)
        self.down, self.downsample, skips, cur = nn.ModuleList(), nn.ModuleList(), [], widths[0]
        for lvl, wd in enumerate(widths):
            self.down.append(mk(cur, wd))
            cur = wd
            skips.append(cur)
            if lvl + 1 < len(widths):
                self.downsample.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([mk(cur, cur), mk(cur, cur, attn=False, temporal=False)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for lvl in reversed(range(len(widths))):
            self.up.append(mk(cur + skips.pop(), widths[lvl]))
            cur = widths[lvl]
            if lvl > 0:
                self.upsample.append(nn.Conv2d(cur, widths[lvl - 1], 3, padding=1))
                cur = widths[lvl - 1]
        self.norm_out = nn.GroupNorm(groups, cur)
        self.conv_out = nn.Conv2d(cur, channels, 3, padding=1)

    def forward(self, z, logsnr, text, mask, pooled):
        b, c, t, h, w = z.shape
        emb = F.silu(self.time2(F.silu(self.time1(sinusoidal(logsnr, self.dim)))) + self.text_pool(pooled))
        ctx = {"b": b, "t": t, "emb": emb, "text": text, "mask": mask}
        x = self.conv_in(z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x, ctx)
            skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
        for blk in self.mid:
            x = blk(x, ctx)
        for i, blk in enumerate(self.up):
            x = blk(torch.cat([x, skips.pop()], 1), ctx)
            if i < len(self.upsample):
                x = F.interpolate(self.upsample[i](x), scale_factor=2, mode="nearest")
        x = self.conv_out(F.silu(self.norm_out(x)))
        return x.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--mults", default="1,2,4,8")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="0 = all cores")
    a = p.parse_args()
    import os
    torch.set_num_threads(a.threads or os.cpu_count())
    torch.manual_seed(0)
    net = VideoUNet(a.dim, [int(m) for m in a.mults.split(",")]).eval()
    params = sum(p.numel() for p in net.parameters())
    z = torch.randn(a.batch, 3, a.frames, a.size, a.size)
    logsnr = torch.zeros(a.batch)
    text, mask, pooled = torch.randn(a.batch, 16, 64), torch.ones(a.batch, 16, dtype=torch.bool), torch.randn(a.batch, 64)
    ms = []
    with torch.inference_mode():
        for _ in range(2):
            net(z, logsnr, text, mask, pooled)
        for _ in range(a.iters):
            t0 = time.perf_counter()
            net(z, logsnr, text, mask, pooled)
            ms.append((time.perf_counter() - t0) * 1e3)
    print(f"python unet dim={a.dim} mults={a.mults} frames={a.frames} size={a.size} batch={a.batch} threads={torch.get_num_threads()}")
    print(f"params            {params / 1e6:.2f} M")
    print(f"ms per forward    {statistics.median(ms):.1f} (median of {a.iters}; min {min(ms):.1f}, max {max(ms):.1f})")


if __name__ == "__main__":
    main()
