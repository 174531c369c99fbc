"""The wheel carries the demo's sample as ``hub/_sample`` (``registry.db.sample``, ``samples/blobs``,
``samples/refs``, ``samples/data``), so ``hub demo`` works from an installed package; the repository
keeps them at its top level, where ``samples/build_sample.py`` writes them. Everything else is in
pyproject.toml (MANIFEST.in puts the sample in the sdist, for a wheel built from it)."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SAMPLE = {"registry.db.sample": "registry.db.sample", "samples/blobs": "blobs", "samples/refs": "refs", "samples/data": "data"}


class BuildWithSample(build_py):
    """``build_py``, then the sample copied into the built ``hub`` package (not for an editable
    install, which reads the clone's own sample)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "hub" / "_sample"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for source, name in SAMPLE.items():
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target / name)
            else:
                shutil.copyfile(path, target / name)


setup(cmdclass={"build_py": BuildWithSample})
