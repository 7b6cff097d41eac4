"""A user's own keyword-spotting-like network (not in microtrain's zoo): Conv1d over time.

Input [N, features, frames]; fed with 28x28 images whose rows are the frames and columns the
features (a spectrogram stored frame by frame). Used through the CLI as
``--arch tests/user_models/kws_conv1d.py:build --input-shape 1,28,28``.
"""

import torch.nn.functional as F
from torch import nn


class KeywordNet(nn.Module):
    def __init__(self, features: int = 28, classes: int = 10, width: int = 24):
        super().__init__()
        self.conv1 = nn.Conv1d(features, width, 5, padding=2)
        self.bn1 = nn.BatchNorm1d(width)
        self.dw = nn.Conv1d(width, width, 3, stride=2, padding=1, groups=width, bias=False)
        self.bn2 = nn.BatchNorm1d(width)
        self.pw = nn.Conv1d(width, width, 1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.hardtanh(self.bn2(self.dw(x)), 0.0, 4.0)
        x = F.relu(self.pw(x))
        return self.fc(x.mean(-1))


def build(classes: int = 10, width: int = 24) -> KeywordNet:
    return KeywordNet(classes=classes, width=width)
