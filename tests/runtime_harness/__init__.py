"""Helpers of the C runtime tests (tests/test_runtime_*.py): build once, call via ctypes."""
