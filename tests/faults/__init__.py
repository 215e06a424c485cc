"""Fault tests of issue 8 (items 6-9): crashes, exchange faults, bad input, security."""
