"""GRU and LSTM sequence classifiers: each image row is one time step, the last hidden state is classified."""

import torch
from torch import nn


class SequenceClassifier(nn.Module):
    """A batch-first recurrent layer over (batch, time, features), then a linear layer on the final state."""

    def __init__(self, cell: str, features: int, hidden: int = 128, num_classes: int = 10):
        super().__init__()
        self.rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell](features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c)
        return self.fc(h[-1])


def gru(features: int = 28) -> SequenceClassifier:
    return SequenceClassifier("gru", features)


def lstm(features: int = 28) -> SequenceClassifier:
    return SequenceClassifier("lstm", features)
