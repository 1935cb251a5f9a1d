"""``preset=official``: our functions, with the official switches, reproduce numbers computed by the
official PASSION, ShaSpec and GMD code on fixed tensors (tests/fixtures/official, see its README),
to 1e-5; and the preset resolution (a preset fills only the switches the user left unset)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.distributed import on_two_gloo_ranks
from helpers.losses import pair_rows
from helpers.networks import DS_PLAN, IMPORTS, PLAIN_UNET, make_batch, nnunet_loss, plan_kwargs
from helpers.paths import OFFICIAL_FIXTURES
from nnunet_prism.losses.distillation import official_level_weights, pixel_distillation_loss
from nnunet_prism.losses.preference import (PreferenceState, batch_preference_gate, combine_distillation,
                                            pooled_relative_preference, unimodal_weights)
from nnunet_prism.losses.prototype import prototype_distillation
from nnunet_prism.losses.shaspec import cyclic_pairs, distribution_alignment_loss, domain_classification_loss
from nnunet_prism.networks.dynamic_sharing_unet import build_dynamic_sharing_unet
from nnunet_prism.networks.shaspec_unet import build_shaspec_unet, generate_missing
from nnunet_prism.training.gmd.backward import gmd_backward, pack_gradients
from nnunet_prism.training.gmd.decoupling import combine, project_conflicting
from nnunet_prism.training.hyperparameters import collect_presets, resolve
from nnunet_prism.training.hyperparameters.table import markdown_table
from nnunet_prism.training.trainers.nnUNetTrainerGMD import nnUNetTrainerDS, nnUNetTrainerGMD, subset_losses
from nnunet_prism.training.trainers.nnUNetTrainerPRISM import nnUNetTrainerPRISM
from nnunet_prism.training.trainers.nnUNetTrainerShaSpec import nnUNetTrainerShaSpec

pytestmark = pytest.mark.usefixtures("single_torch_thread")
FIXTURES = OFFICIAL_FIXTURES
TOL = 1e-5


def load(name):
    data = np.load(FIXTURES / f"{name}.npz")
    return {k: data[k] if data[k].dtype.kind == "U" else torch.from_numpy(np.asarray(data[k])) for k in data.files}


def assert_close(ours, reference, what):
    error = (torch.as_tensor(ours).double() - torch.as_tensor(reference).double()).abs().max().item()
    assert error <= TOL, f"{what}: max abs error {error:.3g}"


# -- PASSION (modality order flair, t1ce, t1, t2; the functions see modalities as columns only) --
@pytest.mark.parametrize("temperature", [4, 1])
def test_passion_pixel_kl_with_clamp_and_upsampled_probabilities(temperature):
    """temp_kl_loss_bs: KL(teacher || student) of probabilities clamped at 0.005, mean over classes
    and voxels; the deep-supervision case upsamples the PROBABILITIES (trilinear, align_corners)."""
    d = load("passion_temp_kl_loss")
    present = torch.ones(2, 1, dtype=torch.bool)
    (logit_s, logit_s_low), pairs = pair_rows([d["logit_s"][:, None], d["logit_s_low"][:, None]], present)
    common = dict(temperature=temperature, prob_floor=0.005, return_per_sample=True, pairs=pairs)
    _, full = pixel_distillation_loss(d["logit_t"], logit_s, present, ds_weights=[1.0], **common)
    assert_close(full, d[f"kl_bs_T{temperature}"], "kl_bs")
    assert_close(full.mean(), d[f"kl_T{temperature}"], "kl")
    # the low level alone (weight 1, the full level weight 0), upsampled x2 to the full resolution
    _, low = pixel_distillation_loss([d["logit_t"], d["logit_t_low"]], [logit_s, logit_s_low], present,
                                     ds_weights=[0.0, 1.0], upsample=True, **common)
    assert_close(low, d[f"kl_bs_upop_T{temperature}"], "kl_bs up_op")
    # the official level weights, unnormalised: full + 1/2 * prm1 at scale 1, then 1/4, 1/8, 1/16
    _, both = pixel_distillation_loss([d["logit_t"], d["logit_t_low"]], [logit_s, logit_s_low], present,
                                      upsample=True, **common)
    assert_close(both, 1.5 * d[f"kl_bs_T{temperature}"] + 0.25 * d[f"kl_bs_upop_T{temperature}"], "levels")
    assert official_level_weights(6) == [1.5, 0.25, 0.125, 0.0625, 0.0, 0.0]


@pytest.mark.parametrize("suffix", ["", "_absent"])
def test_passion_prototypes_over_the_classes_of_every_sample(suffix):
    """prototype_passion_loss_bs: with class 3 missing from sample 1 only, it is dropped for both."""
    d = load("passion_prototype_passion_loss")
    present = torch.ones(2, 1, dtype=torch.bool)
    feature_s, pairs = pair_rows(d["feature_s"][:, None], present)
    result = prototype_distillation(d["feature_t"], feature_s, d["labels" + suffix][:, None], present,
                                    num_classes=4, class_scope="batch", pairs=pairs)
    assert_close(result.loss, d["proto_loss_bs" + suffix], "proto_loss_bs")
    assert_close(result.gap, d["dist_bs" + suffix], "dist_bs")
    if not suffix:
        assert_close(result.loss.mean(), d["proto_loss"], "proto_loss")
        assert_close(result.gap.mean(), d["dist"], "dist")
    else:  # per sample (our default), sample 0 keeps class 3 and differs
        per_sample = prototype_distillation(d["feature_t"], feature_s, d["labels_absent"][:, None], present,
                                            num_classes=4, pairs=pairs)
        assert (per_sample.loss[0] - result.loss[0]).abs() > 1e-4


@pytest.mark.parametrize("case", ["idt", "pdt", "idt_warmup"])
def test_passion_iteration(case):
    """train.py's loss and relative-preference block: batch gate, weights and totals.

    Our combination is per sample with a mean over the batch; the official code sums over the
    batch with modal_weight mw = iter_per_epoch / modal_num, so E^m = beta * mw * B and the
    semantic coefficient mw * B (pdt: no modal weight). The unimodal losses enter as means over
    the samples with the modality (nnU-Net's loss on those rows)."""
    d = load("passion_iteration")
    c = {k.split("__", 1)[1]: v for k, v in d.items() if k.startswith(case + "__")}
    batch = c["mask"].shape[0]
    mw = d["modal_weight"] if case != "pdt" else torch.ones(4)
    beta = d["imb_beta"]
    distillation, stats = combine_distillation(c["kl_loss_m_bs"], c["proto_loss_m_bs"], c["dist_m_bs"], c["mask"],
                                               c["mask"], beta * mw * batch, 0.5, 0.1, omega_scope="batch",
                                               proto_coefficients=mw * batch)
    assert_close(distillation, 0.5 * c["kl_loss"] + 0.1 * c["proto_loss"], "0.5 kl + 0.1 proto")
    assert_close(-(stats["rp"] * stats["rp_valid"]).sum(0), c["rp_iter"], "rp_iter (= -sum RP)")
    assert stats["gate"].bool().tolist() == c["rp_mask"].tolist()
    assert torch.equal(batch_preference_gate(stats["rp"], stats["rp_valid"]), stats["gate"])

    warm_up = int(d["epoch"]) < int(c["region_fusion_start_epoch"])
    present = c["mask"].float()
    unimodal = (c["sep_loss_m_bs"] * present).sum(0) / present.sum(0).clamp(min=1)
    weights = unimodal_weights(c["mask"], beta * mw * batch, None if warm_up else stats["gate"])
    unimodal_loss = (weights * unimodal).sum()
    assert_close(unimodal_loss, c["sep_loss"], "sep_loss")
    # the segmentation losses fuse/prm are nnU-Net's in our trainers (out of scope): taken as given
    total = unimodal_loss + (0.0 if warm_up else 1.0) * (c["fuse_loss"] + c["prm_loss"] + distillation)
    assert_close(total, c["loss"], "loss")

    # epoch accumulator: idt divides by modal_num (ours: gap sums / (1 - FR^m), times N), pdt by
    # iter_per_epoch (all modalities always present: a common factor)
    n = 10
    rates = (1 - d["modal_num"] / n).tolist() if case != "pdt" else [0.0] * 4
    state = PreferenceState(rates, rule="official", rp_statistic="pooled_gap")
    state.update_batch(stats["rp"], stats["rp_valid"], c["dist_m_bs"])
    divisor = n if case != "pdt" else int(d["iter_per_epoch"])
    assert_close(state.epoch_gap() / divisor, c["epoch_dist_m"], "epoch_dist_m")


@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_passion_beta_update(case):
    """Per-epoch update: rp from pooled gaps, eta x1.5 at multiples of 100 (epoch 0 included),
    clamp then renormalise to norm 2, nothing before region_fusion_start_epoch (case c)."""
    d = load("passion_beta_update")
    start = int(d[f"{case}_region_fusion_start_epoch"]) if f"{case}_region_fusion_start_epoch" in d else 0
    state = PreferenceState([0.0] * 4, rule="official", gamma=float(d["eta0"]), rp_statistic="pooled_gap",
                            gamma_growth=float(d["eta_ext"]), start_epoch=start)
    state.beta = d[f"{case}_beta0"].double()
    state.E = state.fixed * state.beta
    for i, epoch in enumerate(d[f"{case}_epochs"].tolist()):
        state.gap_sum = d[f"{case}_epoch_dist_m"][i].double()  # FR = 0: the pooled gaps are the sums
        rp = state.end_epoch(epoch=epoch)
        assert_close(rp, d[f"{case}_rp_epoch"][i], f"rp_epoch at {epoch}")
        assert_close(pooled_relative_preference(d[f"{case}_epoch_dist_m"][i]), d[f"{case}_rp_epoch"][i], "rp")
        assert_close(state.beta, d[f"{case}_imb_beta"][i], f"imb_beta at {epoch}")
        assert_close(state.gamma * state.gamma_scale, d[f"{case}_eta"][i], f"eta at {epoch}")
        assert torch.allclose(state.E, state.fixed * state.beta)
    restored = PreferenceState([0.0] * 4)
    restored.load_state_dict(state.state_dict())
    assert (restored.gamma_scale, restored.start_epoch, restored.rp_statistic) == \
        (state.gamma_scale, start, "pooled_gap")


def test_preference_state_defaults_change_nothing_and_old_checkpoints_load():
    state = PreferenceState([0.2, 0.5], rule="official")
    state.update_batch(torch.tensor([[0.3, -0.3]]), torch.ones(1, 2, dtype=torch.bool), torch.tensor([[0.1, 0.2]]))
    old = state.state_dict()
    for key in ("rp_statistic", "gamma_growth", "start_epoch", "gamma_scale", "gap_sum"):
        old.pop(key)
    restored = PreferenceState([0.2, 0.5])
    restored.load_state_dict(old)
    assert torch.equal(restored.end_epoch(epoch=0), state.end_epoch(epoch=0))
    assert torch.equal(restored.E, state.E) and state.gamma_scale == 1.0


def test_batch_statistics_reduce_over_ranks_like_one_batch():
    """With batch_sum (DDP: a sum over ranks), rank A's classes and gate are those of A and B together."""
    g = torch.Generator().manual_seed(0)
    feats_t, feats_s = torch.randn(4, 5, 6, 6, generator=g), torch.randn(4, 2, 5, 6, 6, generator=g)
    labels = torch.randint(0, 3, (4, 1, 6, 6), generator=g)
    labels[3][labels[3] == 2] = 1  # class 2 absent from one sample of rank B only
    mask = torch.tensor([[True, True], [True, False], [True, True], [False, True]])
    rows, pairs = pair_rows(feats_s, mask)
    whole = prototype_distillation(feats_t, rows, labels, mask, num_classes=3, class_scope="batch", pairs=pairs)
    sent = []
    rows, pairs = pair_rows(feats_s[2:], mask[2:])
    prototype_distillation(feats_t[2:], rows, labels[2:], mask[2:], num_classes=3, class_scope="batch",
                           batch_sum=lambda t: sent.append(t) or t, pairs=pairs)
    rows, pairs = pair_rows(feats_s[:2], mask[:2])
    rank_a = prototype_distillation(feats_t[:2], rows, labels[:2], mask[:2], num_classes=3,
                                    class_scope="batch", batch_sum=lambda t: t + sent[0], pairs=pairs)
    assert torch.allclose(rank_a.loss, whole.loss[:2]) and torch.allclose(rank_a.gap, whole.gap[:2])
    rp = torch.tensor([[0.2, -0.2], [0.0, 0.0], [-0.5, 0.5], [0.0, 0.0]])
    valid = mask
    gate_whole = batch_preference_gate(rp, valid)
    sent_gate = torch.where(valid[2:], rp[2:], torch.zeros(2, 2)).sum(0)
    assert torch.equal(batch_preference_gate(rp[:2], valid[:2], lambda t: t + sent_gate), gate_whole)


# -- ShaSpec (modality order flair, t1, t1ce, t2 = ours; rows of the fixtures sample-major) -------
def test_shaspec_dao_is_the_sum_of_the_cyclic_pairs():
    d = load("shaspec_dao")
    n, m = int(d["N"]), int(d["C"])
    shared = d["shared_info"].reshape(n, m, *d["shared_info"].shape[1:])  # row n*C+m -> (n, m)
    everything = torch.ones(n, m, dtype=torch.bool)
    assert_close(distribution_alignment_loss(shared, everything, "cyclic_sum"), d["term_shared_cyclic"], "DAO")
    assert cyclic_pairs(4) == [(0, 1), (1, 2), (2, 3), (3, 0)]
    for (i, j), value in zip(d["pairs"].tolist(), d["pair_l1"]):
        assert_close(distribution_alignment_loss(shared[:, [i, j]], everything[:, :2]), value, f"pair {i},{j}")
    # ours (the mean over all present pairs) is the 6-pair sum / 6: about 4x weaker than the cyclic sum
    assert_close(6 * distribution_alignment_loss(shared, everything), d["term_shared_allpairs"], "all pairs")
    # the official DAO ignores the mask (absent modalities' features are the zero-image response)
    partial = torch.tensor([[True, False, True, True], [False, True, True, False]])
    assert_close(distribution_alignment_loss(shared, partial, "cyclic_sum"), d["term_shared_cyclic"], "masked")


def test_shaspec_dco_and_weighted_sum():
    d, dao = load("shaspec_dco"), load("shaspec_dao")
    n, m = int(dao["N"]), int(dao["C"])
    logits = F.linear(d["spec_gft"], d["weight"], d["bias"])
    assert_close(logits, d["spec_logits"], "domain classifier logits")
    domain_logits = logits.reshape(n, m, m)  # (B, M, M): sample-major rows, labels = modality index
    assert torch.equal(torch.arange(m).repeat(n), d["spec_labels"])
    dco, _, count = domain_classification_loss(domain_logits, torch.ones(n, m, dtype=torch.bool))
    assert_close(dco, d["term_spec"], "DCO") and int(count) == n * m
    shared = dao["shared_info"].reshape(n, m, *dao["shared_info"].shape[1:])
    total = float(dao["alpha"]) * distribution_alignment_loss(shared, torch.ones(n, m, dtype=torch.bool),
                                                              "cyclic_sum") + float(d["beta"]) * dco
    assert_close(total, d["weighted_sum"], "alpha DAO + beta DCO")


def test_missing_feature_from_the_first_present_modality():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(4, 3, 2, 5, generator=g)  # (M, B, C, *sp)
    mask = torch.tensor([[False, True, True, False], [True, False, False, True], [False, False, False, False]])
    filled = generate_missing(features, mask, first=True)
    assert torch.equal(filled[0, 0], features[1, 0]) and torch.equal(filled[3, 0], features[1, 0])
    assert torch.equal(filled[1, 1], features[0, 1]) and torch.equal(filled[2, 1], features[0, 1])
    assert torch.equal(filled[:, 2], generate_missing(features, mask)[:, 2]), "no present modality: mean rule"
    assert torch.equal(filled[1, 0], features[1, 0]), "present entries unchanged"


def test_shaspec_network_fill_rule_is_saved_with_the_weights():
    def build():
        torch.manual_seed(0)
        return build_shaspec_unet(PLAIN_UNET, plan_kwargs(3, False), IMPORTS, 4, 3, False, width=0.5).eval()

    network, x = build(), torch.randn(2, 4, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[False, True, True, False], [True, False, True, True]])
    with torch.no_grad():
        mean_rule = network(x, mask)
        network.fill_from_first.fill_(True)
        first_rule = network(x, mask)
    assert not torch.allclose(mean_rule, first_rule)
    state = network.state_dict()
    rebuilt = build()
    rebuilt.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(rebuilt(x, mask), first_rule)
    old = {k: v for k, v in state.items() if k != "fill_from_first"}
    legacy = build()
    legacy.load_state_dict(old)  # weights saved before the switch: mean rule
    assert not bool(legacy.fill_from_first)


