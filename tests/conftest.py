"""Test-wide settings."""

import torch

# The tests use small tensors, where thread start-up costs more than it saves; one thread also keeps
# them quick when the machine's two cores are busy.
torch.set_num_threads(1)
