"""M2DN unit tests: training masks, masked forward process, network shapes, learning, sampler,
metrics, and imputation geometry (on a tiny hand-made model folder, no nnU-Net run)."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_prism.m2dn import M2DNet, MaskedDiffusion, sample_training_masks
from nnunet_prism.m2dn.evaluation import evaluation_subsets, psnr, ssim, summarise
from nnunet_prism.m2dn.inference import mean_of_present, synthesise_volume, zero_fill
from nnunet_prism.modalities import ModalityError, all_subsets

SMALL = dict(encoder_channels=4, widths=(8, 16), time_dim=16)


pytestmark = pytest.mark.usefixtures("single_torch_thread")  # tiny tensors: one thread is fastest


def test_training_masks_cover_every_proper_subset_and_never_full_or_empty():
    g = torch.Generator().manual_seed(0)
    for M in (2, 3, 4):
        masks = sample_training_masks(torch.ones(4000, M, dtype=torch.bool), g)
        assert masks.any(dim=1).all() and not masks.all(dim=1).any()
        seen = {tuple(np.flatnonzero(m).tolist()) for m in masks.numpy()}
        expected = {s for s in all_subsets(M) if len(s) < M}
        assert seen == expected
        # uniform: every subset about 1 / (2^M - 2) of the draws
        _, counts = np.unique(masks.numpy(), axis=0, return_counts=True)
        assert len(counts) == len(expected) and counts.min() > 0.6 * 4000 / len(expected)


def test_training_masks_stay_inside_recorded_availability():
    available = torch.tensor([[True, False, True, True], [False, False, True, False], [True, True, True, True]])
    masks = sample_training_masks(available.repeat(300, 1), torch.Generator().manual_seed(1))
    assert not (masks & ~available.repeat(300, 1)).any()
    assert masks.any(dim=1).all() and not masks.all(dim=1).any()
    with pytest.raises(ModalityError):
        sample_training_masks(torch.zeros(2, 4, dtype=torch.bool))


def test_present_modalities_are_never_noised():
    diffusion = MaskedDiffusion(1000)
    x0 = torch.randn(6, 4, 8, 8)
    present = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 1], [1, 0, 0, 0], [0, 0, 1, 0], [1, 1, 0, 1], [0, 1, 0, 0]]).bool()
    for t in (0, 500, 999):
        x_t = diffusion.q_sample(x0, present, torch.full((6,), t), torch.randn_like(x0))
        assert torch.equal(x_t[present], x0[present])
        assert not torch.allclose(x_t[~present], x0[~present])
    # at the last step the missing channels are almost pure noise
    noise = torch.randn_like(x0)
    x_T = diffusion.q_sample(x0, present, torch.full((6,), 999), noise)
    assert torch.corrcoef(torch.stack([x_T[~present].flatten(), noise[~present].flatten()]))[0, 1] > 0.99


@pytest.mark.parametrize("M", [2, 3, 4])
def test_network_shapes(M):
    net = M2DNet(M, **SMALL)
    x = torch.randn(3, M, 21, 34)  # not a multiple of the down-sampling factor
    present = torch.zeros(3, M, dtype=torch.bool)
    present[:, 0] = True
    out = net(x, present, torch.tensor([0, 10, 999]))
    assert out.shape == x.shape
    # the availability mask conditions the output
    other = present.clone()
    other[:, -1] = True
    assert not torch.allclose(out, net(x, other, torch.tensor([0, 10, 999])))
    with pytest.raises(ValueError):
        M2DNet(1)


def test_a_few_training_iterations_lower_the_loss():
    torch.manual_seed(0)
    M = 3
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    base = torch.stack([torch.exp(-((yy - c) ** 2 + xx ** 2) * 4) for c in torch.linspace(-0.5, 0.5, 8)])
    x0 = torch.stack([base, 2 * base - 0.5, -base], dim=1)  # 8 slices, 3 correlated modalities
    net = M2DNet(M, **SMALL)
    diffusion = MaskedDiffusion(100)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    available = torch.ones(8, M, dtype=torch.bool)

    def evaluate():
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(np.mean([diffusion.training_loss(net, x0, available, sample_training_masks(available, g),
                                                          generator=g).item() for _ in range(10)]))

    before = evaluate()
    g = torch.Generator().manual_seed(5)
    for _ in range(40):
        loss = diffusion.training_loss(net, x0, available, sample_training_masks(available, g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert evaluate() < 0.5 * before


def test_ddim_sampler_keeps_present_channels_and_is_seeded():
    net = M2DNet(3, **SMALL).eval()
    diffusion = MaskedDiffusion(1000)
    assert diffusion.timesteps(10)[0] == 999 and diffusion.timesteps(10)[-1] == 0 and len(diffusion.timesteps(10)) == 10
    assert diffusion.timesteps(1) == [999]
    x = torch.randn(2, 3, 12, 12)
    present = torch.tensor([[True, False, False], [False, True, True]])
    a = diffusion.sample(net, x, present, num_steps=4, seed=7)
    b = diffusion.sample(net, x, present, num_steps=4, seed=7)
    c = diffusion.sample(net, x, present, num_steps=4, seed=8)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(a[present], x[present])
    with pytest.raises(ModalityError):
        diffusion.sample(net, x, torch.zeros(2, 3, dtype=torch.bool))


def test_volume_synthesis_and_baselines():
    net = M2DNet(3, **SMALL).eval()
    images = np.random.default_rng(0).normal(size=(3, 5, 10, 10)).astype(np.float32)
    region = np.zeros((5, 10, 10), dtype=bool)
    region[:, 2:8, 2:8] = True
    present = np.array([True, False, True])
    out = synthesise_volume(net, MaskedDiffusion(50), images, present, num_steps=2, batch_size=2, region=region)
    assert np.array_equal(out[present], images[present]) and np.all(out[1][~region] == 0)
    assert not np.allclose(out[1], images[1])
    assert np.all(zero_fill(images, present)[1] == 0)
    assert np.allclose(mean_of_present(images, present)[1], (images[0] + images[2]) / 2)


def test_metrics():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4, 32, 32)).astype(np.float32)
    region = np.ones_like(ref, dtype=bool)
    assert ssim(ref, ref, region) == pytest.approx(1.0)
    assert psnr(ref, ref + 0.01, region) > psnr(ref, ref + 0.1, region)
    # PSNR definition: 10 log10(R^2 / MSE)
    R = ref.max() - ref.min()
    assert psnr(ref, ref + 0.1, region) == pytest.approx(10 * np.log10(R ** 2 / 0.01), rel=1e-4)
    assert ssim(ref, ref + rng.normal(size=ref.shape).astype(np.float32), region) < 0.6
    assert evaluation_subsets(np.array([True, False, True])) == [(0,), (2,)]
    rows = [{"present": (0,), "missing": (1,), "method": m, "psnr": p, "ssim": 0.5, "modality": 1, "case": "a"}
            for m, p in (("M2DN", 20.0), ("zero fill", 10.0), ("mean of present", 12.0))]
    table = summarise(rows, ["A", "B"])
    assert table[0]["present"] == "A" and table[0]["missing (scored)"] == "B" and table[0]["PSNR M2DN"] == 20.0
    assert table[-1]["present"] == "average"


def _model_folder(tmp_path, M=2):
    """A model folder as M2DNTrainer writes it, with a small untrained network and nnU-Net-like plans."""
    from nnunet_prism.m2dn.training import MODEL_NAME

    root = tmp_path / "results" / f"{MODEL_NAME}__nnUNetPlans__2d"
    (root / "fold_0").mkdir(parents=True)
    config = {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
              "batch_size": 2, "patch_size": [16, 16, 16], "median_image_size_in_voxels": [16, 16, 16],
              "spacing": [1.0, 1.0, 1.0], "normalization_schemes": ["ZScoreNormalization"] * M,
              "use_mask_for_norm": [True] * M, "resampling_fn_data": "resample_data_or_seg_to_shape",
              "resampling_fn_seg": "resample_data_or_seg_to_shape",
              "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
              "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
              "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
              "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
              "architecture": {}, "batch_dice": False}
    plans = {"dataset_name": "Dataset999_T", "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": [1, 1, 1],
             "original_median_shape_after_transp": [16, 16, 16], "image_reader_writer": "SimpleITKIO",
             "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "configurations": {"3d_fullres": config},
             "experiment_planner_used": "x", "label_manager": "LabelManager",
             "foreground_intensity_properties_per_channel": {str(c): {"mean": 100.0 + c, "std": 20.0} for c in range(M)}}
    dataset_json = {"channel_names": {str(c): f"MOD{c}" for c in range(M)}, "labels": {"background": 0, "a": 1},
                    "file_ending": ".nii.gz", "numTraining": 1}
    (root / "plans.json").write_text(json.dumps(plans))
    (root / "dataset.json").write_text(json.dumps(dataset_json))
    net = M2DNet(M, **SMALL)
    state = {"network_weights": net.state_dict(),
             "config": {"network": net.config, "diffusion": {"num_timesteps": 50}, "configuration": "3d_fullres",
                        "modalities": [f"MOD{c}" for c in range(M)], "dataset_name": "Dataset999_T",
                        "plans_identifier": "nnUNetPlans", "fold": "0", "held_out": []}}
    torch.save(state, root / "fold_0" / "checkpoint_final.pth")
    return root / "fold_0" / "checkpoint_final.pth"


def _write(array, path, spacing, origin, direction):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))


def test_impute_writes_only_absent_files_and_keeps_geometry(tmp_path):
    from nnunet_prism.m2dn.imputation import RECORD_FILE, impute_folder

    checkpoint = _model_folder(tmp_path, M=2)
    src = tmp_path / "in"
    src.mkdir()
    spacing, origin = (1.2, 0.9, 1.5), (-10.0, 5.0, 3.0)
    direction = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    vol = np.zeros((12, 14, 13), dtype=np.float32)  # (z, y, x)
    vol[2:10, 3:11, 2:11] = np.random.default_rng(0).uniform(50, 150, size=(8, 8, 9))
    _write(vol, src / "caseA_0000.nii.gz", spacing, origin, direction)       # caseA: MOD1 absent
    _write(vol, src / "caseB_0000.nii.gz", spacing, origin, direction)       # caseB: complete
    _write(vol * 2, src / "caseB_0001.nii.gz", spacing, origin, direction)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = tmp_path / "out"
    record = impute_folder(src, out, checkpoint, num_steps=2, progress=lambda s: None)
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # input untouched
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["caseA_0000.nii.gz", "caseA_0001.nii.gz", "caseB_0000.nii.gz", "caseB_0001.nii.gz", RECORD_FILE])
    for name in ("caseA_0000.nii.gz", "caseB_0000.nii.gz", "caseB_0001.nii.gz"):
        assert (out / name).read_bytes() == (src / name).read_bytes()  # present files copied unchanged
    assert record["cases"]["caseA"]["synthesised"] == ["MOD1"] and record["cases"]["caseB"]["synthesised"] == []
    assert json.loads((out / RECORD_FILE).read_text())["cases"]["caseA"]["present"] == ["MOD0"]
    ref, synth = sitk.ReadImage(str(src / "caseA_0000.nii.gz")), sitk.ReadImage(str(out / "caseA_0001.nii.gz"))
    assert synth.GetSize() == ref.GetSize()
    assert np.allclose(synth.GetSpacing(), ref.GetSpacing()) and np.allclose(synth.GetOrigin(), ref.GetOrigin())
    assert np.allclose(synth.GetDirection(), ref.GetDirection())
    array = sitk.GetArrayFromImage(synth)
    assert np.all(array[vol == 0] == 0) and np.any(array[vol > 0] != 0)   # only inside the present brain
    # written back in the dataset's intensity range (foreground mean 101, std 20), not z-scores
    assert 40 < np.mean(array[vol > 0]) < 160


def test_impute_rejects_case_without_modality_and_in_place_output(tmp_path):
    from nnunet_prism.m2dn.imputation import impute_folder

    checkpoint = _model_folder(tmp_path, M=2)
    src = tmp_path / "in"
    src.mkdir()
    _write(np.zeros((6, 6, 6), np.float32), src / "caseZ_0000.nii.gz", (1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(ModalityError, match="caseZ"):
        impute_folder(src, tmp_path / "out", checkpoint, num_steps=1, progress=lambda s: None)
    with pytest.raises(ModalityError, match="input folder"):
        impute_folder(src, src, checkpoint, num_steps=1, progress=lambda s: None)


def test_cli_unknown_dataset_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from nnunet_prism.cli import main

    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    assert main(["m2dn", "impute", "-d", "Dataset979_Nowhere", "-f", "0", "-i", str(tmp_path), "-o",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Dataset979_Nowhere" in err
