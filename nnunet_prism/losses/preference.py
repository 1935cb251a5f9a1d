"""Preference-aware regularisation and the combined PRISM distillation objective
(PASSION, ACM MM 2024, preference-aware regularisation and overall objective).

- relative preference  RP_n^m = 1 - D_n^m / mean_{m' present} D_n^{m'}
- task-level mask      omega_n^m = 1[RP_n^m < 0]    (lagging modalities get L_proto)
- gradient-level weight E^m, initialised 1/(1 - FR^m), after every epoch
                       E^m <- E^m - gamma * mean_n RP_n^m
- objective            sum_{m present} lambda1 E^m L_pixel^m + lambda2 omega^m L_proto^m
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from nnunet_prism.deep_supervision import Logits
from nnunet_prism.losses.distillation import DEFAULT_TEMPERATURE, pixel_distillation_loss
from nnunet_prism.losses.prototype import prototype_distillation

#: Update rate gamma of E^m (official code: eta = 0.01).
DEFAULT_GAMMA = 0.01
#: Weight lambda1 of the pixel-wise distillation (official code: 0.5).
DEFAULT_LAMBDA_PIXEL = 0.5
#: Weight lambda2 of the semantic (prototype) distillation (official code: 0.1).
DEFAULT_LAMBDA_PROTO = 0.1
#: Official-code variant: bounds of beta and the L2 norm it is renormalised to (for M = 4).
OFFICIAL_BETA_BOUNDS = (0.1, 4.0)
OFFICIAL_BETA_NORM = 2.0

RULES = ("paper", "official")
RP_STATISTICS = ("mean_rp", "pooled_gap")
SCOPES = ("sample", "batch")


def relative_preference(gap: torch.Tensor, modality_mask: torch.Tensor,
                        valid: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Relative preference RP of every present modality in every sample.

    Shapes: gap D (B, M), modality_mask (B, M) bool, valid (B, M) bool (from
    :func:`prototype_distillation`; None = all) -> rp (B, M) float32, rp_valid (B, M) bool.
    Formula: RP_n^m = 1 - D_n^m / Dbar_n, Dbar_n = mean of D_n^m over the modalities present
    (PASSION, ACM MM 2024, relative preference).
    Defined only where the modality is present, the entry is valid and Dbar_n > 0; elsewhere
    RP = 0 and rp_valid is False (such entries must not count in means). Detached.
    """
    gap = gap.detach().float()
    use = modality_mask.to(device=gap.device, dtype=torch.bool)
    if valid is not None:
        use = use & valid.to(device=gap.device, dtype=torch.bool)
    count = use.sum(1, keepdim=True)
    mean_gap = torch.where(use, gap, torch.zeros_like(gap)).sum(1, keepdim=True) / count.clamp(min=1)
    rp_valid = use & (mean_gap > 0)
    rp = torch.where(rp_valid, 1 - gap / torch.where(mean_gap > 0, mean_gap, torch.ones_like(mean_gap)),
                     torch.zeros_like(gap))
    return rp, rp_valid


def preference_mask(rp: torch.Tensor, rp_valid: torch.Tensor) -> torch.Tensor:
    """omega (B, M) float32: 1 where RP < 0 (the modality lags behind the others), else 0.

    Formula: omega_n^m = 1[RP_n^m < 0] (PASSION, ACM MM 2024, task-wise regularisation): the
    semantic distillation is switched ON for lagging modalities (as the official code does).
    """
    return ((rp < 0) & rp_valid.to(torch.bool)).float()


