"""Test-wide set-up: the suite runs the way the server does, on a monkey-patched gevent."""

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()
