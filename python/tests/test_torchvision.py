"""torchvision 0.29.2 is installed without its deps (built for torch 2.14; PyPI has none for our 2.15): its import,
its compiled ops and the transformers image processors that switch to it when it is present all work on 2.15."""

from __future__ import annotations

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import extension
from torchvision.ops import nms
from torchvision.transforms.v2 import functional as F


def test_torchvision_imports_with_its_compiled_ops_on_this_torch():
    assert torchvision.__version__.startswith("0.29.2") and torch.__version__.startswith("2.15")
    assert extension._has_ops()
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]
    assert F.resize(torch.rand(3, 40, 30), [20, 15]).shape == (3, 20, 15)


def test_the_image_processors_the_pipelines_use_run_on_the_torchvision_backend():
    from transformers import CLIPImageProcessor, Qwen2VLImageProcessor, SiglipImageProcessor

    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    clip = CLIPImageProcessor()(images=picture, return_tensors="pt")
    assert clip["pixel_values"].shape == (1, 3, 224, 224)
    siglip = SiglipImageProcessor()(images=picture, return_tensors="pt")
    assert siglip["pixel_values"].shape[:2] == (1, 3)
    qwen = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=384 * 384, patch_size=14, merge_size=2, temporal_patch_size=2)(images=picture, return_tensors="pt")
    assert qwen["image_grid_thw"].tolist() == [[1, 4, 6]]
