"""Convolutional GRU: a recurrent layer on the core's feature maps, carrying a hidden state per stream.

  x_t [B, C, H, W] --conv_x (k_in)--> [B, 3 Ch, H, W]  (reset, update, candidate parts)
  h   [B, Ch, H, W] --conv_h (k_rec)-> [B, 3 Ch, H, W]
  r = sigmoid(x_r + h_r); z = sigmoid(x_z + h_z); n = tanh(x_n + r * h_n); h' = (1 - z) * n + z * h
Both convs use "same" padding, so the state keeps the feature map's size. A sequence starts from h = 0,
in a clip as in a stream: that is what makes a streamed prediction equal to the clip's.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvGRU(nn.Module):
    def __init__(self, in_channels: int, hidden_channels: int, input_kernel: int, recurrent_kernel: int):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.conv_x = nn.Conv2d(in_channels, 3 * hidden_channels, input_kernel, padding=input_kernel // 2)
        self.conv_h = nn.Conv2d(
            hidden_channels, 3 * hidden_channels, recurrent_kernel, padding=recurrent_kernel // 2, bias=False
        )

    def cell(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        # x [B, C, H, W], h [B, Ch, H, W] -> h' [B, Ch, H, W]
        ch = self.hidden_channels
        xg, hg = self.conv_x(x), self.conv_h(h)  # [B, 3 Ch, H, W] each
        r = torch.sigmoid(xg[:, :ch] + hg[:, :ch])
        z = torch.sigmoid(xg[:, ch : 2 * ch] + hg[:, ch : 2 * ch])
        n = torch.tanh(xg[:, 2 * ch :] + r * hg[:, 2 * ch :])
        return (1 - z) * n + z * h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [B, C, T, H, W] -> hidden states [B, Ch, T, H, W], from h = 0 at the first frame
        b, _, t, height, width = x.shape
        h = x.new_zeros(b, self.hidden_channels, height, width)
        outputs = []
        for i in range(t):
            h = self.cell(x[:, :, i], h)
            outputs.append(h)
        return torch.stack(outputs, dim=2)
