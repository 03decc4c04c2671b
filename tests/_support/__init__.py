"""Helpers shared by the tests (imported as ``_support.<module>``; tests/ is on sys.path
through its conftest)."""
