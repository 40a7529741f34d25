"""Shim for tools that still call `python setup.py ...`: every setting lives in pyproject.toml."""

from setuptools import setup

setup()
