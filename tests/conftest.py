"""Test-suite settings shared by every module."""

from hypothesis import settings

# Property tests draw the same examples on every run (and keep no example database between runs):
# a CI run on a clean clone gives the same verdict as the run before it.
settings.register_profile("llmsim", derandomize=True, database=None)
settings.load_profile("llmsim")