# -- GMD ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gmd_project_conflicting", "gmd_project_conflicting_partial"])
@pytest.mark.parametrize("variant", ["noshuffle", "shuffle_seed0", "shuffle_seed1"])
def test_gmd_projection_order_and_merge(name, variant):
    """_project_conflicting: each g_i against all originals (itself included) in the recorded
    order; merge = mean where every task has a gradient, sum elsewhere."""
    d = load(name)
    orders = d[f"{variant}__orders"].tolist()
    projected = project_conflicting(d["grads"], order=orders, include_self=True)
    assert_close(projected, d[f"{variant}__pc_grads"], "pc_grads")
    assert_close(combine(projected, "official", d["has_grads"]), d[f"{variant}__merged"], "merged")
    if variant == "noshuffle":  # our other reductions differ exactly on the entries not every task has
        shared = d["has_grads"].bool().all(0)
        assert torch.allclose(combine(projected, "mean")[shared], d[f"{variant}__merged"][shared], atol=TOL)


def test_gmd_pc_backward_end_to_end():
    """Official MultiHeadTestNet: per-objective gradients (None -> 0, has 0), projection, merge."""
    d = load("gmd_pc_backward")
    torch.manual_seed(0)
    linear, head1, head2 = torch.nn.Linear(3, 2), torch.nn.Linear(2, 4), torch.nn.Linear(2, 4)
    params = [linear.weight, linear.bias, head1.weight, head1.bias, head2.weight, head2.bias]
    offsets = d["param_offsets"].tolist()
    with torch.no_grad():
        for p, a, b in zip(params, offsets[:-1], offsets[1:]):
            p.copy_(d["params0"][a:b].view_as(p))
    feat = linear(d["x"])
    out1, out2 = head1(feat), head2(feat)
    objectives = [F.mse_loss(out1, d["y"]), F.mse_loss(out2, -d["y"]), F.l1_loss(out1, -d["y"])]
    assert_close(torch.stack(objectives).detach(), d["objectives"], "objectives")
    grads, has = pack_gradients(params, objectives)
    assert_close(grads, d["grads"], "grads")
    assert torch.equal(has, d["has_grads"])
    projected = project_conflicting(grads, order=[[0, 1, 2]] * 3, include_self=True)
    merged = combine(projected, "official", has)
    assert_close(merged, d["merged"], "merged")
    assert_close(merged, d["final_param_grads"], "final p.grad")


