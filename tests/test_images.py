"""The one image decoder (dbksvd.data.images) and every path that reads an image through it: the
image-folder dataset, the encoders' file inputs and the explorer's uploads."""

import io

import numpy as np
import pytest
from PIL import Image

from dbksvd.data import FolderDataset, SkipItem
from dbksvd.data.images import decode_image, to_rgb
from dbksvd.encoders import Encoder
from dbksvd.errors import DataFileError, ImageError
from dbksvd.web.run import MAX_IMAGE_PIXELS, UPLOAD_FORMATS, open_upload

RED, BLUE = (220, 20, 20), (20, 20, 220)
ORIENTATION = 0x0112  # the EXIF tag


def _upright() -> Image.Image:
    """20 px wide, 40 px high: red on top, blue below."""
    pixels = np.zeros((40, 20, 3), np.uint8)
    pixels[:20], pixels[20:] = RED, BLUE
    return Image.fromarray(pixels)


@pytest.fixture
def rotated_jpeg(tmp_path):
    """A JPEG stored sideways (40 x 20: red on the right) with EXIF Orientation 6 ("rotate 90°
    clockwise to display"), as a phone writes a portrait photo."""
    path = tmp_path / "photos" / "portrait.jpg"
    path.parent.mkdir()
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    _upright().transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", exif=exif, quality=95)
    with Image.open(path) as stored:
        assert stored.size == (40, 20) and stored.getexif()[ORIENTATION] == 6
    return path


def _assert_upright(image: Image.Image) -> None:
    assert image.mode == "RGB" and image.size == (20, 40)
    pixels = np.asarray(image).astype(int)
    assert np.abs(pixels[:16].reshape(-1, 3) - RED).max() < 40  # red on top
    assert np.abs(pixels[24:].reshape(-1, 3) - BLUE).max() < 40  # blue below


class _Recorder(Encoder):
    """An image encoder that keeps the images it is given (the real input path, no weights)."""

    name = "recorder"
    modalities = ("image",)

    def __init__(self):
        super().__init__()
        self.seen = []

    def dim(self, modality):
        return 2

    def spec(self):
        return {"name": self.name}

    def _embed_images(self, images):
        self.seen.extend(images)
        return np.zeros((len(images), 2), np.float32)


def test_exif_rotated_jpeg_decodes_upright_on_every_path(rotated_jpeg):
    _assert_upright(decode_image(rotated_jpeg))
    _assert_upright(decode_image(rotated_jpeg.read_bytes()))
    folder = FolderDataset(rotated_jpeg.parent)
    _assert_upright(folder.load(next(folder.items())))
    encoder = _Recorder()
    encoder.encode_images([rotated_jpeg, str(rotated_jpeg)])
    for image in encoder.seen:
        _assert_upright(image)
    _assert_upright(open_upload(rotated_jpeg.read_bytes()))


def test_garbage_and_truncated_files_give_one_typed_line(tmp_path):
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good, "PNG")
    (tmp_path / "truncated.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8 not really a jpeg\n" * 10)
    for name in ("truncated.png", "garbage.jpg"):
        with pytest.raises(ImageError, match=f"{name} is not a readable image") as info:
            decode_image(tmp_path / name)
        assert "\n" not in str(info.value) and isinstance(info.value, DataFileError)
        assert info.value.reason.split(":")[0] in ("OSError", "UnidentifiedImageError", "SyntaxError")
        with pytest.raises(ImageError, match="is not a readable image"):
            _Recorder().encode_images([tmp_path / name])
    with pytest.raises(ImageError, match=r"^the upload is not a readable image \(UnidentifiedImageError") as info:
        open_upload(b"not an image")
    assert "0x" not in str(info.value)  # no object address in the message
    with pytest.raises(ImageError, match="the upload is not a readable image"):
        open_upload(good.getvalue()[:100])
    folder = FolderDataset(tmp_path)
    for item in folder.items():
        with pytest.raises(SkipItem, match="^unreadable image: (OSError|UnidentifiedImageError|SyntaxError): "):
            folder.load(item)


def test_missing_file_is_a_data_file_error_not_an_image_error(tmp_path):
    with pytest.raises(DataFileError, match="image file not found") as info:
        decode_image(tmp_path / "nothing.png")
    assert not isinstance(info.value, ImageError)


def test_pixel_bound_and_formats():
    png = io.BytesIO()
    Image.new("L", (30, 20), 128).save(png, "PNG")
    assert decode_image(png.getvalue(), max_pixels=600).size == (30, 20)
    with pytest.raises(ImageError, match="the image is 30 x 20 pixels; at most 599 pixels") as info:
        decode_image(png.getvalue(), max_pixels=599)
    assert info.value.reason.startswith("DecompressionBombError: ")
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(png.getvalue(), formats=("JPEG",))
    assert decode_image(png.getvalue(), formats=UPLOAD_FORMATS).mode == "RGB"
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    bomb = io.BytesIO()
    Image.new("1", (side, side)).save(bomb, "PNG")  # a few KB, more pixels than an upload may have
    with pytest.raises(ImageError, match=f"the upload is {side} x {side} pixels"):
        open_upload(bomb.getvalue())


def test_to_rgb_composites_transparency_on_white_and_scales_sixteen_bits():
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), mode="LA")
    assert np.asarray(to_rgb(la)).tolist() == [[[255, 255, 255], [0, 0, 0]]]
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 0, 0])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert np.asarray(to_rgb(palette)).tolist() == [[[255, 255, 255], [200, 0, 0]]]
    deep = Image.fromarray(np.array([[0, 257 * 100, 65535]], np.uint16))
    assert np.asarray(to_rgb(deep))[0, :, 0].tolist() == [0, 100, 255]
    rgb = Image.new("RGB", (3, 3))
    assert to_rgb(rgb) is rgb
