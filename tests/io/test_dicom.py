import dataclasses

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from osteolens.errors import ImageReadError
from osteolens.io.images import read_image, to_unit_grey


def make_dicom(path, pixels, photometric="MONOCHROME2", **attrs):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    pixels = np.asarray(pixels, dtype=np.uint16)
    frames = 1 if pixels.ndim == 2 else pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome1_with_rescale_window_and_spacing(tmp_path):
    stored = np.array([[100, 200], [300, 400]])
    path = make_dicom(
        tmp_path / "mono1.dcm", stored, "MONOCHROME1",
        RescaleSlope=2, RescaleIntercept=-100, WindowCenter=400, WindowWidth=801,
        PixelSpacing=[0.2, 0.25],
    )
    arr, props = read_image(path)
    assert props.format == "dicom" and props.photometric == "MONOCHROME2"
    assert props.spacing_mm == (0.2, 0.25) and props.spacing_source == "PixelSpacing"
    # by hand: modality value x = 2 * stored - 100 -> 100, 300, 500, 700
    # window (PS3.3 C.11.2.1.2.1) on the unit scale: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped
    x = 2 * stored - 100.0
    y = np.clip((x - 399.5) / 800 + 0.5, 0, 1)
    expected_unit = 1 - y  # MONOCHROME1: high values are dark
    assert np.allclose(to_unit_grey(arr, props), expected_unit, atol=1e-6)
    # brighter stored value must come out darker
    grey = to_unit_grey(arr, props)
    assert grey[0, 0] > grey[1, 1]


def test_imager_pixel_spacing_corrected_for_magnification(tmp_path):
    path = make_dicom(tmp_path / "ips.dcm", np.arange(16).reshape(4, 4),
                      ImagerPixelSpacing=[0.15, 0.15], EstimatedRadiographicMagnificationFactor=1.5)
    _, props = read_image(path)
    assert props.spacing_mm == pytest.approx((0.1, 0.1))
    assert "Magnification" in props.spacing_source


def test_no_voi_uses_full_range(tmp_path):
    path = make_dicom(tmp_path / "plain.dcm", [[10, 20], [30, 50]])
    arr, props = read_image(path)
    assert np.allclose(to_unit_grey(arr, props), [[0, 0.25], [0.5, 1.0]])
    assert props.spacing_mm is None


def _with_text_in(path, good: bytes, bad: bytes):
    """Rewrite a decimal string's bytes in a saved file: pydicom will not write text into a DS itself."""
    data = path.read_bytes()
    assert data.count(good) == 1
    path.write_bytes(data.replace(good, bad))
    return path


def test_an_invalid_window_is_ignored_and_said(tmp_path):
    """A Window Width of 0 (PS3.3 C.11.2.1.2 asks for at least 1) or text in Window Center used to stop a whole batch
    with pydicom's ValueError; the image is read at its full range instead, and the notes say why."""
    pixels = [[10, 20], [30, 50]]
    zero = make_dicom(tmp_path / "w0.dcm", pixels, WindowCenter=30, WindowWidth=0)
    text = _with_text_in(make_dicom(tmp_path / "wt.dcm", pixels, WindowCenter="31.5", WindowWidth=40), b"31.5", b"abcd")
    for path, why in ((zero, "Window Width must be greater than or equal to 1"), (text, "WindowCenter 'abcd' is not a number")):
        arr, props = read_image(path)
        assert np.allclose(to_unit_grey(arr, props), [[0, 0.25], [0.5, 1.0]])
        assert any(why in n and n.endswith("full pixel range used") for n in props.notes), props.notes


def test_text_in_rescale_slope_is_refused_by_name(tmp_path):
    path = _with_text_in(make_dicom(tmp_path / "rs.dcm", [[10, 20], [30, 50]], RescaleSlope="1.25", RescaleIntercept=0),
                         b"1.25", b"x.yz")
    with pytest.raises(ImageReadError, match=r"rs\.dcm: cannot apply the modality rescale: RescaleSlope 'x.yz' is not a number"):
        read_image(path)


@pytest.mark.parametrize("spacing", [[0, 0], [-0.1, 0.1], [1e6, 1e6]])
def test_impossible_pixel_spacing_gives_no_size_in_mm(tmp_path, spacing):
    """A lesion of 2e15 mm2 from a spacing of 1e6 mm helps no one: spacings that cannot be a radiograph's are
    ignored, the next attribute is tried, and the notes say so."""
    _, props = read_image(make_dicom(tmp_path / "s.dcm", np.arange(16).reshape(4, 4), PixelSpacing=spacing))
    assert props.spacing_mm is None and any(n.startswith("PixelSpacing") and "ignored" in n for n in props.notes)
    _, props = read_image(make_dicom(tmp_path / "i.dcm", np.arange(16).reshape(4, 4), PixelSpacing=spacing,
                                     ImagerPixelSpacing=[0.15, 0.15]))
    assert props.spacing_mm == pytest.approx((0.15, 0.15)) and props.spacing_source == "ImagerPixelSpacing"


