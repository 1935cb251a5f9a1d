from setuptools import find_packages, setup

setup(
    name="nnunet_prism",
    version="0.1.0",
    description="nnU-Net v2 trainers for multimodal segmentation with missing modalities "
                "(PRISM/PASSION, ShaSpec, GMD, M2DN, CCH)",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.isfile("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nnunet_prism", "nnunet_prism.*", "dataset_conversion", "dataset_conversion.*"]),
    include_package_data=True,
    install_requires=[
        "nnunetv2>=2.8,<2.9",
        "torch",
        "SimpleITK",
        "batchgeneratorsv2",
        "numpy",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["nnunet_prism=nnunet_prism.cli:main"]},
)
