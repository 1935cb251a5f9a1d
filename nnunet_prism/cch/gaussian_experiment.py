"""The joint Gaussian model of the CCH paper (arXiv 2510.13182, "Gemeinsames Gaussches Modell")
as a reproducible experiment: where does distillation help, and does the CCH predict it?

Data (our parametrisation of the paper's joint Gaussian (x1, x2, y)):
    x2 ~ N(0, I_p)                         student modality
    y  = w*^T x2 + eps, eps ~ N(0, s2)     label; ||w*||^2 = signal_var
    x1 = x2 + beta * eps * w*/||w*||^2 + nu,   nu ~ N(0, tau^2/||w*||^2 I_p)   teacher modality
Teacher representation h1 = w1^T x1 with w1 = w* (a calibrated teacher: E[h1 | x2] = w*^T x2),
so h1 = w*^T x2 + beta * eps + N(0, tau^2): ``teacher_noise`` tau adds noise to the teacher as
in the paper's noise experiment, ``label_share`` beta lets it see part of the label noise the
student cannot see. Student representation h2 = w*^T x2 (the population student of Theorem 1).
CCH: I(h1; h2) > I(h2; y), both in closed form.

Student objective (the paper's): min_w sum ||y - w^T x2||^2 + lambda sum ||w^T x2 - w1^T x1||^2,
solved in closed form: ordinary least squares of x2 on the target (y + lambda h1) / (1 + lambda).
Its expected test risk is exact for Gaussian designs:
    R(lambda) = Var(y | x2) + |b_z - w*|^2_S22 + p / (n - p - 1) * Var(z | x2),
z the target, b_z its population regression on x2. Compared against lambda = 0 (no distillation),
closed form and Monte Carlo (paired on one test set, averaged over ``repeats`` draws).

Deviation from the paper (stated in the output): the teacher is calibrated (w1 = w*) because MI is
invariant to rescaling h1 while the squared risk is not; an uncalibrated teacher adds a bias
lambda^2 (alpha-1)^2 |w*|^2 the criterion cannot see. With beta = 0 the closed form gives: KD helps
iff tau^2 < s2 (1 + 2 / lambda), and CCH <=> tau^2 < s2 - so where the CCH holds, distillation helps
at every lambda, and where it fails it hurts beyond lambda = 2 s2 / (tau^2 - s2); the two
boundaries meet as lambda grows.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from nnunet_prism.cch.estimators import MIOptions, gaussian_mi, gaussian_mi_from_cov, ksg_mi

DEFAULT_NOISES = (0.25, 0.5, 0.75, 0.9, 1.1, 1.5, 2.0, 3.0, 4.0)
DEFAULT_LAMBDAS = (0.25, 1.0, 4.0, 16.0)


@dataclass
class GaussianSetting:
    """One joint Gaussian model (see module docstring); variances in units of the label noise."""
    p: int = 100
    signal_var: float = 1.0
    noise_var: float = 1.0
    teacher_noise: float = 1.0      # tau: std of the teacher's own noise
    label_share: float = 0.0        # beta: part of the label noise the teacher sees
    seed: int = 0

    def weights(self) -> np.ndarray:
        """w* (p,), a fixed random direction with |w*|^2 = signal_var."""
        w = np.random.default_rng(self.seed + 7919).standard_normal(self.p)
        return w * np.sqrt(self.signal_var) / np.linalg.norm(w)

    def covariance(self) -> np.ndarray:
        """Joint covariance of (x1, x2, y), (2p+1, 2p+1), closed form."""
        p, w = self.p, self.weights()
        u = w / self.signal_var
        s11 = (np.eye(p) * (1 + self.teacher_noise ** 2 / self.signal_var)
               + self.label_share ** 2 * self.noise_var * np.outer(u, u))
        cov = np.zeros((2 * p + 1, 2 * p + 1))
        cov[:p, :p], cov[:p, p:2 * p], cov[p:2 * p, :p], cov[p:2 * p, p:2 * p] = s11, np.eye(p), np.eye(p), np.eye(p)
        cov[:p, -1] = cov[-1, :p] = w + self.label_share * self.noise_var * u
        cov[p:2 * p, -1] = cov[-1, p:2 * p] = w
        cov[-1, -1] = self.signal_var + self.noise_var
        return cov

    def sample(self, n: int, rng: np.random.Generator):
        """x1 (n, p), x2 (n, p), y (n,) drawn from the model."""
        w = self.weights()
        x2 = rng.standard_normal((n, self.p))
        eps = np.sqrt(self.noise_var) * rng.standard_normal(n)
        nu = rng.standard_normal((n, self.p)) * self.teacher_noise / np.sqrt(self.signal_var)
        x1 = x2 + np.outer(self.label_share * eps, w / self.signal_var) + nu
        return x1, x2, x2 @ w + eps

    def representation_cov(self) -> np.ndarray:
        """Covariance of (h1, h2, y) = (w*^T x1, w*^T x2, y), (3, 3)."""
        p, w = self.p, self.weights()
        a = np.zeros((3, 2 * p + 1))
        a[0, :p], a[1, p:2 * p], a[2, -1] = w, w, 1.0
        return a @ self.covariance() @ a.T

    def true_mi(self) -> Dict[str, float]:
        """Closed-form I(h1;h2), I(h2;y), I(h1;y) and multivariate I(x1;x2), I(x2;y), nats."""
        r, cov, p = self.representation_cov(), self.covariance(), self.p
        x1, x2, y = np.arange(p), np.arange(p, 2 * p), np.array([2 * p])
        return {"I_h1_h2": gaussian_mi_from_cov(r, 0, 1), "I_h2_y": gaussian_mi_from_cov(r, 1, 2),
                "I_h1_y": gaussian_mi_from_cov(r, 0, 2), "I_x1_x2": gaussian_mi_from_cov(cov, x1, x2),
                "I_x2_y": gaussian_mi_from_cov(cov, x2, y)}


def expected_risk(setting: GaussianSetting, lam: float, n: int) -> float:
    """Exact expected test MSE of the closed-form student trained on n samples with weight lam."""
    r, p = setting.representation_cov(), setting.p
    w = setting.weights()
    # everything projects on x2 through w*: h2 = w*^T x2, Var(h2) = |w*|^2 (S22 = I)
    a = r[1, 1]
    b_y, b_t = 1.0, r[0, 1] / a                       # regression coefficients on h2 (direction w*)
    var_ey = r[2, 2] - a
    var_et = r[0, 0] - r[0, 1] ** 2 / a
    c = r[0, 2] - b_t * r[1, 2]                       # Cov(e_y, e_t)
    bias = (lam / (1 + lam)) ** 2 * (b_t - b_y) ** 2 * float(w @ w)
    var_z = (var_ey + 2 * lam * c + lam ** 2 * var_et) / (1 + lam) ** 2
    if n <= p + 1:
        raise ValueError(f"n = {n} must exceed p + 1 = {p + 1} for least squares")
    return var_ey + bias + p / (n - p - 1) * var_z


def student_weights(x2: np.ndarray, y: np.ndarray, h1: np.ndarray, lam: float) -> np.ndarray:
    """argmin_w sum (y - x2 w)^2 + lam sum (x2 w - h1)^2 = OLS on (y + lam h1) / (1 + lam)."""
    return np.linalg.lstsq(x2, (y + lam * h1) / (1 + lam), rcond=None)[0]


@dataclass
class ExperimentConfig:
    n: int = 10000                  # training samples (paper: 10000)
    p: int = 100                    # dimension of each modality (paper: 100)
    n_test: int = 10000
    repeats: int = 5
    signal_var: float = 1.0
    noise_var: float = 1.0
    label_share: float = 0.0
    teacher_noises: Sequence[float] = DEFAULT_NOISES
    lambdas: Sequence[float] = DEFAULT_LAMBDAS
    estimate_mi: bool = True
    mi_options: MIOptions = field(default_factory=MIOptions)
    seed: int = 0


def run_experiment(config: ExperimentConfig) -> List[dict]:
    """One row per (teacher noise, lambda): closed-form MIs, CCH, relative change of the test risk
    against lambda = 0 (closed form and Monte Carlo) and, per setting, the estimators' MIs."""
    rows = []
    for i, tau in enumerate(config.teacher_noises):
        setting = GaussianSetting(config.p, config.signal_var, config.noise_var, tau, config.label_share,
                                  config.seed)
        mi = setting.true_mi()
        cch = mi["I_h1_h2"] > mi["I_h2_y"]
        w = setting.weights()
        rng = np.random.default_rng([config.seed, i])
        deltas = {lam: [] for lam in config.lambdas}
        estimates: Dict[str, float] = {}
        for rep in range(config.repeats):
            x1, x2, y = setting.sample(config.n, rng)
            t1, t2, ty = setting.sample(config.n_test, rng)
            h1 = x1 @ w
            base = np.mean((ty - t2 @ student_weights(x2, y, h1, 0.0)) ** 2)
            for lam in config.lambdas:
                risk = np.mean((ty - t2 @ student_weights(x2, y, h1, lam)) ** 2)
                deltas[lam].append((risk - base) / base)
            if rep == 0 and config.estimate_mi:
                estimates = estimate_representation_mi(t1 @ w, t2 @ w, ty, config.mi_options)
        r0 = expected_risk(setting, 0.0, config.n)
        for lam in config.lambdas:
            closed = (expected_risk(setting, lam, config.n) - r0) / r0
            empirical = float(np.mean(deltas[lam]))
            rows.append({"teacher_noise": tau, "label_share": config.label_share, "lambda": lam,
                         **mi, "mi_gap": mi["I_h1_h2"] - mi["I_h2_y"], "cch": cch,
                         "rel_risk_change_closed": closed, "rel_risk_change_mc": empirical,
                         "mc_sem": float(np.std(deltas[lam], ddof=1) / np.sqrt(len(deltas[lam])))
                         if len(deltas[lam]) > 1 else float("nan"),
                         "kd_helps": closed < 0, "cch_agrees": (closed < 0) == cch, **estimates})
    return rows


