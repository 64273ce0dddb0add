"""The explorer's colours and words, read from its static files: contrast (WCAG 2.1), colour-blind safety
(Machado, Oliveira & Fernandes 2009 simulation), and the explanations the page must give."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the explorer needs the 'explorer' extra")
from gradclip.explorer.server import STATIC

COMMON = (STATIC / "common.js").read_text()
PAGE = (STATIC / "index.html").read_text()
CSS = (STATIC / "style.css").read_text()


def _palette(name: str) -> dict[str, str]:
    body = re.search(rf"export const {name} = \{{([^}}]*)\}}", COMMON).group(1)
    return dict(re.findall(r'(\w+): "(#[0-9A-Fa-f]{6})"', body))


def _linear(hex_colour: str) -> np.ndarray:
    c = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _contrast(a: str, b: str) -> float:
    """WCAG 2.1 contrast ratio (L1 + 0.05) / (L2 + 0.05) of relative luminances."""
    la, lb = (float(np.dot([0.2126, 0.7152, 0.0722], _linear(c))) for c in (a, b))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def _lab(linear_rgb: np.ndarray) -> np.ndarray:
    xyz = (
        np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear_rgb
    )
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


# Machado et al. (2009), severity 1.0, on linear RGB.
DICHROMACY = {
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                     [-0.01182, 0.04294, 0.968881]],
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                   [-0.003882, -0.048116, 1.051998]],
}  # fmt: skip


def test_known_contrast_ratios():
    assert _contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert _contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_method_lines_have_3_to_1_against_their_white_halo_and_text_4_5_to_1():
    lines, text = _palette("COLORS"), _palette("TEXT_COLORS")
    assert set(lines) == set(text) == {"none", "norm", "value"}
    for method, colour in lines.items():
        assert _contrast(colour, "#ffffff") >= 3.0, (method, colour)
        assert _contrast(text[method], "#ffffff") >= 4.5, (method, text[method])


@pytest.mark.parametrize(
    ("fg", "bg"),
    [("#1a1a1a", "#f6f6f6"), ("#262626", "#ffffff"), ("#b00020", "#fff0f2"), ("#00704F", "#ffffff"),
     ("#d7e3ff", "#1d2233"), ("#1a1a1a", "#eef3fb"), ("#444444", "#ffffff"), ("#333333", "#ffffff")],
)  # fmt: skip
def test_page_text_colours_have_4_5_to_1(fg, bg):
    def in_css(c: str) -> bool:  # #444444 may be written #444
        short = "#" + c[1::2] if c[1::2] == c[2::2] else None
        return c.lower() in CSS.lower() or (
            short is not None and re.search(rf"{short}\b", CSS.lower()) is not None
        )

    assert in_css(fg) and (bg == "#ffffff" or in_css(bg))
    assert _contrast(fg, bg) >= 4.5


@pytest.mark.parametrize("kind", sorted(DICHROMACY))
def test_methods_stay_apart_under_colour_blindness(kind):
    # CIE76 distance between simulated colours; the old red/orange pair came to 23 under deuteranopia.
    sims = [_lab(np.clip(np.array(DICHROMACY[kind]) @ _linear(c), 0, 1)) for c in _palette("COLORS").values()]
    assert min(float(np.linalg.norm(a - b)) for a, b in itertools.combinations(sims, 2)) > 30


def test_methods_also_differ_in_line_style():
    dashes = re.search(r"export const DASHES = \{([^}]*)\}", COMMON).group(1)
    styles = dict(re.findall(r"(\w+): (\[[^\]]*\])", dashes))
    assert len(set(styles.values())) == 3


@pytest.mark.parametrize(
    "phrase",
    ["global", "not one per layer", "not changed at all", "max-norm of 1.0 is a common default",
     "just above their typical range", "Occasional clips are healthy", "nearly every step",
     "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)", "LSTMs and GRUs",
     "residual connections", "careful initialisation", "direction is kept"],
)  # fmt: skip
def test_the_page_explains_what_the_source_asks(phrase):
    assert phrase in re.sub(r"\s+", " ", PAGE)


def test_each_surface_has_its_own_explanation_and_only_the_cliff_talks_of_the_recurrent_unit():
    blocks = dict(re.findall(r'<div class="explain" data-surface="(\w+)"[^>]*>(.*?)</div>', PAGE, re.S))
    assert set(blocks) == {"cliff", "valley", "bowl"}
    assert "recurrent unit" in blocks["cliff"]
    assert all("recurrent" not in blocks[name] for name in ("valley", "bowl"))
