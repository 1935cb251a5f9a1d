"""Install nnunet_prism: ``pip install -e ".[test]"`` (or ``pip install .``).

Besides the packages, the install puts ``nnunet_prism_ext_trainer.pth`` into site-packages. At
every interpreter start it runs ``nnunet_prism_site_hook``, which appends our trainer folder to
``nnUNet_extTrainer`` so that nnU-Net's own commands find our trainers in any new shell.
"""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

try:  # PEP 660 editable installs (setuptools >= 64)
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # pragma: no cover
    editable_wheel = None

HERE = os.path.dirname(os.path.abspath(__file__))
PTH_FILE = "nnunet_prism_ext_trainer.pth"


class BuildPyWithSiteHook(build_py):
    """Regular wheels: ship the .pth at the root of site-packages and the repository's
    results_templates/ inside the package (editable installs read them from the repository)."""

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            self.copy_file(os.path.join(HERE, PTH_FILE), os.path.join(self.build_lib, PTH_FILE))
            self.copy_tree(os.path.join(HERE, "results_templates"),
                           os.path.join(self.build_lib, "nnunet_prism", "results_templates"))


cmdclass = {"build_py": BuildPyWithSiteHook}

if editable_wheel is not None:
    class EditableWheelWithSiteHook(editable_wheel):
        """Editable wheels: setuptools writes everything in the unpacked folder into the wheel;
        the hook is added there next to setuptools' own namespace .pth files."""

        def _install_namespaces(self, installation_dir, pth_prefix):
            super()._install_namespaces(installation_dir, pth_prefix)
            self.copy_file(os.path.join(HERE, PTH_FILE), os.path.join(installation_dir, PTH_FILE))

    cmdclass["editable_wheel"] = EditableWheelWithSiteHook


def read_readme():
    path = os.path.join(HERE, "README.md")
    return open(path, encoding="utf-8").read() if os.path.isfile(path) else ""


setup(
    name="nnunet_prism",
    version="0.1.0",
    description="nnU-Net v2 trainers for multimodal segmentation with missing modalities "
                "(PRISM/PASSION, ShaSpec, GMD, M2DN, CCH)",
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nnunet_prism", "nnunet_prism.*",
                                    "dataset_conversion", "dataset_conversion.*"]),
    py_modules=["nnunet_prism_site_hook"],
    package_data={"nnunet_prism.protocols": ["data/*.json", "data/README.md"]},  # published split lists
    install_requires=[
        "nnunetv2>=2.8,<2.9",
        "torch",
        "SimpleITK",
        "batchgeneratorsv2",
        "numpy",
        "matplotlib",
        "scipy",  # k-NN mutual information of the CCH tool (cKDTree, digamma)
        "scikit-image",  # PSNR/SSIM of M2DN synthesis (nnunet_prism synth evaluate)
    ],
    extras_require={
        "test": ["pytest"],
        # the official BraTS 2025 numbers (evaluate --metrics brats2025); panoptica pins numpy < 2.3,
        # pandas < 3 and connected-components-3d < 4, so it is not installed by default
        "brats2025": ["panoptica==2.1.7"],
    },
    entry_points={
        "console_scripts": ["nnunet_prism=nnunet_prism.cli:main"],
        # tables of further nnunet_prism subcommands (nnunet_prism.cli): the conversion commands and
        # the demo live in dataset_conversion, which builds on nnunet_prism (not the other way round)
        "nnunet_prism.commands": ["dataset_conversion = dataset_conversion.commands:SUBCOMMANDS"],
    },
    cmdclass=cmdclass,
)