def batch_preference_gate(rp: torch.Tensor, rp_valid: torch.Tensor,
                          batch_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """(M,) float32: 1 where the batch sum of RP is negative (official PASSION code's ``rp_mask``).

    The official code sums RP-like terms d/a - 1 = -RP over the batch and gates with
    ``rp_iter > 0``; that is 1[sum_n RP_n^m < 0] over the samples where RP is defined.
    batch_sum (DDP: the sum over ranks) makes the batch that of all ranks.
    """
    total = torch.where(rp_valid.to(torch.bool), rp, torch.zeros_like(rp)).sum(0)
    return ((total if batch_sum is None else batch_sum(total)) < 0).float()


def pooled_relative_preference(epoch_gap: torch.Tensor) -> torch.Tensor:
    """(M,) RP of the epoch from pooled gaps d (M,): 1 - d^m / mean_m' d^m' (official PASSION
    code, ``rp_epoch = (avg - d) / avg`` with the mean over ALL modalities); 0 when every d is 0."""
    d = torch.as_tensor(epoch_gap, dtype=torch.float64)
    mean = d.mean()
    return (mean - d) / mean if bool(mean > 0) else torch.zeros_like(d)


def unimodal_weights(modality_mask: torch.Tensor, coefficients: torch.Tensor,
                     gate: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(M,) weights of the unimodal segmentation losses l^m (each a mean over the samples with m)
    that give the official PASSION code's ``sum_m gate^m * beta^m * modal_weight^m * sum_n l_n^m``.

    weight^m = gate^m * E^m * (samples with m) / B, E^m = 1/(1-FR^m) * beta^m (the official code's
    modal_weight = iter_per_epoch / modal_num equals B^-1 / (1-FR^m) when an epoch is one pass).
    gate: the batch preference gate (M,) (None: no gate, the official warm-up).
    """
    mask = modality_mask.to(torch.bool)
    share = mask.float().sum(0) / mask.shape[0]
    weights = coefficients.detach().to(device=share.device, dtype=share.dtype) * share
    return weights if gate is None else weights * gate.to(weights)


def initial_coefficients(missing_rates: Sequence[float]) -> torch.Tensor:
    """E^m_0 = 1 / (1 - FR^m), (M,) float64; FR^m in [0, 1) (every modality seen at least once)."""
    fr = torch.as_tensor(missing_rates, dtype=torch.float64).flatten()
    if fr.numel() == 0 or bool(((fr < 0) | (fr >= 1)).any()) or bool(torch.isnan(fr).any()):
        raise ValueError(f"missing rates must lie in [0, 1) for every modality, got {fr.tolist()}")
    return 1.0 / (1.0 - fr)


class PreferenceState:
    """Training-time state of the gradient-level regularisation: the coefficients E^m.

    Holds E (M,), the fixed part 1/(1-FR^m), beta (M,) (official rule) and the running epoch
    sums rp_sum (M,) and rp_count (M,) of RP over the samples where it is defined. All CPU
    float64, so checkpoints restore exactly.

    rule="paper" (default): E^m <- E^m - gamma * mean RP^m, E^m_0 = 1/(1-FR^m) (method text);
    E is additionally kept >= ``e_min`` (default 0; the text has no bound, but a negative
    weight would reward divergence from the teacher; None disables it).
    rule="official": E^m = 1/(1-FR^m) * beta^m with beta_0 = 1 and
    beta <- clamp(beta - gamma * mean RP, 0.1, 4), then beta <- beta_norm * beta / ||beta||_2
    (official PASSION code; beta_norm defaults to sqrt(M), which is its 2 for M = 4 and keeps
    the all-ones start fixed for other M).
    The epoch's RP: rp_statistic="mean_rp" (default) is the mean of the per-sample RP (method
    text); "pooled_gap" is the official code's 1 - d^m / mean_m' d^m' of the epoch's pooled
    knowledge gaps d^m = sum of D over the samples with m / number of training cases with m
    (:func:`pooled_relative_preference`; ``gap_sum`` accumulates the sums).
    Official schedule (``end_epoch(epoch=...)``): before ``start_epoch`` (the official warm-up
    ``region_fusion_start_epoch``) E does not move; from it on, gamma is multiplied by
    ``gamma_growth`` at every epoch that is a multiple of 100 (epoch 0 included; official 1.5)
    before the update. Defaults (0, 1.0) change nothing.
    DDP: ``accumulators()`` gives the (2, M) tensor [rp_sum; rp_count] to all-reduce (SUM)
    and ``set_accumulators`` loads the result, before ``end_epoch``; ``gap_sum`` (M,) is
    summed the same way.
    """

    def __init__(self, missing_rates: Sequence[float], rule: str = "paper",
                 gamma: float = DEFAULT_GAMMA, e_min: Optional[float] = 0.0,
                 beta_bounds: Tuple[float, float] = OFFICIAL_BETA_BOUNDS,
                 beta_norm: Optional[float] = None, rp_statistic: str = "mean_rp",
                 gamma_growth: float = 1.0, start_epoch: int = 0):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if rp_statistic not in RP_STATISTICS:
            raise ValueError(f"rp_statistic must be one of {RP_STATISTICS}, got {rp_statistic!r}")
        self.rp_statistic = rp_statistic
        self.gamma_growth = float(gamma_growth)
        self.start_epoch = int(start_epoch)
        self.gamma_scale = 1.0
        self.rule = rule
        self.gamma = float(gamma)
        self.e_min = None if e_min is None else float(e_min)
        self.beta_bounds = (float(beta_bounds[0]), float(beta_bounds[1]))
        self.fixed = initial_coefficients(missing_rates)
        m = self.fixed.numel()
        self.beta_norm = math.sqrt(m) if beta_norm is None else float(beta_norm)
        self.beta = torch.ones(m, dtype=torch.float64)
        self.E = self.fixed.clone()
        self.rp_sum = torch.zeros(m, dtype=torch.float64)
        self.rp_count = torch.zeros(m, dtype=torch.float64)
        self.gap_sum = torch.zeros(m, dtype=torch.float64)
        self.epochs = 0

    @property
    def num_modalities(self) -> int:
        return self.E.numel()

    def coefficients(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """E (M,) as a tensor for the loss (a copy; no gradient)."""
        return self.E.to(device=device, dtype=dtype)

    def update_batch(self, rp: torch.Tensor, valid: torch.Tensor, gap: Optional[torch.Tensor] = None) -> None:
        """Add one batch: rp (B, M) and valid (B, M) bool from :func:`relative_preference`, and
        the knowledge gaps D (B, M) for the pooled statistic."""
        rp = rp.detach().to(device="cpu", dtype=torch.float64)
        valid = valid.detach().to(device="cpu", dtype=torch.bool)
        if rp.shape != valid.shape or rp.shape[-1] != self.num_modalities:
            raise ValueError(f"rp {tuple(rp.shape)} and valid {tuple(valid.shape)} must both be "
                             f"(B, {self.num_modalities})")
        self.rp_sum += torch.where(valid, rp, torch.zeros_like(rp)).sum(0)
        self.rp_count += valid.sum(0).to(torch.float64)
        if gap is not None:
            gap = gap.detach().to(device="cpu", dtype=torch.float64)
            self.gap_sum += torch.where(valid, gap, torch.zeros_like(gap)).sum(0)

    def epoch_gap(self) -> torch.Tensor:
        """(M,) pooled gaps of the epoch: gap_sum / (1 - FR^m), which is the official code's
        ``epoch_dist_m`` (gap sums over the number of training cases with m) times the number of
        training cases (a common factor, which RP does not see)."""
        return self.gap_sum * self.fixed

    def epoch_rp(self) -> torch.Tensor:
        """(M,) the epoch's RP by ``rp_statistic``: mean per-sample RP, or the pooled-gap RP."""
        return self.mean_rp() if self.rp_statistic == "mean_rp" else pooled_relative_preference(self.epoch_gap())

    def mean_rp(self) -> torch.Tensor:
        """mean RP^m = rp_sum / rp_count over the epoch so far, (M,); 0 where nothing was counted."""
        return torch.where(self.rp_count > 0, self.rp_sum / self.rp_count.clamp(min=1),
                           torch.zeros_like(self.rp_sum))

    def accumulators(self) -> torch.Tensor:
        """(2, M) float64 copy [rp_sum; rp_count]: all-reduce it (SUM), then ``set_accumulators``."""
        return torch.stack([self.rp_sum, self.rp_count])

    def set_accumulators(self, reduced: torch.Tensor) -> None:
        """Load the all-reduced (2, M) [rp_sum; rp_count] (any device/dtype)."""
        reduced = reduced.detach().to(device="cpu", dtype=torch.float64)
        if reduced.shape != (2, self.num_modalities):
            raise ValueError(f"expected accumulators of shape (2, {self.num_modalities}), "
                             f"got {tuple(reduced.shape)}")
        self.rp_sum, self.rp_count = reduced[0].clone(), reduced[1].clone()

    def end_epoch(self, gamma: Optional[float] = None, epoch: Optional[int] = None) -> torch.Tensor:
        """Update E from this epoch's RP (``epoch_rp``), reset the sums, return that RP (M,).

        A modality never counted this epoch has mean RP 0 and keeps its E (paper rule).
        ``epoch`` (the epoch that ends; default: epochs ended so far) drives the official
        schedule: no update before ``start_epoch``, gamma grown at multiples of 100.
        """
        epoch = self.epochs if epoch is None else int(epoch)
        mean_rp = self.epoch_rp()
        self.rp_sum = torch.zeros_like(self.rp_sum)
        self.rp_count = torch.zeros_like(self.rp_count)
        self.gap_sum = torch.zeros_like(self.gap_sum)
        self.epochs += 1
        if epoch < self.start_epoch:
            return mean_rp
        if epoch % 100 == 0:
            self.gamma_scale *= self.gamma_growth
        gamma = (self.gamma if gamma is None else float(gamma)) * self.gamma_scale
        if self.rule == "paper":
            self.E = self.E - gamma * mean_rp
            if self.e_min is not None:
                self.E = self.E.clamp(min=self.e_min)
        else:
            beta = (self.beta - gamma * mean_rp).clamp(*self.beta_bounds)
            self.beta = self.beta_norm * beta / beta.norm()
            self.E = self.fixed * self.beta
        return mean_rp

    def state_dict(self) -> dict:
        return {"rule": self.rule, "gamma": self.gamma, "e_min": self.e_min,
                "beta_bounds": self.beta_bounds, "beta_norm": self.beta_norm,
                "fixed": self.fixed.clone(), "beta": self.beta.clone(), "E": self.E.clone(),
                "rp_sum": self.rp_sum.clone(), "rp_count": self.rp_count.clone(),
                "epochs": self.epochs, "rp_statistic": self.rp_statistic, "gamma_growth": self.gamma_growth,
                "start_epoch": self.start_epoch, "gamma_scale": self.gamma_scale, "gap_sum": self.gap_sum.clone()}

    def load_state_dict(self, state: dict) -> None:
        fixed = torch.as_tensor(state["fixed"], dtype=torch.float64)
        if fixed.numel() != self.num_modalities:
            raise ValueError(f"checkpointed preference state has {fixed.numel()} modalities, "
                             f"this training has {self.num_modalities}")
        self.rule = state["rule"]
        self.gamma = float(state["gamma"])
        self.e_min = state["e_min"]
        self.beta_bounds = tuple(state["beta_bounds"])
        self.beta_norm = float(state["beta_norm"])
        self.fixed = fixed.clone()
        for key in ("beta", "E", "rp_sum", "rp_count"):
            setattr(self, key, torch.as_tensor(state[key], dtype=torch.float64).clone())
        self.epochs = int(state["epochs"])
        # keys added with the official schedule; checkpoints written before have their neutral values
        self.rp_statistic = state.get("rp_statistic", "mean_rp")
        self.gamma_growth = float(state.get("gamma_growth", 1.0))
        self.start_epoch = int(state.get("start_epoch", 0))
        self.gamma_scale = float(state.get("gamma_scale", 1.0))
        self.gap_sum = torch.as_tensor(state.get("gap_sum", torch.zeros(self.num_modalities)),
                                       dtype=torch.float64).clone()


def prism_distillation_loss(teacher_logits: Logits, student_logits: Logits,
                            teacher_features: torch.Tensor, student_features: torch.Tensor,
                            target: Logits,
                            modality_mask: torch.Tensor, coefficients: torch.Tensor,
                            region_based: bool = False,
                            ds_weights: Optional[Sequence[float]] = None,
                            temperature: float = DEFAULT_TEMPERATURE,
                            lambda_pixel: float = DEFAULT_LAMBDA_PIXEL,
                            lambda_proto: float = DEFAULT_LAMBDA_PROTO,
                            *, pairs: Tuple[torch.Tensor, torch.Tensor],
                            omega_scope: str = "sample",
                            proto_coefficients: Optional[torch.Tensor] = None,
                            batch_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                            **kwargs) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """The PRISM distillation objective (added to the segmentation loss by the trainer).

    Shapes: logits as in :func:`pixel_distillation_loss` (per level (B, C, *s) and
    (P, C, *s)); features (B, F, *s) and (P, F, *s) and target as in
    :func:`prototype_distillation`; the students are one row per present (sample, modality)
    pair, ``pairs`` = (samples, modalities) (P,) each (``MultiModalOutput``'s ``students``,
    ``student_features`` and ``pairs``); modality_mask (B, M) bool; coefficients E (M,)
    (``PreferenceState.coefficients()``).
    Formula: L = 1/B sum_n sum_{m: C_nm = 1} (lambda1 E^m L_pixel^{n,m} + lambda2 omega_n^m L_proto^{n,m})
    (PASSION, ACM MM 2024, overall objective).
    Reduction: per-sample sum over present modalities, mean over the batch (equals the official
    code at its batch size 1; E^m = 1/(1-FR^m) then exactly offsets how often m is present).
    kwargs go to :func:`prototype_distillation` (num_classes, include_background, class_scope,
    ...) and ``prob_floor``/``class_reduction``/``upsample`` to :func:`pixel_distillation_loss`
    (``recompute_rows``, activation checkpointing of the per-pair terms, to both);
    ``omega_scope`` and ``proto_coefficients`` to :func:`combine_distillation`. ``batch_sum``
    (DDP: a sum over ranks) is used for the batch-level statistics (batch classes, batch gate).
    Returns total (scalar) and detached stats: 'pixel' and 'proto' (M,) means over the samples
    with m present / valid, 'gap', 'rp', 'rp_valid', 'omega' (B, M), 'mean_rp' (M,) batch mean,
    'gate' (M,) the batch preference gate (feed 'rp', 'rp_valid' and 'gap' to
    ``PreferenceState.update_batch``).
    """
    pixel_kwargs = {k: kwargs.pop(k) for k in ("prob_floor", "class_reduction", "upsample") if k in kwargs}
    pixel_kwargs["recompute_rows"] = kwargs.get("recompute_rows")
    mask = modality_mask.to(dtype=torch.bool)
    _, pixel = pixel_distillation_loss(teacher_logits, student_logits, mask, ds_weights,
                                       temperature, region_based, return_per_sample=True,
                                       pairs=pairs, **pixel_kwargs)
    proto = prototype_distillation(teacher_features, student_features, target, mask,
                                   region_based, pairs=pairs, batch_sum=batch_sum, **kwargs)
    return combine_distillation(pixel, proto.loss, proto.gap, proto.valid, mask.to(pixel.device), coefficients,
                                lambda_pixel, lambda_proto, omega_scope, proto_coefficients, batch_sum)


def combine_distillation(pixel: torch.Tensor, proto_loss: torch.Tensor, gap: torch.Tensor,
                         proto_valid: torch.Tensor, modality_mask: torch.Tensor, coefficients: torch.Tensor,
                         lambda_pixel: float = DEFAULT_LAMBDA_PIXEL, lambda_proto: float = DEFAULT_LAMBDA_PROTO,
                         omega_scope: str = "sample", proto_coefficients: Optional[torch.Tensor] = None,
                         batch_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                         ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """The per-sample terms (B, M) (L_pixel, L_proto, D and where L_proto is defined) combined
    into the objective and the stats of :func:`prism_distillation_loss`.

    total = 1/B sum_n sum_m (lambda1 E^m L_pixel^{n,m} + lambda2 P^m omega_n^m L_proto^{n,m}),
    P^m = ``proto_coefficients`` (None: 1; the official code weights the semantic loss by the
    modality's data weight 1/(1-FR^m)).
    omega_scope="sample": omega_n^m = 1[RP_n^m < 0] (the method text); "batch" (official code):
    omega_n^m = 1[sum_n RP_n^m < 0] for every sample of the batch (:func:`batch_preference_gate`).
    """
    if omega_scope not in SCOPES:
        raise ValueError(f"omega_scope must be one of {SCOPES}, got {omega_scope!r}")
    mask = modality_mask.to(device=pixel.device, dtype=torch.bool)
    rp, rp_valid = relative_preference(gap, mask, proto_valid)
    gate = batch_preference_gate(rp, rp_valid, batch_sum)
    omega = preference_mask(rp, rp_valid) if omega_scope == "sample" else gate.view(1, -1) * proto_valid.float()
    e = coefficients.detach().to(device=pixel.device, dtype=pixel.dtype).view(1, -1)
    semantic = proto_loss if proto_coefficients is None else \
        proto_coefficients.detach().to(device=pixel.device, dtype=pixel.dtype).view(1, -1) * proto_loss
    per_sample = lambda_pixel * e * pixel + lambda_proto * omega * semantic  # 0 where absent
    total = per_sample.sum(1).mean()

    def mean_over(values, where):
        where = where.to(values.dtype)
        return (values.detach() * where).sum(0) / where.sum(0).clamp(min=1)

    stats = {"pixel": mean_over(pixel, mask), "proto": mean_over(proto_loss, proto_valid),
             "gap": gap, "rp": rp, "rp_valid": rp_valid, "omega": omega,
             "mean_rp": mean_over(rp, rp_valid), "gate": gate}
    return total, stats
