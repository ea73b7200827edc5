"""The PNG writer of every figure: the pixels matplotlib drew, the resolution, nothing else."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from aqr_cli.io.png import SIGNATURE, encode_png, figure_png


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk, after checking the signature and each CRC."""
    assert data[:8] == SIGNATURE
    out, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, payload = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + payload), kind
        out.append((kind, payload))
        at += 12 + length
    return out


def test_random_pixels_decode_to_themselves():
    # random bytes wrap around in every channel (the Up filter is modulo 256), alpha included
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    rgba[5] = rgba[4]                                      # a repeated row: filtered to zeros
    data = encode_png(rgba, dpi=110)
    im = Image.open(io.BytesIO(data))
    assert im.mode == "RGBA" and im.size == (53, 37)
    assert np.array_equal(np.asarray(im), rgba)
    assert [k for k, _ in _chunks(data)] == [b"IHDR", b"pHYs", b"IDAT", b"IEND"]
    assert im.info["dpi"] == pytest.approx((110, 110), abs=0.01)


def test_a_strided_view_is_encoded_as_its_values():
    base = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    view = base[::2, ::3]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(view)))), view)


def test_without_dpi_no_resolution_chunk_and_the_level_is_used():
    flat = np.full((64, 64, 4), 200, dtype=np.uint8)
    fast, small = encode_png(flat, level=0), encode_png(flat, level=9)
    assert b"pHYs" not in fast and len(fast) > 4 * 64 * 64 > 10 * len(small)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(small))), flat)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 4), np.float32),
                                 np.zeros((0, 4, 4), np.uint8), np.zeros((4, 4), np.uint8)])
def test_anything_but_rgba_bytes_is_refused(bad):
    with pytest.raises(ValueError, match="uint8 \\[H, W, 4\\]"):
        encode_png(bad)


def _figure(dpi=50):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(np.arange(12.0).reshape(3, 4), cmap="magma")
    ax.plot([0, 3], [0, 2], color="lime")
    ax.set_title("t")
    return fig


@pytest.mark.parametrize("dpi", [None, 80])
def test_a_figure_gives_the_pixels_matplotlib_saves(dpi):
    kwargs = {} if dpi is None else {"dpi": dpi}
    reference = io.BytesIO()
    _figure().savefig(reference, format="png", **kwargs)
    want = Image.open(reference)
    data = figure_png(_figure(), dpi=dpi)
    got = Image.open(io.BytesIO(data))
    assert got.mode == want.mode == "RGBA"
    assert np.array_equal(np.asarray(got), np.asarray(want))
    assert got.info["dpi"] == want.info["dpi"]             # pixels per metre, rounded alike
    assert got.size == ((150, 100) if dpi is None else (240, 160))
