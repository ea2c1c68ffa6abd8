import numpy as np
import pytest
from PIL import Image

from osteolens.errors import ImageReadError
from osteolens.io.images import read_image, read_mask, sniff_format, to_unit_grey


def test_reads_real_btxrd_radiograph(btxrd_dir):
    arr, props = read_image(btxrd_dir / "images" / "IMG000001.png")
    assert arr.shape == (256, 256) and arr.dtype == np.uint8
    assert props.format == "png" and props.channels == 1 and props.bits == 8
    assert props.spacing_mm is None
    grey = to_unit_grey(arr, props)
    assert grey.dtype == np.float32 and grey.min() >= 0 and grey.max() <= 1
    assert np.allclose(grey, arr / 255.0, atol=1e-6)


def test_reads_real_colour_radiograph_as_rgb(btxrd_dir):
    # BTXRD keeps 45 colour images as RGB PNG
    rgb = btxrd_dir / "images" / "IMG001446.png"
    arr, props = read_image(rgb)
    assert arr.shape == (256, 256, 3) and props.channels == 3
    grey = to_unit_grey(arr, props)
    expected = (arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114) / 255
    assert np.allclose(grey, expected, atol=1e-5)


def test_sixteen_bit_png_keeps_its_values(tmp_path):
    values = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    path = tmp_path / "x16.png"
    Image.fromarray(values).save(path)
    arr, props = read_image(path)
    assert arr.dtype == np.uint16 and props.bits == 16
    assert arr.tolist() == values.tolist()
    assert props.value_range == (0.0, 65535.0)
    assert np.allclose(to_unit_grey(arr, props), values / 65535.0)


@pytest.mark.parametrize("depth", [10, 12, 14])
def test_a_detector_image_in_a_sixteen_bit_file_is_scaled_to_its_own_depth(tmp_path, btxrd_dir, depth):
    """A 12-bit radiograph saved as 16-bit PNG or TIFF reads as the same grey as its 8-bit copy, not nearly black."""
    grey8 = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png"))
    values = (grey8.astype(np.uint16) << (depth - 8))  # 0 .. 2**depth - 2**(depth - 8)
    for suffix in ("png", "tif"):
        path = tmp_path / f"r{depth}.{suffix}"
        Image.fromarray(values).save(path)
        arr, props = read_image(path)
        assert props.bits == 16 and props.value_range == (0.0, float(2**depth - 1))
        assert any(f"values fit {depth} of the 16 bits" in n for n in props.notes)
        ref, ref_props = read_image(btxrd_dir / "images" / "IMG000004.png")
        assert np.abs(to_unit_grey(arr, props) - to_unit_grey(ref, ref_props)).max() < 1.01 / 255


def test_truncated_jpeg_is_refused_with_its_name(tmp_path, btxrd_dir):
    arr, _ = read_image(btxrd_dir / "images" / "IMG000001.png")
    full = tmp_path / "full.jpg"
    Image.fromarray(arr).save(full, quality=95)
    cut = tmp_path / "cut.jpg"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as err:
        read_image(cut)
    assert "cut.jpg" in str(err.value) and "truncated" in str(err.value)


def test_a_tiff_with_a_damaged_header_is_named_without_python_internals(tmp_path, btxrd_dir):
    Image.open(btxrd_dir / "images" / "IMG000001.png").save(tmp_path / "film.tif")
    data = bytearray((tmp_path / "film.tif").read_bytes())
    data[4:8] = b"\xff\xff\xff\x7f"  # where the first image directory starts: past the end of the file
    (tmp_path / "film.tif").write_bytes(bytes(data))
    with pytest.warns(UserWarning), pytest.raises(ImageReadError) as err:  # Pillow warns of the EXIF it cannot read
        read_image(tmp_path / "film.tif")
    assert str(err.value).endswith("film.tif: cannot decode TIFF: its TIFF header is damaged or of a kind Pillow cannot read")


