"""File-to-file jobs and pipeline entry points (BIDS app, DICOM node) built on the infer job."""
