"""MultiEncoderUNet: built from plans that nnU-Net's own planners produce, checked against
nnU-Net's own network, masked fusion, and the stacked unimodal pass."""
import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers.networks import IMPORTS, PLAIN_UNET, small_plain_kwargs
from nnunet_prism.networks import MultiModalOutput, build_multi_encoder_unet, default_encoder_width

NUM_MODALITIES = 4
NUM_CLASSES = 4
PLANNERS = {"nnUNetPlans": "ExperimentPlanner", "nnUNetResEncUNetMPlans": "nnUNetPlannerResEncM"}
CONFIGURATIONS = [(plans, cfg) for plans in PLANNERS for cfg in ("2d", "3d_fullres")]


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _write_raw_dataset(folder):
    """Two random 4-channel cases (32x40x36) with labels 0..3, in nnU-Net's raw layout."""
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for case in range(2):
        for channel in range(NUM_MODALITIES):
            image = sitk.GetImageFromArray(rng.random((32, 40, 36)).astype(np.float32))
            sitk.WriteImage(image, str(folder / "imagesTr" / f"case{case}_{channel:04d}.nii.gz"))
        label = sitk.GetImageFromArray(rng.integers(0, NUM_CLASSES, (32, 40, 36)).astype(np.uint8))
        sitk.WriteImage(label, str(folder / "labelsTr" / f"case{case}.nii.gz"))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {str(i): name for i, name in enumerate(("FLAIR", "T1", "T1c", "T2"))},
        "labels": {"background": 0, "a": 1, "b": 2, "c": 3},
        "numTraining": 2, "file_ending": ".nii.gz"}))


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """{(plans name, configuration): ConfigurationManager} from nnU-Net's default and ResEnc-M
    planners run on a tiny raw dataset (fingerprint + planning only, no preprocessing)."""
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset, plan_experiments
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    class FewSamplesFingerprintExtractor(DatasetFingerprintExtractor):
        """nnU-Net's extractor sampling 1e4 instead of 1e8 intensities (seconds, not a minute)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.num_foreground_voxels_for_intensitystats = 1e4

    root = tmp_path_factory.mktemp("nnunet")
    _write_raw_dataset(root / "nnUNet_raw" / "Dataset990_Tiny")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (root / name).mkdir(exist_ok=True)
            mp.setenv(name, str(root / name))
        extract_fingerprint_dataset(990, FewSamplesFingerprintExtractor, num_processes=1, verbose=False,
                                    show_progress_bar=False)
        for planner in PLANNERS.values():
            plan_experiments([990], planner)
    folder = root / "nnUNet_preprocessed" / "Dataset990_Tiny"
    return {(name, cfg): PlansManager(str(folder / f"{name}.json")).get_configuration(cfg)
            for name, cfg in CONFIGURATIONS}


def build(cm, deep_supervision=True, **kwargs):
    network = build_multi_encoder_unet(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                       cm.network_arch_init_kwargs_req_import, NUM_MODALITIES, NUM_CLASSES,
                                       deep_supervision, **kwargs)
    return network.eval()


def nnunet_network(cm, deep_supervision=True):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                  cm.network_arch_init_kwargs_req_import, NUM_MODALITIES, NUM_CLASSES,
                                  deep_supervision=deep_supervision).eval()


def patch(cm, batch=2, full_size=False, seed=0):
    """Random input (batch, M, *spatial): the plan's patch size, or a smaller one that every
    plan here accepts (16^3 / 32^2) to keep the behavioural tests fast on CPU."""
    size = cm.patch_size if full_size else (16,) * 3 if len(cm.patch_size) == 3 else (32, 32)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((batch, NUM_MODALITIES, *size), generator=generator)


def shapes(logits):
    return [tuple(t.shape) for t in logits] if isinstance(logits, list) else tuple(logits.shape)


def assert_close(a, b, atol):
    a, b = (a, b) if isinstance(a, list) else ([a], [b])
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


def run_counting_flops(network, x):
    """(network(x), FLOPs of that call)."""
    with FlopCounterMode(display=False) as counter:
        out = network(x)
    return out, counter.get_total_flops()


@pytest.mark.parametrize("plans_name, configuration", CONFIGURATIONS)
@torch.no_grad()
def test_shapes_match_nnunet_network_built_from_the_same_plans(plans, plans_name, configuration):
    cm = plans[(plans_name, configuration)]
    ours, theirs = build(cm), nnunet_network(cm)
    x = patch(cm, batch=1, full_size=True)
    (ours_out, ours_flops), (theirs_out, theirs_flops) = (run_counting_flops(n, x) for n in (ours, theirs))
    assert shapes(ours_out) == shapes(theirs_out)
    assert len(ours_out) == len(cm.pool_op_kernel_sizes) - 1

    n_ours, n_theirs = (sum(p.numel() for p in n.parameters()) for n in (ours, theirs))
    print(f"\n{plans_name} {configuration} patch {cm.patch_size}: params {n_ours:,} vs nnU-Net {n_theirs:,} "
          f"({n_ours / n_theirs:.2f}x); FLOPs/sample {ours_flops:,} vs {theirs_flops:,} "
          f"({ours_flops / theirs_flops:.2f}x); conv feature map size "
          f"{ours.compute_conv_feature_map_size(cm.patch_size):,} vs "
          f"{theirs.compute_conv_feature_map_size(cm.patch_size):,}")
    assert 0.8 < n_ours / n_theirs < 1.25 and 0.8 < ours_flops / theirs_flops < 1.25


@pytest.mark.parametrize("plans_name, configuration", CONFIGURATIONS)
@torch.no_grad()
def test_deep_supervision_switch(plans, plans_name, configuration):
    cm = plans[(plans_name, configuration)]
    ours, theirs = build(cm), nnunet_network(cm)
    x = patch(cm)
    ours.decoder.deep_supervision = theirs.decoder.deep_supervision = False
    assert isinstance(ours(x), torch.Tensor)
    assert shapes(ours(x)) == shapes(theirs(x)) == (2, NUM_CLASSES, *x.shape[2:])
    ours.decoder.deep_supervision = True
    assert isinstance(ours(x), list) and shapes(ours(x))[0] == (2, NUM_CLASSES, *x.shape[2:])


def test_default_width_halves_encoders_for_four_modalities(plans):
    cm = plans[("nnUNetPlans", "3d_fullres")]
    network = build(cm)
    assert default_encoder_width(NUM_MODALITIES) == 0.5
    full = cm.network_arch_init_kwargs["features_per_stage"]
    assert list(network.encoders[0].output_channels) == [f // 2 for f in full]
    assert list(build(cm, encoder_width=1.0).encoders[3].output_channels) == list(full)


@pytest.mark.parametrize("plans_name, configuration",
                         [("nnUNetPlans", "3d_fullres"), ("nnUNetResEncUNetMPlans", "2d")])
@torch.no_grad()
def test_absent_modality_values_do_not_change_the_output(plans, plans_name, configuration):
    cm = plans[(plans_name, configuration)]
    network = build(cm)
    x = patch(cm)
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    reference = network(x, mask)
    perturbed = x.clone()
    perturbed[0, 1] = 1000 * torch.randn_like(perturbed[0, 1])
    perturbed[0, 3] = float("nan")
    perturbed[1, :2] = -7.0
    assert_close(network(perturbed, mask), reference, atol=1e-6)
    present_changed = x.clone()
    present_changed[0, 0] += 1.0
    assert not torch.allclose(network(present_changed, mask)[0][0], reference[0][0])


@torch.no_grad()
def test_no_mask_means_all_zero_channels_are_absent(plans):
    cm = plans[("nnUNetPlans", "2d")]
    network = build(cm)
    x = patch(cm)
    x[0, 2] = 0
    x[1, 0] = 0
    mask = torch.tensor([[True, True, False, True], [False, True, True, True]])
    assert_close(network(x), network(x, mask), atol=0)
    assert_close(network.forward_all(x).fused, network(x, mask), atol=1e-5)  # same sums, different order


@pytest.mark.parametrize("plans_name, configuration",
                         [("nnUNetPlans", "3d_fullres"), ("nnUNetResEncUNetMPlans", "2d")])
@torch.no_grad()
def test_stacked_unimodal_outputs_equal_separate_single_modality_forwards(plans, plans_name, configuration):
    cm = plans[(plans_name, configuration)]
    network = build(cm)
    x = patch(cm)
    x[1, 3] = 0  # absent in sample 1: its unimodal entry is not computed (zeros)
    out = network.forward_all(x)
    assert isinstance(out, MultiModalOutput)
    assert out.modality_mask.tolist() == [[True] * 4, [True, True, True, False]]
    assert_close(out.fused, network(x), atol=1e-5)
    features = cm.network_arch_init_kwargs["features_per_stage"][0]
    assert out.fused_features.shape == (2, features, *x.shape[2:])
    assert out.unimodal_features.shape == (2, NUM_MODALITIES, features, *x.shape[2:])
    for m in range(NUM_MODALITIES):
        only_m = torch.zeros(2, NUM_MODALITIES, dtype=torch.bool)
        only_m[:, m] = True
        present = out.modality_mask[:, m]
        assert_close([t[present] for t in out.unimodal_logits(m)],
                     [t[present] for t in network(x, only_m)], atol=5e-5)  # batch-size float noise
        assert shapes(out.unimodal_logits(m)) == shapes(out.fused)
    assert all(not t[1, 3].any() for t in out.unimodal) and not out.unimodal_features[1, 3].any()
    # the compact rows behind the dense view: 7 present pairs, modality-major
    assert out.modalities.tolist() == [0, 0, 1, 1, 2, 2, 3] and out.samples.tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert out.student_features.shape == (7, features, *x.shape[2:])
    assert out.student_rows(3).tolist() == [6]
    assert torch.equal(out.students[0][6], out.unimodal[0][0, 3])


@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
@torch.no_grad()
def test_decoder_features_are_the_input_of_the_full_resolution_segmentation_layer(plans, configuration):
    """PRISM's prototypes use ``fused_features`` / ``student_features``: in 2d and 3d they are the
    feature maps the last segmentation layer turns into the full-resolution logits."""
    cm = plans[("nnUNetPlans", configuration)]
    network = build(cm)
    x = patch(cm)
    x[0, 2] = 0
    out = network.forward_all(x)
    seg_layer = network.decoder.seg_layers[-1]
    assert_close(seg_layer(out.fused_features), out.fused[0], atol=1e-5)
    assert_close(seg_layer(out.student_features), out.students[0], atol=1e-5)


@torch.no_grad()
def test_forward_all_without_deep_supervision(plans):
    cm = plans[("nnUNetResEncUNetMPlans", "2d")]
    network = build(cm, deep_supervision=False)
    x = patch(cm)
    out = network.forward_all(x)
    assert isinstance(out.fused, torch.Tensor) and out.fused.shape == (2, NUM_CLASSES, *x.shape[2:])
    assert out.unimodal.shape == (2, NUM_MODALITIES, NUM_CLASSES, *x.shape[2:])
    assert_close(out.fused, network(x), atol=1e-5)
    only_t1 = torch.tensor([[False, True, False, False]] * 2)
    assert_close(out.unimodal_logits(1), network(x, only_t1), atol=1e-5)


@pytest.mark.parametrize("plans_name", list(PLANNERS))
def test_all_zero_patch_gives_finite_output_and_gradients(plans, plans_name):
    cm = plans[(plans_name, "3d_fullres")]
    network = build(cm).train()
    x = patch(cm)
    x[0] = 0  # outside the body: no modality present
    out = network.forward_all(x)
    assert out.modality_mask[0].sum() == 0
    for logits in (out.fused, out.unimodal):
        assert all(torch.isfinite(t).all() for t in logits)
    assert shapes(out.fused) == shapes(nnunet_network(cm)(x))
    sum(t.square().mean() for t in out.fused + out.unimodal).backward()
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)
    with torch.no_grad():
        assert torch.isfinite(network.eval()(torch.zeros_like(x))[0]).all()
        from nnunet_prism.modalities import subset_masks
        subsets = network.forward_subsets(torch.zeros_like(x), torch.as_tensor(subset_masks(NUM_MODALITIES)))
        assert subsets.shape[:2] == (2, 15) and torch.isfinite(subsets).all()


def test_state_dict_is_stable_and_reloads(plans):
    cm = plans[("nnUNetResEncUNetMPlans", "3d_fullres")]
    first, second = build(cm), build(cm)
    keys = {k: v.shape for k, v in first.state_dict().items()}
    assert keys == {k: v.shape for k, v in second.state_dict().items()}
    assert not any(k.startswith("decoder.encoder") for k in keys)  # no duplicated encoder
    second.load_state_dict(first.state_dict())
    x = patch(cm, batch=1)
    with torch.no_grad():
        assert_close(second(x), first(x), atol=0)


def test_user_errors_are_value_errors(plans):
    cm = plans[("nnUNetPlans", "2d")]
    with pytest.raises(ValueError, match="ResidualUNet"):
        build_multi_encoder_unet("dynamic_network_architectures.architectures.unet.ResidualUNet",
                                 cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import, 4, 4)
    network = build(cm)
    x = patch(cm)
    with pytest.raises(ValueError, match="3 channels"):
        network(x[:, :3])
    with pytest.raises(ValueError, match="shape"):
        network(x, torch.ones(2, 3, dtype=torch.bool))


def small_plain_unet(decoder_convs: int, deep_supervision: bool):
    """A 3-modality, 2-class MultiEncoderUNet of that plan, in eval mode."""
    return build_multi_encoder_unet(PLAIN_UNET, small_plain_kwargs(decoder_convs), IMPORTS, 3, 2,
                                    enable_deep_supervision=deep_supervision).eval()


@torch.no_grad()
def test_student_rows_map_to_the_pairs_of_a_hand_made_mask():
    """Rows are the present (sample, modality) pairs, modality-major; the dense view is zero
    elsewhere; every row equals its modality alone through the network."""
    torch.manual_seed(0)
    net = small_plain_unet(decoder_convs=1, deep_supervision=True)
    x = torch.randn(3, 3, 16, 16, 16)  # absent channels hold data too: the explicit mask decides
    mask = torch.tensor([[True, False, True], [True, True, False], [False, False, True]])
    out = net.forward_all(x, mask)
    assert out.modalities.tolist() == [0, 0, 1, 2, 2] and out.samples.tolist() == [0, 1, 1, 0, 2]
    assert [t.tolist() for t in out.pairs] == [[0, 1, 1, 0, 2], [0, 0, 1, 2, 2]]
    assert [out.student_rows(m).tolist() for m in range(3)] == [[0, 1], [2], [3, 4]]
    assert [t.shape[0] for t in out.students] == [5, 5] and out.student_features.shape[0] == 5
    row_of = {(b, m): r for r, (b, m) in enumerate(zip(out.samples.tolist(), out.modalities.tolist()))}
    dense, dense_features = out.unimodal, out.unimodal_features
    assert [tuple(t.shape[:3]) for t in dense] == [(3, 3, 2)] * 2
    for b in range(3):
        for m in range(3):
            if (b, m) in row_of:
                assert all(torch.equal(d[b, m], s[row_of[b, m]]) for d, s in zip(dense, out.students))
                assert torch.equal(dense_features[b, m], out.student_features[row_of[b, m]])
            else:
                assert not any(d[b, m].any() for d in dense) and not dense_features[b, m].any(), (b, m)
    for m in range(3):
        rows = out.student_rows(m)
        only_m = torch.zeros(3, 3, dtype=torch.bool)
        only_m[:, m] = True
        alone = net(x, only_m)
        assert_close([s[rows] for s in out.students], [a[out.samples[rows]] for a in alone], atol=5e-5)


def test_forward_subsets_equals_separate_forwards():
    from nnunet_prism.modalities import subset_masks
    torch.manual_seed(0)
    net = small_plain_unet(decoder_convs=1, deep_supervision=True)
    x = torch.randn(2, 3, 16, 16, 16)
    x[1, 2] = 0  # modality 2 absent in sample 1
    masks = torch.as_tensor(subset_masks(3))
    with torch.no_grad():
        together = net.forward_subsets(x, masks)
        assert together.shape == (2, 7, 2, 16, 16, 16)
        available = x.flatten(2).abs().amax(2) > 0
        for s, m in enumerate(masks):
            separate = net(x, m[None].expand(2, -1) & available)[0]
            assert torch.allclose(together[:, s], separate, atol=1e-5)
        assert torch.allclose(net(x, return_all=True).fused[0], net(x)[0], atol=1e-5)


@pytest.mark.parametrize("plans_name, configuration",
                         [("nnUNetPlans", "3d_fullres"), ("nnUNetResEncUNetMPlans", "2d")])
@torch.no_grad()
def test_forward_subsets_from_real_plans_equals_separate_forwards(plans, plans_name, configuration):
    from nnunet_prism.modalities import subset_masks
    cm = plans[(plans_name, configuration)]
    network = build(cm, deep_supervision=False).eval()
    x = patch(cm)
    x[0, 1] = 0  # T1 absent in sample 0: subsets made only of T1 fuse nothing there
    masks = torch.as_tensor(subset_masks(NUM_MODALITIES))
    together = network.forward_subsets(x, masks)
    available = x.flatten(2).abs().amax(2) > 0
    for s, m in enumerate(masks):
        assert_close(together[:, s], network(x, m[None].expand(2, -1) & available), atol=5e-5)


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_decode_mixtures_equals_decoding_projected_mixed_skips(deep_supervision):
    """The linear shortcut (projection folded into the first convolutions, mixing after them) is
    exact, also for rows whose weights sum to 0 (conv biases), and keeps the gradients."""
    from nnunet_prism.networks.decoding import decode_mixtures, decode_with_features, mix_rows
    torch.manual_seed(1)
    net = small_plain_unet(decoder_convs=2, deep_supervision=deep_supervision)
    for p in net.decoder.parameters():  # non-zero biases everywhere
        p.data.normal_()
    projections = [torch.nn.Conv3d(c // 2, c, 1, bias=False) for c in [8, 16, 32]]
    skips = [torch.randn(3, c // 2, *(16 // 2 ** i,) * 3) for i, c in enumerate([8, 16, 32])]
    weights = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3], [0, 0, 0], [0, 1.0, 0]])
    parameters = list(net.decoder.parameters()) + [p.weight for p in projections]

    def outputs_and_gradients(decode):
        logits, features = decode()
        logits = logits if deep_supervision else [logits]
        loss = sum((t * torch.randn_like(t, generator=torch.Generator().manual_seed(i))).sum()
                   for i, t in enumerate(logits + [features]))
        gradients = torch.autograd.grad(loss, parameters, allow_unused=True)  # unused: seg layers without DS
        return logits + [features], [g for g in gradients if g is not None]

    expected = outputs_and_gradients(lambda: decode_with_features(
        net.decoder, [project(mix_rows(weights, s)) for project, s in zip(projections, skips)]))
    shortcut = outputs_and_gradients(lambda: decode_mixtures(net.decoder, skips, weights, projections))
    for a, b in zip(shortcut[0], expected[0]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert len(shortcut[1]) == len(expected[1])
    for a, b in zip(shortcut[1], expected[1]):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("plans_name, configuration", [("nnUNetPlans", "3d_fullres"), ("nnUNetResEncUNetMPlans", "2d")])
def test_every_network_built_from_plans_satisfies_the_protocols(plans, plans_name, configuration):
    """All three networks: ``forward(x, modality_mask=None)`` and ``forward_subsets``; only the
    multi-encoder network has ``forward_all``. (runtime_checkable checks names, so the
    signatures are checked here as well.)"""
    import inspect

    from nnunet_prism.networks import FusedAndUnimodal, MissingModalityNetwork, SubsetEvaluable
    from nnunet_prism.networks.dynamic_sharing_unet import build_dynamic_sharing_unet
    from nnunet_prism.networks.shaspec_unet import build_shaspec_unet

    cm = plans[(plans_name, configuration)]
    arch = (cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
            NUM_MODALITIES, NUM_CLASSES, True)
    networks = {"multi-encoder": build_multi_encoder_unet(*arch), "ShaSpec": build_shaspec_unet(*arch),
                "dynamic sharing": build_dynamic_sharing_unet(*arch)}
    for name, network in networks.items():
        assert isinstance(network, MissingModalityNetwork), name
        assert isinstance(network, SubsetEvaluable), name
        forward = inspect.signature(network.forward).parameters
        assert list(forward)[:2] == ["x", "modality_mask"] and forward["modality_mask"].default is None, name
        subsets = inspect.signature(network.forward_subsets).parameters
        assert list(subsets)[:3] == ["x", "subset_masks", "modality_mask"], name
        assert isinstance(network, FusedAndUnimodal) == (name == "multi-encoder"), name