def test_text_file_named_png_is_refused(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("patient notes, not an image\n")
    with pytest.raises(ImageReadError) as err:
        read_image(fake)
    assert "notes.png" in str(err.value) and "text" in str(err.value) and "not a supported image" in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(tmp_path / "empty.png")



def png_claiming(path, width: int, height: int):
    """A tiny PNG whose header claims ``width`` x ``height`` grey pixels (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path):
    # 420 megapixels: over osteolens's 400, under the 800 where Pillow itself would refuse (it only warns)
    bomb = png_claiming(tmp_path / "bomb.png", 21_000, 20_000)
    assert bomb.stat().st_size < 200
    with pytest.raises(ImageReadError, match=r"bomb.png: image is 21000 x 20000 px \(420 megapixels\), over the 400 "
                                             r"megapixels osteolens reads"):
        read_image(bomb)
    # over twice Pillow's own limit, Image.open refuses it first: the message is still ours
    huge = png_claiming(tmp_path / "huge.png", 30_000, 30_000)
    with pytest.raises(ImageReadError, match=r"huge.png: image is 900 megapixels, over the 400 megapixels osteolens "
                                             r"reads \(a guard"):
        read_image(huge)
    from tests.io.test_dicom import make_dicom

    dicom = make_dicom(tmp_path / "bomb.dcm", np.zeros((4, 4)), Rows=30_000, Columns=20_000)
    with pytest.raises(ImageReadError, match=r"bomb.dcm: image is 20000 x 30000 px \(600 megapixels\)"):
        read_image(dicom)


def test_format_is_told_by_content_not_extension(tmp_path, btxrd_dir):
    arr, _ = read_image(btxrd_dir / "images" / "IMG000001.png")
    path = tmp_path / "really_a_jpeg.png"
    Image.fromarray(arr).save(path, format="JPEG")
    assert sniff_format(path) == "jpeg"
    out, props = read_image(path)
    assert props.format == "jpeg" and out.shape == (256, 256)


def test_a_bmp_reads_as_the_png_it_was_saved_from(tmp_path, btxrd_dir):
    """Some older consoles and screen exports write radiographs as Windows bitmaps: grey and colour read as the PNG."""
    arr, _ = read_image(btxrd_dir / "images" / "IMG000001.png")
    Image.fromarray(arr).save(tmp_path / "knee.bmp")
    Image.fromarray(arr).convert("RGB").save(tmp_path / "colour", format="BMP")  # no suffix: told by its content
    for name in ("knee.bmp", "colour"):
        out, props = read_image(tmp_path / name)
        assert props.format == "bmp" and np.array_equal(out if out.ndim == 2 else out[..., 0], arr)
    (tmp_path / "cut.bmp").write_bytes((tmp_path / "knee.bmp").read_bytes()[:3000])
    with pytest.raises(ImageReadError, match=r"cut\.bmp.*(truncated|BMP)"):
        read_image(tmp_path / "cut.bmp")


def test_mask_size_mismatch_is_named(tmp_path):
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ImageReadError, match="differs from image size"):
        read_mask(tmp_path / "m.png", expected_shape=(10, 10))
    assert read_mask(tmp_path / "m.png", expected_shape=(10, 12)).shape == (10, 12)


def test_a_jpeg_mask_keeps_its_lesion_size_and_a_grey_picture_is_not_a_mask(btxrd_dir, tmp_path):
    truth = read_mask(btxrd_dir / "masks" / "IMG000004.png")
    Image.fromarray(truth.astype(np.uint8) * 255).save(tmp_path / "m.jpg", quality=75)
    ringing = np.asarray(Image.open(tmp_path / "m.jpg"))
    assert ((ringing > 0) & ~truth).sum() > 0.2 * truth.sum()  # what "any non-zero" would have added
    assert (read_mask(tmp_path / "m.jpg") == truth).all()
    labels = truth.astype(np.uint8)
    labels[:, :128] *= 2  # a label map keeps every label
    Image.fromarray(labels).save(tmp_path / "labels.png")
    assert (read_mask(tmp_path / "labels.png") == truth).all()
    Image.open(btxrd_dir / "images" / "IMG000004.png").save(tmp_path / "picture.png")
    with pytest.raises(ImageReadError, match=r"picture\.png: not a mask: \d+% of its pixels are grey levels"):
        read_mask(tmp_path / "picture.png")


def test_tiff_sixteen_bit_and_colour(tmp_path):
    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(values).save(tmp_path / "g16.tif")
    arr, props = read_image(tmp_path / "g16.tif")
    assert props.format == "tiff" and arr.dtype == np.uint16 and arr.tolist() == values.tolist()
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "c.tiff")
    arr, props = read_image(tmp_path / "c.tiff")
    assert arr.shape == (4, 5, 3) and props.channels == 3
    assert np.allclose(to_unit_grey(arr, props), 200 * 0.299 / 255, atol=1e-6)


# the transpose that turns a stored image upright, for each EXIF Orientation (TIFF 6.0 tag 274)
UPRIGHT = {
    2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud, 5: np.transpose,
    6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).T, 8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied_so_the_image_reads_upright(tmp_path, btxrd_dir, orientation):
    """A radiograph stored sideways with an EXIF Orientation tag (phone photos, some exports) is read
    the way every viewer shows it; its stored size is in the notes. A non-square crop shows the turn."""
    upright = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png"))[:, 40:240]  # 256 x 200
    inverse = {6: 8, 8: 6}.get(orientation, orientation)  # 2, 3, 4, 5, 7 are their own inverses
    stored = np.ascontiguousarray(UPRIGHT[inverse](upright))
    assert np.array_equal(UPRIGHT[orientation](stored), upright)
    for suffix in ("tif", "png", "jpg"):
        path = tmp_path / f"turned{orientation}.{suffix}"
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(stored).save(path, exif=exif, **({"quality": 95} if suffix == "jpg" else {}))
        arr, props = read_image(path)
        assert props.orientation == orientation and arr.shape == upright.shape
        assert any(f"EXIF Orientation {orientation} applied" in n and f"stored {stored.shape[1]}x{stored.shape[0]}" in n
                   for n in props.notes)
        error = np.abs(arr.astype(int) - upright.astype(int))
        if suffix != "jpg":  # lossless (uncompressed TIFF: Pillow 13's memory-mapped read scrambled 5-8)
            assert error.max() == 0
        else:  # JPEG at quality 95; a wrong turn or mirror would differ by tens of grey levels
            assert error.mean() < 1.5


def test_exif_orientation_1_and_no_exif_leave_the_pixels_as_stored(tmp_path, btxrd_dir):
    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png"))[:, 40:240]
    exif = Image.Exif()
    exif[0x0112] = 1
    Image.fromarray(grey).save(tmp_path / "one.tif", exif=exif)
    Image.fromarray(grey).save(tmp_path / "none.tif")
    for name in ("one.tif", "none.tif"):
        arr, props = read_image(tmp_path / name)
        assert props.orientation is None and np.array_equal(arr, grey)
        assert not any("EXIF" in n for n in props.notes)


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_transparency_is_composited_over_black(tmp_path, btxrd_dir, mode):
    """A radiograph exported with a transparent surround (white under the alpha) reads as a viewer shows it: the
    surround black, the image as stored; an opaque alpha changes nothing and is not mentioned."""
    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png").convert("L"))
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:, :40] = 0
    stored = grey.copy()
    stored[:, :40] = 255  # what the file keeps under the transparent pixels
    if mode == "LA":
        im = Image.merge("LA", [Image.fromarray(stored), Image.fromarray(alpha)])
    else:
        im = Image.merge("RGBA", [Image.fromarray(stored)] * 3 + [Image.fromarray(alpha)])
    im.save(tmp_path / "t.png")
    arr, props = read_image(tmp_path / "t.png")
    luma = arr if arr.ndim == 2 else arr.mean(axis=2)
    assert (luma[:, :40] == 0).all()
    assert np.array_equal(luma[:, 40:], grey[:, 40:])
    assert "transparency composited over black (15.6% of pixels not opaque)" in props.notes
    Image.merge("LA", [Image.fromarray(grey), Image.fromarray(np.full(grey.shape, 255, np.uint8))]).save(tmp_path / "o.png")
    arr, props = read_image(tmp_path / "o.png")
    assert np.array_equal(arr, grey) and not any("transparency" in n for n in props.notes)


def test_floating_point_tiff_keeps_negative_values_and_refuses_nan(tmp_path, btxrd_dir):
    """A 32-bit float TIFF has no container range: it is scaled from min(0, its lowest value) to its highest, so
    values below zero keep their contrast instead of all turning black; a NaN or infinite pixel is refused by name."""
    grey = np.asarray(Image.open(btxrd_dir / "images" / "IMG000004.png").convert("L")).astype(np.float32)
    shifted = grey / 255.0 - 0.5  # -0.5 .. +0.5
    Image.fromarray(shifted, "F").save(tmp_path / "f.tif")
    arr, props = read_image(tmp_path / "f.tif")
    assert props.value_range == (pytest.approx(float(shifted.min())), pytest.approx(float(shifted.max())))
    unit = to_unit_grey(arr, props)
    expected = (grey - grey.min()) / (grey.max() - grey.min())
    assert np.abs(unit - expected).max() < 1e-5
    shifted[10, 20] = np.nan
    shifted[11, 20] = np.inf
    Image.fromarray(shifted, "F").save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match=r"nan\.tif: 2 of 65536 pixels are not numbers \(NaN or infinity\)"):
        read_image(tmp_path / "nan.tif")
