"""Packaging beyond pyproject.toml: the top-level recipes/ folder ships inside the package as `verl_maxpo.recipes`.

pyproject.toml holds the metadata, dependencies and tool settings; only the package list lives here, because
pyproject's `packages.find` cannot map a folder outside verl_maxpo/ into the package.
"""

from setuptools import find_packages, setup

RECIPES = ["verl_maxpo.recipes", *(f"verl_maxpo.recipes.{name}" for name in find_packages("recipes"))]

setup(
    packages=find_packages(include=["verl_maxpo", "verl_maxpo.*"]) + RECIPES,
    package_dir={"verl_maxpo.recipes": "recipes"},
    package_data={"verl_maxpo": ["py.typed"], "verl_maxpo.recipes": ["*.md", "*/*.yaml", "*/*.md", "*/*/*.yaml"]},
)
