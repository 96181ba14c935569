"""Runs the recording pipeline's Python tests (tests/record) for CTest: exit 0 when they pass,
1 on a failure, 77 (CTest's "skipped") when every test skipped because numpy, h5py, torch or
transformers is missing, as on CI machines."""
import os
import sys
import unittest

here = os.path.dirname(os.path.abspath(__file__))
suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py")
result = unittest.TextTestRunner(verbosity=1).run(suite)
if not result.wasSuccessful():
    sys.exit(1)
if result.testsRun == 0 or len(result.skipped) == result.testsRun:
    print(f"all {result.testsRun} tests skipped (Python packages missing)")
    sys.exit(77)