def test_gmd_official_backward_equals_separate_full_backward_passes():
    """reduction='official' on the DS network: per-subset gradients of ALL parameters (encoders
    of the subset's modalities marked as reached), projected with self and merged like the fixtures."""
    def network():
        torch.manual_seed(0)
        return build_dynamic_sharing_unet(PLAIN_UNET, DS_PLAN, IMPORTS, 4, 3, enable_deep_supervision=True)

    x, target = make_batch(3)
    mask = torch.tensor([[True, True, False, True], [True, False, True, True]])
    subsets = torch.tensor([[True, False, False, False], [False, True, True, False], [True, True, True, True]])
    loss = nnunet_loss()
    used = (mask[None] & subsets[:, None]).any(1)

    net = network()
    skips = net.encode(x)
    losses = subset_losses(loss, net.decode(skips), target, mask, subsets)
    modality = torch.tensor([m for m, e in enumerate(net.encoders) for _ in e.parameters()])
    gmd_backward(net.shared_parameters(), net.modality_parameters(), skips, losses, reduction="official",
                 generator=torch.Generator().manual_seed(5), include_self=True, specific_used=used[:, modality])
    ours = torch.cat([p.grad.reshape(-1) for p in [*net.shared_parameters(), *net.modality_parameters()]])

    ref = network()
    params = [*ref.shared_parameters(), *ref.modality_parameters()]
    ref_losses = subset_losses(loss, ref.decode(ref.encode(x)), target, mask, subsets)
    grads, _ = pack_gradients(params, ref_losses)
    has = torch.cat([torch.ones(len(subsets), sum(p.numel() for p in ref.shared_parameters())),
                     torch.repeat_interleave(used[:, modality].float(),
                                             torch.tensor([p.numel() for p in ref.modality_parameters()]), dim=1)], 1)
    projected = project_conflicting(grads, generator=torch.Generator().manual_seed(5), include_self=True)
    expected = combine(projected, "official", has)
    assert torch.allclose(ours, expected, atol=1e-6, rtol=1e-5)
    encoder_2 = sum(p.numel() for p in list(ref.encoders[:2].parameters()))
    mean_of_all = projected.mean(0)
    assert not torch.allclose(expected[-encoder_2:], mean_of_all[-encoder_2:]), "encoders: sum, not mean"


