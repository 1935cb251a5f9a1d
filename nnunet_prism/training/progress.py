"""Method-specific training curves (PRISM's E^m, ShaSpec's DCO accuracy, GMD's conflicts, ...).

The curves live in nnU-Net's own local logger, so they are saved in nnU-Net's checkpoints and
restored by ``--c`` with everything else; one value per epoch, like nnU-Net's own curves.
``progress.png`` keeps nnU-Net's panels and gains one panel per method group below them.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence

from nnunetv2.training.logging.nnunet_logger import LocalLogger


STATE_KEY = "nnunet_prism_state"


class MethodCurvesLogger(LocalLogger):
    """nnU-Net's LocalLogger plus the curves in ``panels`` ({panel title: [curve keys]}).

    It also carries the trainer's own training-time state (for example PRISM's E^m) inside
    nnU-Net's checkpoint: ``get_state()`` is stored under ``STATE_KEY`` of the logging entry and
    handed to ``set_state(state)`` when nnU-Net restores the checkpoint (``--c``).
    """

    def __init__(self, panels: Dict[str, Sequence[str]], verbose: bool = False,
                 get_state: Optional[Callable[[], dict]] = None,
                 set_state: Optional[Callable[[dict], None]] = None):
        super().__init__(verbose)
        self.panels: Dict[str, list] = {}
        self.get_state, self.set_state = get_state, set_state
        self.add_panels(panels)

    def add_panels(self, panels: Dict[str, Sequence[str]]) -> None:
        self.panels.update({title: list(keys) for title, keys in panels.items()})
        self._add_missing_keys()

    def get_checkpoint(self):
        checkpoint = dict(super().get_checkpoint())
        if self.get_state is not None:
            checkpoint[STATE_KEY] = self.get_state()
        return checkpoint

    def _add_missing_keys(self):
        for keys in self.panels.values():
            for key in keys:
                self.my_fantastic_logging.setdefault(key, [])

    def load_checkpoint(self, checkpoint: dict):
        checkpoint = dict(checkpoint)
        state = checkpoint.pop(STATE_KEY, None)
        super().load_checkpoint(checkpoint)
        self._add_missing_keys()  # checkpoints from before a curve existed
        if state is not None and self.set_state is not None:
            self.set_state(state)

    def plot_progress_png(self, output_folder):
        super().plot_progress_png(output_folder)
        if any(self.my_fantastic_logging[k] for keys in self.panels.values() for k in keys):
            append_panels(os.path.join(output_folder, "progress.png"), self.panels, self.my_fantastic_logging)


def append_panels(png_path: str, panels: Dict[str, Sequence[str]], curves: Dict[str, list]) -> None:
    """Redraw ``png_path`` as the existing image on top and one line plot per panel below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    image = mpimg.imread(png_path)
    height, width = image.shape[:2]
    dpi = 100
    panel_height = width / dpi / 2.5
    fig_height = height / dpi + panel_height * len(panels)
    fig = plt.figure(figsize=(width / dpi, fig_height), dpi=dpi)
    ratios = [height / dpi] + [panel_height] * len(panels)
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios)
    top = fig.add_subplot(grid[0])
    top.imshow(image)
    top.axis("off")
    for row, (title, keys) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(grid[row])
        for key in keys:
            values = curves.get(key, [])
            if values:
                ax.plot(range(len(values)), values, label=key, linewidth=3)
        ax.set_title(title, fontsize=28)
        ax.set_xlabel("epoch", fontsize=24)
        ax.tick_params(labelsize=20)
        ax.legend(fontsize=20, loc="best")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
