"""Shared test helpers: volumes, DICOM test series, training sets and the hostile-input corpus."""
