"""verl-maxpo: the MaxPO max@K advantage estimator (arXiv 2606.06080) as a verl plugin.

Install the pinned CPU torch first on machines without a GPU (see README.md):
    pip install torch==2.13.0 && pip install -e .[test]
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="verl-maxpo",
    version="0.1.0",
    description="MaxPO: unbiased, group-centered max@K / pass@K advantages for verl",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["verl_maxpo", "verl_maxpo.*"]),
    include_package_data=True,
    package_data={"verl_maxpo": ["py.typed"]},
    install_requires=[
        # verl.trainer.ppo.ray_trainer does not import without the verl-core extra.
        "verl[verl-core]>=0.9.0,<0.10",
        "torch>=2.4",
        "numpy>=1.24",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        # The CPU demo's model, tokenizer and configs (all arrive with verl today; declared because we import them).
        "transformers>=4.40",
        "tokenizers>=0.15",
        "omegaconf>=2.3",
        "pandas>=1.5",
    ],
    extras_require={
        "test": ["pytest>=7", "ruff>=0.6"],
    },
    entry_points={
        # `import verl` loads every entry point of this group, in every process (Ray actors too).
        "verl.plugins": ["maxpo = verl_maxpo.plugin"],
        "console_scripts": ["verl-maxpo = verl_maxpo.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "License :: OSI Approved :: Apache Software License",
    ],
)
