"""Shared test settings: offline, deterministic, small."""

import os

# Never wait on hub retries: a weight that is not cached must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def micro_images():
    """A small batch of [0, 1] RGB images at the micro backbone's input size."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 32, 32, generator=generator)