def estimate_representation_mi(h1, h2, y, options: Optional[MIOptions] = None) -> Dict[str, float]:
    """KSG and Gaussian estimates of I(h1;h2) and I(h2;y) from samples (subsampled for KSG)."""
    options = options or MIOptions()
    rng = np.random.default_rng(options.seed)
    rows = np.arange(len(y))
    if options.max_samples is not None and len(rows) > options.max_samples:
        rows = np.sort(rng.choice(len(rows), options.max_samples, replace=False))
    jitter = lambda v: v + options.jitter * rng.standard_normal(v.shape)  # noqa: E731
    return {"ksg_I_h1_h2": ksg_mi(jitter(h1[rows]), jitter(h2[rows]), options.k),
            "ksg_I_h2_y": ksg_mi(jitter(h2[rows]), jitter(y[rows]), options.k),
            "gauss_I_h1_h2": gaussian_mi(h1, h2), "gauss_I_h2_y": gaussian_mi(h2, y)}


COLUMNS = ["teacher_noise", "label_share", "lambda", "I_h1_h2", "I_h2_y", "I_h1_y", "mi_gap", "cch",
           "rel_risk_change_closed", "rel_risk_change_mc", "mc_sem", "kd_helps", "cch_agrees",
           "ksg_I_h1_h2", "ksg_I_h2_y", "gauss_I_h1_h2", "gauss_I_h2_y", "I_x1_x2", "I_x2_y"]


