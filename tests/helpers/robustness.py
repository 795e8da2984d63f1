"""The hostile-input corpus and the rows of docs/robustness.md (scripts/render_robustness.py renders them).

Each :class:`Case` builds one input and states what medsr must do with it; tests/test_robustness.py runs
them. CHECKPOINTS, PATHS, PROPERTIES and FAULTS name the test that proves each row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.helpers.dicom import BROKEN
from tests.helpers.hostile_files import (
    AFFINE,
    SHAPE,
    add_second_series,
    ct_series,
    cut_header,
    cut_short,
    enhanced_ct_file,
    header_dims,
    itk_file,
    nifti_builder,
    patched,
    pydicom_test_file,
    raw_bytes,
    raw_nifti,
    sample_data,
    special_file,
    tag_paths,
)
from tests.helpers.volumes import make_affine


@dataclass(frozen=True)
class Case:
    """One hostile input and the behaviour medsr promises for it."""

    id: str
    input: str  # what the file is (docs/robustness.md)
    build: Callable[[Path], Path]
    outcome: str  # "refused" (exit 2), "repaired" (warning, exit 0) or "accepted" (exit 0)
    message: str = ""  # medsr's own words the error or warning line must contain
    stage: str = "read"  # "read": load_volume and `medsr info` refuse it too; "upscale": only upscaling


NAN_DATA = sample_data().copy()
NAN_DATA[1, 2, 3], NAN_DATA[4, 4, 0], NAN_DATA[5, 1, 2] = np.nan, np.inf, -np.inf
SHEARED = AFFINE.copy()
SHEARED[:3, 2] += 0.8 * AFFINE[:3, 0]  # the slice axis leans along the first axis: a gantry tilt
QFORM = AFFINE.copy()
QFORM[:3, 3] += [4.0, -2.0, 6.0]
SINGULAR = AFFINE.copy()
SINGULAR[:3, 2] = 0.0
FLOAT_VOXELS = sample_data().tobytes(order="F")

CASES = [
    # NIfTI: damaged files
    Case(
        "nifti-truncated-gz",
        "`.nii.gz` cut in half",
        cut_short(nifti_builder(sample_data()), 0.5),
        "refused",
        "its compressed stream ends early",
    ),
    Case(
        "nifti-truncated",
        "`.nii` missing its last 100 bytes",
        raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS[:-100]),
        "refused",
        "truncated: the header declares (10, 9, 6) float32 voxels (2160 bytes from byte 352) but the file "
        "holds only 2060 bytes",
    ),
    Case(
        "nifti-junk-gz",
        "random bytes named `.nii.gz`",
        raw_bytes("scan.nii.gz", os.urandom(3000)),
        "refused",
        "not a readable NIfTI file",
    ),
    Case(
        "nifti-junk",
        "random bytes named `.nii`",
        raw_bytes("scan.nii", b"\x07" * 3000),
        "refused",
        "not a readable NIfTI file",
    ),
    Case(
        "nifti-empty",
        "empty file named `.nii.gz`",
        raw_bytes("scan.nii.gz", b""),
        "refused",
        "not a readable NIfTI file",
    ),
    Case(
        "nifti-dims-more",
        "header declares 60 slices, data holds 6 (`.nii.gz`)",
        raw_nifti("scan.nii.gz", (10, 9, 60), FLOAT_VOXELS),
        "refused",
        "truncated: the header declares (10, 9, 60) float32 voxels",
    ),
    Case(
        "nifti-dims-fewer",
        "header declares 3 slices, data holds 6 (`.nii`)",
        raw_nifti("scan.nii", (10, 9, 3), FLOAT_VOXELS),
        "refused",
        "the header dimensions disagree with the data: the file holds 1080 bytes (3 slices) more",
    ),
    Case(
        "nifti-dims-huge",
        "header declares 30000 x 30000 x 30000 voxels",
        raw_nifti("scan.nii.gz", (30000, 30000, 30000), FLOAT_VOXELS),
        "refused",
        "header declares dimensions (30000, 30000, 30000) (2.7e+13 voxels), beyond what medsr will allocate",
    ),
    Case(
        "nifti-dims-4gb",
        "tiny `.nii.gz` declaring 1000^3 float32 (4 GB, under the voxel cap)",
        raw_nifti("scan.nii.gz", (1000, 1000, 1000), FLOAT_VOXELS),
        "refused",
        "compressed file cannot hold that much (deflate expands at most 1032:1)",
    ),
    Case(
        "nifti-dim-zero",
        "a dimension of 0 voxels",
        raw_nifti("scan.nii", (10, 9, 0), b""),
        "refused",
        "declares an empty volume (10, 9, 0)",
    ),
    Case(
        "nifti-bad-datatype",
        "unknown datatype code",
        patched(raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS), 70, np.int16(1234).tobytes()),
        "refused",
        "not a readable NIfTI file",
    ),
    Case(
        "nifti-complex",
        "complex-valued voxels",
        nifti_builder(sample_data().astype(np.complex64)),
        "refused",
        "holds complex voxels (complex64); medsr upscales real-valued images",
    ),
    Case(
        "fifo",
        "a named pipe called `scan.nii.gz` (would block a reader)",
        special_file("fifo"),
        "refused",
        "not a regular file or folder (a pipe, socket or device)",
    ),
    Case(
        "device",
        "`scan.nii.gz` linked to the null device",
        special_file("device"),
        "refused",
        "not a regular file or folder",
    ),
    # NIfTI: shapes and values
    Case(
        "nifti-2d",
        "a 2-D image",
        nifti_builder(sample_data()[:, :, 0]),
        "refused",
        "is 2-D (10, 9); medsr upscales 3-D volumes",
    ),
    Case(
        "nifti-4d",
        "a 4-D series without `--volume-index`",
        nifti_builder(np.stack([sample_data()] * 3, -1)),
        "refused",
        "is 4-D (10, 9, 6, 3); medsr upscales 3-D volumes: pass one volume with --volume-index (0..2)",
    ),
    Case(
        "nifti-one-slice",
        "a single slice (10 x 9 x 1)",
        nifti_builder(sample_data()[:, :, :1]),
        "refused",
        "has a single slice along axis 2",
        "upscale",
    ),
    Case(
        "nifti-nan-inf",
        "NaN, +Inf and -Inf voxels",
        nifti_builder(NAN_DATA),
        "repaired",
        "1 NaN voxel(s) set to 0 and 2 infinite voxel(s) clipped to the finite range",
        "upscale",
    ),
    Case(
        "nifti-all-nan",
        "every voxel NaN",
        nifti_builder(np.full(SHAPE, np.nan, np.float32)),
        "refused",
        "every voxel is NaN or infinite",
        "upscale",
    ),
    Case("nifti-zero", "all-zero volume", nifti_builder(np.zeros(SHAPE, np.float32)), "accepted"),
    Case(
        "nifti-constant",
        "constant volume (every voxel 7)",
        nifti_builder(np.full(SHAPE, 7.0, np.float32)),
        "accepted",
    ),
    Case(
        "nifti-anisotropy-20",
        "20:1 anisotropy (0.5 x 0.5 x 10 mm)",
        nifti_builder(sample_data(), make_affine((0.5, 0.5, 10.0), rng=np.random.default_rng(8))),
        "accepted",
    ),
    # NIfTI: geometry
    Case(
        "nifti-singular",
        "singular sform (a zero column), no qform",
        raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS, sform=SINGULAR, qform=None),
        "refused",
        "the sform affine is singular",
    ),
    Case(
        "nifti-nonfinite",
        "NaN in the sform",
        raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS, sform=np.where(np.eye(4) > 0, np.nan, 0.0), qform=None),
        "refused",
        "the sform affine is not finite",
    ),
    Case(
        "nifti-sheared",
        "sheared (non-orthogonal) sform, e.g. an uncorrected gantry tilt",
        nifti_builder(sample_data(), SHEARED),
        "repaired",
        "affine is sheared",
    ),
    Case(
        "nifti-sform-qform",
        "sform and qform that disagree by 7.5 mm",
        raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS, sform=AFFINE, qform=QFORM),
        "repaired",
        "the sform and qform disagree by up to 7.48 mm; medsr uses the sform",
    ),
    Case(
        "nifti-no-orientation",
        "sform and qform codes both 0",
        raw_nifti("scan.nii", SHAPE, FLOAT_VOXELS, sform=None, qform=None),
        "repaired",
        "no sform or qform (both codes 0), so the orientation is unknown",
    ),
    # NRRD / MetaImage
    Case(
        "mha-truncated",
        "`.mha` missing its last 500 bytes",
        itk_file("scan.mha", lambda b: b[:-500]),
        "refused",
        "truncated: the header declares (10, 9, 6)",
    ),
    Case(
        "mha-dims-huge",
        "`.mha` declaring 100000^3 voxels",
        itk_file("scan.mha", header_dims("100000 100000 100000")),
        "refused",
        "beyond what medsr will allocate",
    ),
    Case(
        "mha-dims-2gb",
        "`.mha` declaring 1000 x 1000 x 500 float32 over 2 kB of data",
        itk_file("scan.mha", header_dims("1000 1000 500")),
        "refused",
        "truncated: the header declares (1000, 1000, 500)",
    ),
    Case(
        "mhd-no-raw",
        "`.mhd` whose data file is missing",
        itk_file("scan.mhd", drop_raw=True),
        "refused",
        "its header names the data file 'scan.raw', which is missing",
    ),
    Case(
        "nrrd-truncated",
        "gzip `.nrrd` missing its last 200 bytes",
        itk_file("scan.nrrd", lambda b: b[:-200]),
        "refused",
        "not a readable NRRD file",
    ),
    Case(
        "nrrd-junk",
        "random bytes named `.nrrd`",
        raw_bytes("scan.nrrd", b"\x01\x02" * 700),
        "refused",
        "not a readable NRRD file",
    ),
    # DICOM
    Case(
        "dicom-missing-slice",
        "series with a slice missing",
        ct_series(BROKEN["missing-slice"][0]),
        "refused",
        "non-uniform slice spacing: expected 2.500 mm",
    ),
    Case(
        "dicom-duplicate",
        "two slices at the same position",
        ct_series(BROKEN["duplicate"][0]),
        "refused",
        "duplicate slice position",
    ),
    Case(
        "dicom-mixed-series",
        "two series in one folder",
        ct_series(extra=add_second_series),
        "refused",
        "holds 2 DICOM series; pass --series UID with one of",
    ),
    Case(
        "dicom-mixed-orientation",
        "one slice tilted 5.7 degrees",
        ct_series(BROKEN["mixed-orientation"][0]),
        "refused",
        "slices have different orientations",
    ),
    Case(
        "dicom-no-position",
        "a slice without ImagePositionPatient",
        ct_series(BROKEN["missing-ipp"][0]),
        "refused",
        "missing ImagePositionPatient",
    ),
    Case(
        "dicom-cut-header",
        "a slice cut off inside its header",
        ct_series(extra=cut_header),
        "refused",
        "DICOM file without SeriesInstanceUID or SOPInstanceUID: it is truncated or damaged",
    ),
    Case(
        "dicom-cut-pixels",
        "a slice cut off inside its pixel data (pydicom's MR_truncated.dcm)",
        pydicom_test_file("MR_truncated.dcm"),
        "refused",
        "pixel data cannot be read",
    ),
    Case(
        "dicom-huge-rows",
        "slices declaring 60000 x 60000 pixels",
        ct_series(lambda k, ds: setattr(ds, "Rows", 60000) or setattr(ds, "Columns", 60000)),
        "refused",
        "beyond what medsr will allocate",
    ),
    Case(
        "dicom-jpeg-ls",
        "JPEG-LS compressed pixels, no decoder installed",
        pydicom_test_file("MR_small_jpeg_ls_lossless.dcm"),
        "refused",
        "cannot decode its JPEG-LS Lossless Image Compression pixel data",
    ),
    Case(
        "dicom-sr",
        "a structured report (pydicom's test-SR.dcm)",
        pydicom_test_file("test-SR.dcm", single=False),
        "refused",
        "not an image (Modality SR, Comprehensive SR Storage",
    ),
    Case(
        "dicom-rtstruct",
        "an RT structure set (pydicom's rtstruct.dcm)",
        pydicom_test_file("rtstruct.dcm", single=False),
        "refused",
        "not an image (Modality RTSTRUCT, RT Structure Set Storage",
    ),
    Case(
        "dicom-rtdose",
        "a 15-frame RT dose grid (pydicom's rtdose.dcm)",
        pydicom_test_file("rtdose.dcm"),
        "refused",
        "multi-frame DICOM (RT Dose Storage, 15 frames) is not supported yet",
    ),
    Case(
        "dicom-enhanced-ct",
        "an Enhanced CT multi-frame object",
        enhanced_ct_file,
        "refused",
        "multi-frame DICOM (Enhanced CT Image Storage, 5 frames) is not supported yet",
    ),
    Case(
        "dicom-path-tags",
        "tags holding paths and shell text (`../../etc/passwd`, `rm -rf ~`)",
        ct_series(tag_paths),
        "accepted",
    ),
]
BY_ID = {case.id: case for case in CASES}


CHECKPOINTS = [
    ("a pickle that runs a shell command, named `evil.pt`, `evil.pth`, `evil.ckpt`, `evil.safetensors`, `evil`",
     "test_model_that_runs_a_command_is_refused[pickle-*]",
     "refuses it before unpickling anything: exit 2, `medsr never unpickles checkpoints`; the command never runs"),
    ("the same payload inside a `torch.save` zip (`.pt`, `.safetensors`...)",
     "test_model_that_runs_a_command_is_refused[torch.save-*]", "the same"),
    ("a safetensors header whose length field points past the end of the file",
     "test_damaged_safetensors_model_is_refused", "refused: exit 2, `not a safetensors checkpoint`"),
    ("a batch run with such a `--model`", "test_batch_with_an_evil_model_fails_each_scan_cleanly",
     "each scan fails with that reason in the report, exit 1, nothing runs"),
]  # fmt: skip


PATHS = [
    ("DICOM tags holding `../../etc/passwd`, `..\\..\\WINDOWS`, `rm -rf ~`", "test_dicom_tags_never_name_files",
     "files are named `IM_0001.dcm`... inside `<folder>_medsr/`; the tags are copied as values only"),
    ("any text used as a name (hypothesis, 300 examples)", "test_safe_name_stays_inside_any_folder",
     "`safe_name` keeps `A-Z a-z 0-9 . _ -`, no leading dot or dash, 120 characters at most"),
    ("batch inputs named `-o.nii.gz`, `a b;rm -rf ~.nii.gz`, `$(touch x).nii.gz`, `évolution.nii.gz`, `..hidden.nii.gz`",
     "test_batch_names_from_odd_file_names_stay_in_the_output_folder",
     "outputs `o_medsr`, `a_b_rm_-rf_medsr`, `touch_x_medsr`, `volution_medsr` in the output folder; dot files skipped"),
]  # fmt: skip


PROPERTIES = [
    ("any NIfTI/NRRD/MHA/DICOM file with random bytes changed and/or its end cut off (200 examples)",
     "test_damaged_files_give_a_medsr_error_or_a_volume",
     "a MedsrError naming the file, or a readable volume; never another exception"),
    ("any oblique, flipped, anisotropic or sheared affine, any factor, NIfTI or MHA output (25 examples)",
     "test_upscaled_files_keep_extent_for_any_affine", "the written output covers the input's physical extent"),
    ("any order of a series' files", "tests/test_dicom_properties.py::test_any_order_of_the_files_gives_the_same_volume",
     "the same volume and affine"),
    ("any file names, sub-folders, InstanceNumber and SliceLocation",
     "tests/test_dicom_properties.py::test_names_folders_and_instance_numbers_do_not_matter", "the same volume and affine"),
    ("any junk file beside a series (random bytes, DICOM-like prefixes)",
     "tests/test_dicom_properties.py::test_junk_beside_the_series_is_skipped_or_named",
     "skipped (the same volume), or a MedsrError naming that file"),
    ("any run of consecutive slices", "tests/test_dicom_properties.py::test_any_run_of_slices_is_the_matching_sub_volume",
     "the matching sub-volume, its affine shifted to the first slice"),
    ("any interior slice missing, or any slice twice",
     "tests/test_dicom_properties.py::test_a_gap_or_a_twin_slice_is_always_refused", "refused (non-uniform spacing / duplicate position)"),
    ("any oblique grid written as DICOM and read back",
     "tests/test_dicom_properties.py::test_write_then_read_puts_every_voxel_back_in_place",
     "every voxel back at the same world position with the same value"),
]  # fmt: skip


#: (fault, the test that proves it, what medsr does): the second table of docs/robustness.md.
FAULTS = [
    ("SIGTERM while the output NIfTI is being written", "test_signal_during_write_in_a_real_process[SIGTERM]",
     "exit 143; the temporary file is removed, no output"),
    ("Ctrl-C (SIGINT) while the output NIfTI is being written", "test_signal_during_write_in_a_real_process[SIGINT]",
     "exit 130; no output"),
    ("SIGTERM with a DICOM series folder half written", "test_sigterm_mid_write_in_this_process[dicom]",
     "exit 143; no output folder"),
    ("SIGTERM while `--overwrite` replaces an earlier output", "test_sigterm_mid_write_in_this_process[overwrite]",
     "exit 143; the earlier output is kept, byte for byte"),
    ("Disk full (ENOSPC) while writing the NIfTI, a DICOM slice or the JSON sidecar",
     "test_disk_full_is_one_clear_line", "exit 2, one line `not enough disk space`; nothing left behind"),
    ("Real write failure from the kernel: file size limit (EFBIG, `ulimit -f`)",
     "test_file_size_limit_is_a_real_kernel_error", "exit 2, one line, nothing left behind"),
    ("Real full file system: a 256 kB tmpfs (where user namespaces allow mounting one)",
     "test_full_tmpfs_in_a_real_process", "exit 2, one line, nothing left behind"),
    ("Batch: bad scans, an internal error and a full disk among good scans",
     "test_batch_records_every_failure_and_carries_on",
     "every failure in `medsr_batch.json` with its reason, the good scans written, exit 1"),
    ("Batch interrupted (Ctrl-C) part-way", "test_interrupted_batch_reports_and_resumes",
     "exit 130, report with `interrupted: true`; a rerun skips the finished scans"),
    ("Batch: an output without its sidecar (a run killed between the two)", "test_batch_redoes_an_output_without_sidecar",
     "that scan is redone, finished ones skipped"),
    ("Libraries that print: ITK on file descriptor 2, nibabel's header-fix log, pydicom warnings",
     "test_one_line_even_when_libraries_talk_in_a_real_process",
     "still one line per error (ITK's own words inside it), nothing on success; `--debug` shows the warnings and logs"),
    ("A bug: an unexpected exception inside a command", "test_internal_error_is_one_line",
     "exit 1, one line `medsr: internal error: ...`, traceback only with `--debug`"),
    ("`--overwrite` aimed at a folder of other files, or at the input's parent folder",
     "test_overwrite_never_deletes_a_users_folder", "refused, exit 2; the folder is untouched"),
    ("`-o` whose JSON sidecar path holds someone else's file", "test_foreign_sidecar_is_not_replaced",
     "refused before any work, exit 2"),
]  # fmt: skip
