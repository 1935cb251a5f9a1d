"""``nnunet_prism doctor --cuda`` on a machine without a GPU: one clear line, non-zero exit."""
import pytest
import torch

from nnunet_prism import cli


@pytest.mark.parametrize("vram", [[], ["--vram", "8"]], ids=["plain", "vram"])
def test_doctor_cuda_without_a_gpu_fails_with_one_line(monkeypatch, capsys, vram):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["doctor", "--cuda", "-d", "137", "-c", "3d_fullres", *vram]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "doctor --cuda" in lines[0]
    assert captured.out == ""  # nothing else was attempted


def test_doctor_cuda_needs_a_dataset(monkeypatch, capsys):
    from nnunet_prism.commands import doctor
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(doctor.discovery, "list_trainers", lambda: [])
    assert cli.main(["doctor", "--cuda"]) == 2
    assert "-d ID" in capsys.readouterr().err
