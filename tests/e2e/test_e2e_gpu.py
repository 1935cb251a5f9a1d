"""On a CUDA machine: ``nnunet_prism doctor --cuda`` runs one AMP training step, one validation
step and one sliding-window prediction of nnU-Net's trainer and of every nnunet_prism trainer at
the synthetic region set's plans (skipped where torch sees no CUDA device)."""
import re

import pytest

from helpers.cli import cli
from nnunet_prism.training.registry import trainer_names


@pytest.mark.gpu
def test_doctor_cuda_steps_every_trainer_on_the_gpu(region_dataset):
    r = cli("doctor", "--cuda", "-d", region_dataset.dataset_id, "-c", "3d_fullres", env=region_dataset.env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    stepped = re.findall(r"^  ok   (\S+): batch \d+ x [\dx]+; train ", r.stdout, re.M)
    assert stepped == ["nnUNetTrainer", *trainer_names()], r.stdout[-3000:]
    assert "FAIL" not in r.stdout