# -- the preset ----------------------------------------------------------------------------------
@pytest.mark.parametrize("trainer", [nnUNetTrainerPRISM, nnUNetTrainerShaSpec, nnUNetTrainerGMD])
def test_preset_official_sets_every_switch_and_an_explicit_value_wins(trainer):
    paper = resolve(trainer, {}, known_trainers=[])
    official = resolve(trainer, {"preset": "official"}, known_trainers=[])
    switches = collect_presets(trainer)["official"]
    assert paper["preset"] == "paper" and official["preset"] == "official"
    for name, value in switches.items():
        assert official[name] == value
    assert {k for k in switches if paper[k] != switches[k]}, "the preset changes today's defaults"
    name = next(k for k in switches if paper[k] != switches[k])
    mine = resolve(trainer, {"preset": "official", trainer.__name__: {name: paper[name]}}, known_trainers=[])
    assert mine[name] == paper[name], "an explicit value (here in the trainer's section) wins"
    assert all(mine[k] == v for k, v in switches.items() if k != name)
    assert {k: v for k, v in official.items() if k not in switches and k != "preset"} == \
        {k: v for k, v in paper.items() if k not in switches and k != "preset"}


def test_preset_values_and_table():
    assert collect_presets(nnUNetTrainerPRISM)["official"]["kl_prob_floor"] == 0.005
    assert resolve(nnUNetTrainerDS, {"preset": "official"}, known_trainers=[])["gradient_mode"] == "sum"
    table = markdown_table([nnUNetTrainerPRISM, nnUNetTrainerShaSpec, nnUNetTrainerGMD])
    row = next(line for line in table.splitlines() if "`omega_scope`" in line)
    assert "`sample`; preset official: `batch`" in row
    assert sum("`preset`" in line for line in table.splitlines()) == 1


