"""A small Vision-Transformer-style encoder: image patches as tokens, multi-head self-attention, GELU MLP."""

import torch
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    """softmax(Q K^T / sqrt(d_head)) V per head; shapes are static but the batch, so it exports cleanly."""

    def __init__(self, dim: int, heads: int, tokens: int):
        super().__init__()
        self.heads, self.tokens, self.head_dim = heads, tokens, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x).reshape(-1, self.tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (batch, heads, tokens, head_dim)
        attention = torch.softmax(q @ k.transpose(-2, -1) * self.head_dim ** -0.5, dim=-1)
        out = (attention @ v).permute(0, 2, 1, 3).reshape(-1, self.tokens, self.heads * self.head_dim)
        return self.proj(out)


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder layer: x + MHSA(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, tokens: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = MultiHeadSelfAttention(dim, heads, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchTransformer(nn.Module):
    """Patch embedding (strided conv) + learned positions, encoder blocks, final LN, mean over tokens, FC."""

    def __init__(self, image_size: int = 28, patch: int = 4, dim: int = 64, heads: int = 4, depth: int = 2,
                 mlp_dim: int = 128, num_classes: int = 10):
        super().__init__()
        self.tokens, self.dim = (image_size // patch) ** 2, dim
        self.embed = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)
        self.position = nn.Parameter(torch.randn(1, self.tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, self.tokens, mlp_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).reshape(-1, self.dim, self.tokens).transpose(1, 2) + self.position
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


def transformer() -> PatchTransformer:
    return PatchTransformer()
