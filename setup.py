"""Build of popstream's native engine core (issue #14); everything else is in
pyproject.toml.

The core (``native/``, Rust through PyO3) is compiled by setuptools-rust as the
extension ``streams._native`` whenever the package is installed: ``make`` does it
on first use, an editable install in place, a wheel (the Dockerfile) inside it.
It is always a release build: a debug build of the core is ~10x slower and would
make every measurement of an editable install meaningless.

``POPSTREAM_NO_NATIVE=1`` at install time skips it: the pure-Python engine then
runs (``streams/engine/engine.py``, the same results, ~9x slower), for a machine
without cargo.
"""

from __future__ import annotations

import os

from setuptools import setup

rust_extensions = []
if os.environ.get("POPSTREAM_NO_NATIVE", "") in ("", "0"):
    from setuptools_rust import Binding, RustExtension

    rust_extensions.append(
        RustExtension(
            "streams._native",
            path="native/Cargo.toml",
            binding=Binding.PyO3,
            debug=False,
            py_limited_api="auto",  # abi3: one build serves CPython 3.11+
        )
    )

setup(rust_extensions=rust_extensions)