def write_csv(rows: List[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[c for c in COLUMNS if c in rows[0]], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown_table(rows: List[dict]) -> str:
    """Compact Markdown: MIs (closed form), CCH, risk change in % (closed form / Monte Carlo)."""
    head = ("| tau/sigma | lambda | I(h1;h2) | I(h2;y) | CCH | dR closed % | dR MC % (sem) | KD helps | agrees "
            "| KSG I(h1;h2) | KSG I(h2;y) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ksg = (f"{r['ksg_I_h1_h2']:.3f} | {r['ksg_I_h2_y']:.3f}" if "ksg_I_h1_h2" in r else "- | -")
        lines.append(f"| {r['teacher_noise']:g} | {r['lambda']:g} | {r['I_h1_h2']:.3f} | {r['I_h2_y']:.3f} | "
                     f"{'yes' if r['cch'] else 'no'} | {100 * r['rel_risk_change_closed']:+.3f} | "
                     f"{100 * r['rel_risk_change_mc']:+.3f} ({100 * r['mc_sem']:.3f}) | "
                     f"{'yes' if r['kd_helps'] else 'no'} | {'yes' if r['cch_agrees'] else 'no'} | {ksg} |")
    return "\n".join(lines)


def estimator_errors(rows: List[dict]) -> Dict[str, float]:
    """Max absolute error (nats) of each estimator against the closed form over the settings."""
    out = {}
    for name in ("ksg", "gauss"):
        for target in ("I_h1_h2", "I_h2_y"):
            key = f"{name}_{target}"
            if rows and key in rows[0]:
                out[key] = max(abs(r[key] - r[target]) for r in rows)
    return out


def plot(rows: List[dict], path: Path, title: str = "") -> Path:
    """Left: relative risk change vs I(h1;h2) - I(h2;y), one line per lambda (CCH boundary at 0).
    Right: estimated vs closed-form MI."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for lam in sorted({r["lambda"] for r in rows}):
        sub = sorted((r for r in rows if r["lambda"] == lam), key=lambda r: r["mi_gap"])
        gap = [r["mi_gap"] for r in sub]
        line, = ax.plot(gap, [100 * r["rel_risk_change_closed"] for r in sub], label=f"lambda={lam:g}")
        ax.errorbar(gap, [100 * r["rel_risk_change_mc"] for r in sub], yerr=[100 * r["mc_sem"] for r in sub],
                    fmt="o", ms=3, color=line.get_color())
    ax.axvline(0, color="k", lw=0.8, ls="--")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("I(h1;h2) - I(h2;y)  [nats]   (CCH holds right of the dashed line)")
    ax.set_ylabel("test risk change vs lambda=0 [%]  (<0: KD helps)")
    ax.legend(fontsize=8, title="lines: closed form, dots: Monte Carlo", title_fontsize=7)
    seen = {}
    for r in rows:
        seen.setdefault(r["teacher_noise"], r)
    for key, marker in (("ksg", "o"), ("gauss", "x")):
        for target, colour in (("I_h1_h2", "C0"), ("I_h2_y", "C1")):
            pts = [(r[target], r[f"{key}_{target}"]) for r in seen.values() if f"{key}_{target}" in r]
            if pts:
                bx.scatter(*zip(*pts), marker=marker, color=colour, label=f"{key} {target}")
    lim = max([1e-3] + [max(r["I_h1_h2"], r["I_h2_y"]) for r in rows]) * 1.1
    bx.plot([0, lim], [0, lim], "k--", lw=0.8)
    bx.set_xlabel("closed-form MI [nats]")
    bx.set_ylabel("estimated MI [nats]")
    bx.legend(fontsize=8)
    fig.suptitle(title or "CCH in the joint Gaussian model")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(rows: List[dict], config: ExperimentConfig, output: Path) -> Dict[str, Path]:
    """gaussian_experiment.csv, .md and .png in ``output``."""
    output = Path(output)
    title = f"joint Gaussian model, n={config.n}, p={config.p}, repeats={config.repeats}"
    md = output / "gaussian_experiment.md"
    errors = estimator_errors(rows)
    agree = sum(r["cch_agrees"] for r in rows)
    text = [f"# CCH, {title}", "", markdown_table(rows), "",
            f"CCH agrees with the sign of the closed-form risk change in {agree}/{len(rows)} rows; per lambda: "
            + ", ".join(f"{lam:g}: {sum(r['cch_agrees'] for r in rows if r['lambda'] == lam)}/"
                        f"{sum(r['lambda'] == lam for r in rows)}" for lam in dict.fromkeys(r["lambda"] for r in rows))
            + ". With label_share = 0 the closed form gives: KD helps iff tau^2 < sigma^2 (1 + 2/lambda); "
              "CCH iff tau^2 < sigma^2.",
            "Max abs estimator error vs closed form (nats): "
            + ", ".join(f"{k}: {v:.4f}" for k, v in errors.items()), "",
            f"config: {asdict(config)}"]
    output.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(text) + "\n")
    return {"csv": write_csv(rows, output / "gaussian_experiment.csv"), "md": md,
            "png": plot(rows, output / "gaussian_experiment.png", title)}
