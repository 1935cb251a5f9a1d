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
from typing import Dict, Optional, Sequence, Tuple

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
    the all-ones start fixed for other M). Both rules use the method text's mean RP (mean of
    per-sample RP); the official code derives it from epoch-mean D and also grows its step
    x1.5 every 100 epochs, which we do not reproduce.
    DDP: ``accumulators()`` gives the (2, M) tensor [rp_sum; rp_count] to all-reduce (SUM)
    and ``set_accumulators`` loads the result, before ``end_epoch``.
    """

    def __init__(self, missing_rates: Sequence[float], rule: str = "paper",
                 gamma: float = DEFAULT_GAMMA, e_min: Optional[float] = 0.0,
                 beta_bounds: Tuple[float, float] = OFFICIAL_BETA_BOUNDS,
                 beta_norm: Optional[float] = None):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
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
        self.epochs = 0

    @property
    def num_modalities(self) -> int:
        return self.E.numel()

    def coefficients(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """E (M,) as a tensor for the loss (a copy; no gradient)."""
        return self.E.to(device=device, dtype=dtype)

    def update_batch(self, rp: torch.Tensor, valid: torch.Tensor) -> None:
        """Add one batch: rp (B, M) and valid (B, M) bool from :func:`relative_preference`."""
        rp = rp.detach().to(device="cpu", dtype=torch.float64)
        valid = valid.detach().to(device="cpu", dtype=torch.bool)
        if rp.shape != valid.shape or rp.shape[-1] != self.num_modalities:
            raise ValueError(f"rp {tuple(rp.shape)} and valid {tuple(valid.shape)} must both be "
                             f"(B, {self.num_modalities})")
        self.rp_sum += torch.where(valid, rp, torch.zeros_like(rp)).sum(0)
        self.rp_count += valid.sum(0).to(torch.float64)

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

    def end_epoch(self, gamma: Optional[float] = None) -> torch.Tensor:
        """Update E from this epoch's mean RP, reset the sums, return that mean RP (M,).

        A modality never counted this epoch has mean RP 0 and keeps its E (paper rule).
        """
        gamma = self.gamma if gamma is None else float(gamma)
        mean_rp = self.mean_rp()
        if self.rule == "paper":
            self.E = self.E - gamma * mean_rp
            if self.e_min is not None:
                self.E = self.E.clamp(min=self.e_min)
        else:
            beta = (self.beta - gamma * mean_rp).clamp(*self.beta_bounds)
            self.beta = self.beta_norm * beta / beta.norm()
            self.E = self.fixed * self.beta
        self.rp_sum = torch.zeros_like(self.rp_sum)
        self.rp_count = torch.zeros_like(self.rp_count)
        self.epochs += 1
        return mean_rp

    def state_dict(self) -> dict:
        return {"rule": self.rule, "gamma": self.gamma, "e_min": self.e_min,
                "beta_bounds": self.beta_bounds, "beta_norm": self.beta_norm,
                "fixed": self.fixed.clone(), "beta": self.beta.clone(), "E": self.E.clone(),
                "rp_sum": self.rp_sum.clone(), "rp_count": self.rp_count.clone(),
                "epochs": self.epochs}

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


def prism_distillation_loss(teacher_logits: Logits, student_logits: Logits,
                            teacher_features: torch.Tensor, student_features: torch.Tensor,
                            target: Logits,
                            modality_mask: torch.Tensor, coefficients: torch.Tensor,
                            region_based: bool = False,
                            ds_weights: Optional[Sequence[float]] = None,
                            temperature: float = DEFAULT_TEMPERATURE,
                            lambda_pixel: float = DEFAULT_LAMBDA_PIXEL,
                            lambda_proto: float = DEFAULT_LAMBDA_PROTO,
                            pairs: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                            **kwargs) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """The PRISM distillation objective (added to the segmentation loss by the trainer).

    Shapes: logits as in :func:`pixel_distillation_loss` (per level (B, C, *s) and
    (B, M, C, *s)); features and target as in :func:`prototype_distillation`; modality_mask
    (B, M) bool; coefficients E (M,) (``PreferenceState.coefficients()``). With ``pairs``
    (samples, modalities) the students are one row per present pair (``MultiModalOutput``'s
    ``students`` and ``student_features``), else dense (B, M, ...).
    Formula: L = 1/B sum_n sum_{m: C_nm = 1} (lambda1 E^m L_pixel^{n,m} + lambda2 omega_n^m L_proto^{n,m})
    (PASSION, ACM MM 2024, overall objective).
    Reduction: per-sample sum over present modalities, mean over the batch (equals the official
    code at its batch size 1; E^m = 1/(1-FR^m) then exactly offsets how often m is present).
    kwargs go to :func:`prototype_distillation` (num_classes, include_background, ...) and
    ``prob_floor``/``class_reduction`` to :func:`pixel_distillation_loss`.
    Returns total (scalar) and detached stats: 'pixel' and 'proto' (M,) means over the samples
    with m present / valid, 'gap', 'rp', 'rp_valid', 'omega' (B, M), 'mean_rp' (M,) batch mean
    (feed 'rp' and 'rp_valid' to ``PreferenceState.update_batch``).
    """
    pixel_kwargs = {k: kwargs.pop(k) for k in ("prob_floor", "class_reduction") if k in kwargs}
    mask = modality_mask.to(dtype=torch.bool)
    _, pixel = pixel_distillation_loss(teacher_logits, student_logits, mask, ds_weights,
                                       temperature, region_based, return_per_sample=True,
                                       pairs=pairs, **pixel_kwargs)
    proto = prototype_distillation(teacher_features, student_features, target, mask,
                                   region_based, pairs=pairs, **kwargs)
    mask = mask.to(pixel.device)
    rp, rp_valid = relative_preference(proto.gap, mask, proto.valid)
    omega = preference_mask(rp, rp_valid)
    e = coefficients.detach().to(device=pixel.device, dtype=pixel.dtype).view(1, -1)
    per_sample = lambda_pixel * e * pixel + lambda_proto * omega * proto.loss  # 0 where absent
    total = per_sample.sum(1).mean()

    def mean_over(values, where):
        where = where.to(values.dtype)
        return (values.detach() * where).sum(0) / where.sum(0).clamp(min=1)

    stats = {"pixel": mean_over(pixel, mask), "proto": mean_over(proto.loss, proto.valid),
             "gap": proto.gap, "rp": rp, "rp_valid": rp_valid, "omega": omega,
             "mean_rp": mean_over(rp, rp_valid)}
    return total, stats
