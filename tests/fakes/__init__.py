"""Fakes shared by the tests (never test modules themselves): `images`, `bundles`, `runs`."""
