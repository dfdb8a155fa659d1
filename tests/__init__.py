"""Tests: fast unit tests and end-to-end tests that start the real servers."""