def test_a_decoder_failure_of_any_kind_names_the_file(tmp_path, monkeypatch):
    """Decoders raise many exception types on malformed files; read_image turns each into an ImageReadError naming
    the file, so that a batch records it and goes on."""
    import osteolens.io.dicom as dicom

    path = make_dicom(tmp_path / "odd.dcm", [[10, 20], [30, 50]])

    def raise_type_error(*_):
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr(dicom, "read_dicom_image", raise_type_error)
    with pytest.raises(ImageReadError, match=r"odd\.dcm: cannot read this DICOM file: TypeError: unsupported operand"):
        read_image(path)


def test_multiframe_refused(tmp_path):
    path = make_dicom(tmp_path / "multi.dcm", np.zeros((3, 4, 4)))
    with pytest.raises(ImageReadError, match="multi-frame"):
        read_image(path)


def test_dicom_named_png_is_read_as_dicom(tmp_path):
    path = make_dicom(tmp_path / "looks_like.png", [[1, 2], [3, 4]])
    _, props = read_image(path)
    assert props.format == "dicom"
    assert pydicom.dcmread(path).Modality == "DX"


def test_voi_lut_sequence_is_applied(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.add_new((0x0028, 0x3002), "US", [4, 0, 8])  # LUT Descriptor: 4 entries from 0, 8-bit output
    item.add_new((0x0028, 0x3006), "US", [0, 100, 200, 255])  # LUT Data
    path = make_dicom(tmp_path / "lut.dcm", [[0, 1], [2, 3]], VOILUTSequence=Sequence([item]))
    arr, props = read_image(path)
    assert props.value_range == (0.0, 255.0)
    assert np.allclose(to_unit_grey(arr, props), np.array([[0, 100], [200, 255]]) / 255)


def _real_radiograph_12bit(btxrd_dir):
    """A real BTXRD radiograph spread over 12 bits, as a CR/DX modality would store it."""
    from PIL import Image

    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000001.png").convert("L"), dtype=np.uint16)
    return grey * 16 + grey // 16


def _dcmcjpeg(option):
    """Compress with DCMTK's dcmcjpeg, the encoder many modalities and PACS use for JPEG Lossless."""
    import shutil
    import subprocess

    def compress(src, dst):
        if shutil.which("dcmcjpeg") is None:
            pytest.fail("dcmcjpeg (Debian package dcmtk) is missing; `make test` installs it")
        subprocess.run(["dcmcjpeg", option, str(src), str(dst)], check=True, capture_output=True)

    return compress


def _pydicom_compress(uid):
    def compress(src, dst):
        ds = pydicom.dcmread(src)
        ds.compress(uid)
        ds.save_as(dst, enforce_file_format=True)

    return compress


@pytest.mark.parametrize(
    "name, compress, expected_uid",
    [
        ("jpeg_lossless_sv1", _dcmcjpeg("+e1"), "1.2.840.10008.1.2.4.70"),
        ("jpeg_lossless", _dcmcjpeg("+el"), "1.2.840.10008.1.2.4.57"),
        ("jpeg2000_lossless", _pydicom_compress("1.2.840.10008.1.2.4.90"), "1.2.840.10008.1.2.4.90"),
        ("jpeg_ls_lossless", _pydicom_compress("1.2.840.10008.1.2.4.80"), "1.2.840.10008.1.2.4.80"),
        ("rle_lossless", _pydicom_compress("1.2.840.10008.1.2.5"), "1.2.840.10008.1.2.5"),
    ],
)
def test_compressed_radiographs_decode_to_the_same_pixels(btxrd_dir, tmp_path, name, compress, expected_uid):
    """Hospital radiographs usually arrive compressed; each lossless transfer syntax must decode
    to exactly the pixels of the uncompressed file, so the analysis cannot differ."""
    plain = make_dicom(tmp_path / "plain.dcm", _real_radiograph_12bit(btxrd_dir), "MONOCHROME1",
                       ImagerPixelSpacing=[0.143, 0.143])
    packed = tmp_path / f"{name}.dcm"
    compress(plain, packed)
    assert pydicom.dcmread(packed, stop_before_pixels=True).file_meta.TransferSyntaxUID == expected_uid

    want, want_props = read_image(plain)
    got, got_props = read_image(packed)
    assert dataclasses.replace(got_props, path=want_props.path) == want_props
    assert np.array_equal(got, want)
    assert np.array_equal(to_unit_grey(got, got_props), to_unit_grey(want, want_props))


def test_lossy_jpeg_radiograph_is_read(btxrd_dir, tmp_path):
    """12-bit lossy JPEG (Extended, Process 4) is still common in older archives: it must decode,
    and stay close to the original (lossy, so not equal)."""
    plain = make_dicom(tmp_path / "plain.dcm", _real_radiograph_12bit(btxrd_dir), ImagerPixelSpacing=[0.143, 0.143])
    packed = tmp_path / "extended.dcm"
    _dcmcjpeg("+ee")(plain, packed)
    assert pydicom.dcmread(packed, stop_before_pixels=True).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.51"
    want, want_props = read_image(plain)
    got, got_props = read_image(packed)
    error = np.abs(to_unit_grey(got, got_props) - to_unit_grey(want, want_props))
    assert got.shape == want.shape and error.mean() < 0.01 and error.max() < 0.1


def test_colour_dicom_in_ycbcr_comes_out_as_the_original_rgb(btxrd_dir, tmp_path):
    """Colour secondary captures arrive as RGB, as YBR_FULL, or JPEG-compressed as YBR_FULL_422;
    all must give back the same RGB (pydicom converts YCbCr once; converting again shifted every
    pixel by about 50 grey levels)."""
    from PIL import Image
    from pydicom.pixels import convert_color_space

    rgb = np.asarray(Image.open(btxrd_dir / "images" / "IMG000031.png").convert("RGB")).copy()
    rgb[..., 0] = np.clip(rgb[..., 0].astype(int) + 40, 0, 255)  # tinted, so a channel mix-up shows

    def colour_dicom(path, pixels, photometric):
        ds = pydicom.dcmread(make_dicom(tmp_path / "grey.dcm", np.zeros(rgb.shape[:2])))
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
        ds.save_as(path, enforce_file_format=True)
        return path

    plain = colour_dicom(tmp_path / "rgb.dcm", rgb, "RGB")
    ybr = colour_dicom(tmp_path / "ybr.dcm", convert_color_space(rgb, "RGB", "YBR_FULL"), "YBR_FULL")
    jpeg = tmp_path / "jpeg.dcm"
    _dcmcjpeg("+eb")(plain, jpeg)
    assert pydicom.dcmread(jpeg).PhotometricInterpretation == "YBR_FULL_422"
    for path, tolerance in ((plain, 0), (ybr, 1), (jpeg, 3)):
        arr, props = read_image(path)
        assert props.photometric == "RGB" and arr.shape == rgb.shape
        assert np.abs(arr.astype(float) - rgb).mean() <= tolerance, path.name


def test_for_processing_radiograph_refused(tmp_path):
    path = make_dicom(tmp_path / "raw.dcm", [[1, 2], [3, 4]], PresentationIntentType="FOR PROCESSING")
    with pytest.raises(ImageReadError, match="raw.dcm.*FOR PROCESSING.*FOR PRESENTATION"):
        read_image(path)
    presented = make_dicom(tmp_path / "shown.dcm", [[1, 2], [3, 4]], PresentationIntentType="FOR PRESENTATION")
    assert read_image(presented)[1].format == "dicom"


def test_truncated_compressed_dicom_named_as_truncated(btxrd_dir, tmp_path):
    plain = make_dicom(tmp_path / "plain.dcm", _real_radiograph_12bit(btxrd_dir))
    packed = tmp_path / "packed.dcm"
    _dcmcjpeg("+e1")(plain, packed)
    data = packed.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.dcm: truncated DICOM"):
        read_image(tmp_path / "cut.dcm")
    (tmp_path / "header.dcm").write_bytes(data[:600])  # cut before the pixel data starts
    with pytest.raises(ImageReadError, match=r"header\.dcm: DICOM has no pixel data \(Digital X-Ray .*cut short"):
        read_image(tmp_path / "header.dcm")


def _framed(native, pad_value, border=24):
    """``native`` inside a border of ``pad_value`` on the left and right, as a detector pads a
    narrower field to its full matrix."""
    out = np.full((native.shape[0], native.shape[1] + 2 * border), pad_value, dtype=np.uint16)
    out[:, border:border + native.shape[1]] = native
    return out


def test_pixel_padding_is_left_out_of_the_range_and_shown_black(btxrd_dir, tmp_path):
    native = _real_radiograph_12bit(btxrd_dir)  # 0..4095, stored in 16 bits
    reference = to_unit_grey(*read_image(make_dicom(tmp_path / "native.dcm", native, BitsStored=16, HighBit=15)))
    padded = make_dicom(tmp_path / "padded.dcm", _framed(native, 65535), BitsStored=16, HighBit=15,
                        PixelPaddingValue=65535)
    arr, props = read_image(padded)
    grey = to_unit_grey(arr, props)
    # without the padding rule the image would be squeezed into the darkest 1/16 of the range
    # and framed in white; with it the radiograph is exactly the unpadded file's, framed in black
    assert np.array_equal(grey[:, 24:-24], reference)
    assert np.all(grey[:, :24] == 0) and np.all(grey[:, -24:] == 0)
    assert any("padding" in note for note in props.notes)


def test_pixel_padding_range_in_a_windowed_monochrome1_radiograph(btxrd_dir, tmp_path):
    # stored 100..4095, dense as dark (MONOCHROME1); the padding is stored low, which this
    # photometry would show white without the padding rule
    native = 4095 - _real_radiograph_12bit(btxrd_dir).astype(np.int64) * 3995 // 4095
    window = dict(WindowCenter=2048, WindowWidth=4096)
    reference = to_unit_grey(*read_image(make_dicom(tmp_path / "native.dcm", native, "MONOCHROME1", **window)))
    frame = _framed(native, 50)
    frame[:, :3] = 0  # noise in the padding, covered by the range
    padded = make_dicom(tmp_path / "padded.dcm", frame, "MONOCHROME1", PixelPaddingValue=50,
                        PixelPaddingRangeLimit=0, **window)
    grey = to_unit_grey(*read_image(padded))
    assert np.array_equal(grey[:, 24:-24], reference)
    assert np.all(grey[:, :24] == 0) and np.all(grey[:, -24:] == 0)
    assert reference.max() > 0.9  # the real radiograph does reach white


def test_a_file_of_padding_only_is_refused(tmp_path):
    path = make_dicom(tmp_path / "empty.dcm", np.full((64, 64), 7), PixelPaddingValue=7)
    with pytest.raises(ImageReadError, match="every pixel is padding"):
        read_image(path)


def _bare_copy(src, dst, implicit: bool = True):
    """``src`` written again as a bare dataset: no preamble and no file meta header, as some older exporters store."""
    ds = pydicom.dcmread(src)
    ds.file_meta, ds.preamble = pydicom.dataset.FileMetaDataset(), None
    ds.save_as(dst, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
    assert not pydicom.misc.is_dicom(dst)
    return dst


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit_vr", "explicit_vr"])
def test_a_bare_dataset_reads_as_its_part10_file(btxrd_dir, tmp_path, implicit):
    part10 = make_dicom(tmp_path / "part10.dcm", _real_radiograph_12bit(btxrd_dir), "MONOCHROME1",
                        WindowCenter=2048, WindowWidth=4096, PixelSpacing=[0.14, 0.14])
    bare = _bare_copy(part10, tmp_path / "IM0001", implicit)
    expected, expected_props = read_image(part10)
    arr, props = read_image(bare)
    assert np.array_equal(arr, expected) and props.value_range == expected_props.value_range
    assert props.spacing_mm == (0.14, 0.14) and props.photometric == "MONOCHROME2"
    syntax = "Implicit VR Little Endian" if implicit else "Explicit VR Little Endian"
    assert f"bare dataset (no file meta header): read as {syntax}" in props.notes


def test_a_bare_dataset_with_compressed_pixels_or_garbage_is_refused_by_name(btxrd_dir, tmp_path):
    from pydicom.uid import RLELossless

    ds = pydicom.dcmread(make_dicom(tmp_path / "part10.dcm", _real_radiograph_12bit(btxrd_dir)))
    ds.compress(RLELossless)
    ds.file_meta, ds.preamble = pydicom.dataset.FileMetaDataset(), None
    ds.save_as(tmp_path / "rle", implicit_vr=False, little_endian=True, enforce_file_format=False)
    with pytest.raises(ImageReadError, match=r"rle: a bare DICOM dataset .* compressed pixel data"):
        read_image(tmp_path / "rle")
    # bytes that only start like a dataset's first element
    (tmp_path / "junk").write_bytes(b"\x08\x00\x16\x00UI\x1c\x00" + bytes(range(256)) * 3)
    with pytest.raises(ImageReadError, match="junk: unreadable DICOM: starts like a bare DICOM dataset .* no valid SOP"):
        read_image(tmp_path / "junk")
