"""A user's own image classifier (not in microtrain's zoo): two branches concatenated, max and
average pooling, explicit zero padding.

Used by tests/test_byom_window_ops.py through the CLI, as
``--arch tests/user_models/branch_pool.py:BranchPoolNet``.
"""

import torch
import torch.nn.functional as F
from torch import nn


class BranchPoolNet(nn.Module):
    def __init__(self, classes: int = 10, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)                          # 28 -> 14
        self.branch1 = nn.Conv2d(width, width, 1)
        self.pad = nn.ZeroPad2d(1)
        self.branch3 = nn.Conv2d(width, width, 3)            # padded 16 -> 14
        self.avg = nn.AvgPool2d(3, stride=2, padding=1)      # 14 -> 7
        self.head = nn.Conv2d(2 * width, 2 * width, 1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.pool(self.stem(x))
        y = torch.cat([torch.relu(self.branch1(x)), torch.relu(self.branch3(self.pad(x)))], dim=1)
        y = F.max_pool2d(F.pad(self.avg(y), (0, 1, 0, 1)), 2)  # 7 -> 8 -> 4
        return self.fc(self.head(y).mean((2, 3)))