# -- DDP: the official batch statistics over a real 2-process gloo group --------------------------
def _official_terms(logits_t, logits_s, feats_t, feats_s, labels, mask, batch_sum=None):
    from nnunet_prism.losses.preference import prism_distillation_loss
    students, pairs = pair_rows([logits_s, logits_s[..., ::2, ::2]], mask)
    feature_rows, _ = pair_rows(feats_s, mask)
    return prism_distillation_loss([logits_t, logits_t[..., ::2, ::2]], students, feats_t, feature_rows, labels, mask,
                                   torch.ones(2), num_classes=3, class_scope="batch", omega_scope="batch",
                                   upsample=True, prob_floor=0.005, batch_sum=batch_sum, pairs=pairs)


def _ddp_inputs():
    g = torch.Generator().manual_seed(0)
    logits_t, logits_s = torch.randn(4, 3, 6, 6, generator=g), torch.randn(4, 2, 3, 6, 6, generator=g)
    feats_t, feats_s = torch.randn(4, 5, 6, 6, generator=g), torch.randn(4, 2, 5, 6, 6, generator=g)
    labels = torch.randint(0, 3, (4, 1, 6, 6), generator=g)
    labels[3][labels[3] == 2] = 1  # rank 1 lacks class 2 in one sample: dropped on rank 0 too
    mask = torch.tensor([[True, True], [True, False], [True, True], [False, True]])
    return logits_t, logits_s, feats_t, feats_s, labels, mask


