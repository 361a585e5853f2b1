"""Engine tests run tiny models: one intra-op thread avoids contention on small shared CPUs."""

import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))
