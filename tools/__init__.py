"""Developer tooling around the product: the local stack, a synthetic organisation, the demo.

Kept out of the ``streams`` package (and out of the wheel) so the product installs and runs
without any of it; it is used from a source checkout (``make``, the tests, ``bench/``).
"""