def _on_rank(rank):
    from nnunet_prism.training.distributed import reduce_preference_state, sum_over_ranks

    rows = slice(2 * rank, 2 * rank + 2)
    _, stats = _official_terms(*(t[rows] for t in _ddp_inputs()), batch_sum=sum_over_ranks)
    state = PreferenceState([0.2, 0.5], rule="official", rp_statistic="pooled_gap")
    state.update_batch(stats["rp"], stats["rp_valid"], stats["gap"])
    reduce_preference_state(state, torch.device("cpu"))
    return stats["gap"].tolist(), stats["gate"].tolist(), state.end_epoch(epoch=0).tolist(), state.E.tolist()


@pytest.mark.ddp
def test_official_batch_statistics_over_two_gloo_ranks(tmp_path):
    results = on_two_gloo_ranks(_on_rank, tmp_path)
    _, stats = _official_terms(*_ddp_inputs())
    single = PreferenceState([0.2, 0.5], rule="official", rp_statistic="pooled_gap")
    single.update_batch(stats["rp"], stats["rp_valid"], stats["gap"])
    rp = single.end_epoch(epoch=0)
    _, local = _official_terms(*(t[:2] for t in _ddp_inputs()))
    assert not torch.allclose(local["gap"], stats["gap"][:2]), "the example needs the other rank's classes"
    gaps = torch.tensor(results[0][0] + results[1][0])
    assert torch.allclose(gaps, stats["gap"], atol=1e-6), "classes of the whole batch, on every rank"
    assert results[0][1] == results[1][1] == stats["gate"].tolist(), "one gate from the whole batch"
    for rank in (0, 1):
        assert torch.allclose(torch.tensor(results[rank][2], dtype=torch.float64), rp, atol=1e-6)
        assert torch.allclose(torch.tensor(results[rank][3], dtype=torch.float64), single.E, atol=1e-6)
