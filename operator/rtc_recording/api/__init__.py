"""The API's vocabulary: names, models, the CRD's rules mirrored, the callback contract.

Imports nothing of the operator: every other layer builds on it.
"""
