"""The toy world's faces: a deterministic procedural renderer with real identity, batched in torch.

Every photo is a pure function of a standard-normal code ``z`` (B, FACTOR_DIMS): dim i drives factor
``FACTORS[i]``. ``factors_from_gaussian`` maps the code to named factors, ``render`` maps factors to an
image (B, 3, H, W) in [-1, 1], a CelebAMask-HQ label map (B, H, W) int64 and a line sketch
(B, 1, H, W) in [-1, 1] drawn from the same geometry.

Who a photo shows and what it looks like are drawn apart, so that identity is exactly what the LR
contour cannot carry (the paper's problem: from one vague contour, the identity photo decides whose
face comes out). ``IDENTITY_FACTORS`` are fixed per person and are all features a few pixels across,
below the LR contour's resolution (8x8 by default, one LR pixel = 8x8 photo pixels): iris colour and
size, eye shape/tilt/spacing/level, brow thickness/angle/gap/length, nose length/width, mouth width,
lip shape/tint. Everything an 8x8 image shows is drawn afresh for every photo: the coarse look
(``LOOK_FACTORS``: skin tone, hair colour, style and length, hairline, face width/height, jaw) and the
nuisance (``NUISANCE_FACTORS``: pose, expression, lighting, background). So a person's photos differ in
look (as a real person's do with hair dye, tan and lighting), and any two people share a look as often
as two photos of one person do: the coarse look does not identify anyone, and a recogniser (or an
encoder) must read the fine parts. ``with_look`` renders a look-alike: another person in a given
photo's look. Left/right classes follow the person's side (``l_eye`` is on the image's right).

The factor order of ``FACTORS`` is the code layout the shipped toy StyleGAN2 was distilled on (it draws
render(z) for any z ~ N(0, I), whatever dims a split holds fixed), so it never changes. The world's
people, splits and Dataset are ``data.toyfaces.dataset``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Per person: the fine parts, below an 8x8 contour's resolution.
IDENTITY_FACTORS = (
    "eye_colour",
    "eye_width",
    "eye_height",
    "eye_tilt",
    "eye_spacing",
    "eye_level",
    "iris_size",
    "brow_thickness",
    "brow_angle",
    "brow_gap",
    "brow_length",
    "nose_length",
    "nose_width",
    "mouth_width",
    "lip_thickness",
    "lip_tint",
    "mouth_gap",
)
# Per photo: the coarse look (what an 8x8 image shows of a face) ...
LOOK_FACTORS = (
    "face_width",
    "face_height",
    "jaw",
    "skin_tone",
    "hair_colour",
    "hair_style",
    "hair_length",
    "hairline",
    "hair_part",
)
# ... and the nuisance.
NUISANCE_FACTORS = (
    "shift_x",
    "shift_y",
    "rotation",
    "scale",
    "mouth_open",
    "smile",
    "light_angle",
    "light_strength",
    "ambient",
    "bg_r",
    "bg_g",
    "bg_b",
)
PHOTO_FACTORS = LOOK_FACTORS + NUISANCE_FACTORS
# The renderer's code layout (z[:, i] drives FACTORS[i]); fixed: the shipped generator was distilled on it.
FACTORS = LOOK_FACTORS + IDENTITY_FACTORS + NUISANCE_FACTORS
N_IDENTITY = len(IDENTITY_FACTORS)
N_PHOTO = len(PHOTO_FACTORS)
FACTOR_DIMS = len(FACTORS)
IDENTITY_DIMS = tuple(FACTORS.index(n) for n in IDENTITY_FACTORS)
PHOTO_DIMS = tuple(FACTORS.index(n) for n in PHOTO_FACTORS)
LOOK_DIMS = tuple(FACTORS.index(n) for n in LOOK_FACTORS)


def assemble(identity: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """Renderer codes (..., FACTOR_DIMS) from identity codes (..., N_IDENTITY) and photo codes (..., N_PHOTO)."""
    if identity.shape[-1] != N_IDENTITY or photo.shape[-1] != N_PHOTO:
        raise ValueError(
            f"identity and photo codes must end in {N_IDENTITY} and {N_PHOTO} dims, got "
            f"{tuple(identity.shape)} and {tuple(photo.shape)}"
        )
    codes = identity.new_empty(*torch.broadcast_shapes(identity.shape[:-1], photo.shape[:-1]), FACTOR_DIMS)
    codes[..., list(IDENTITY_DIMS)] = identity
    codes[..., list(PHOTO_DIMS)] = photo
    return codes


def with_look(codes: torch.Tensor, look_from: torch.Tensor) -> torch.Tensor:
    """``codes`` (B, FACTOR_DIMS) with the coarse look (``LOOK_FACTORS``) of ``look_from`` (B, FACTOR_DIMS):
    the same people and nuisance, drawn in the other photos' look (look-alikes)."""
    out = codes.clone()
    out[:, list(LOOK_DIMS)] = look_from[:, list(LOOK_DIMS)]
    return out


# Palettes (RGB in [0, 1]) of the per-photo coarse look.
SKIN_TONES = ((0.96, 0.80, 0.69), (0.88, 0.70, 0.56), (0.76, 0.56, 0.42), (0.56, 0.39, 0.27), (0.38, 0.26, 0.18))
HAIR_COLOURS = (
    (0.08, 0.07, 0.07),
    (0.26, 0.17, 0.10),
    (0.47, 0.31, 0.18),
    (0.86, 0.72, 0.45),
    (0.60, 0.25, 0.12),
    (0.72, 0.72, 0.72),
)
# (side length, fringe drop) per hair style: short, medium, long, very long with a fringe.
HAIR_STYLES = ((-0.08, 0.00), (0.22, 0.02), (0.55, 0.00), (0.85, 0.10))
# Iris colours, interpolated continuously by the eye_colour factor (brown .. grey-blue).
IRIS_COLOURS = (
    (0.36, 0.20, 0.09),
    (0.66, 0.42, 0.14),
    (0.50, 0.46, 0.20),
    (0.22, 0.52, 0.28),
    (0.22, 0.42, 0.80),
    (0.55, 0.62, 0.72),
)
SCLERA = (0.96, 0.95, 0.93)
PUPIL = (0.04, 0.03, 0.03)
LIP_RED = (0.78, 0.28, 0.30)
MOUTH_INSIDE = (0.30, 0.06, 0.08)

# CelebAMask-HQ indices of the classes the toy renderer draws.
BACKGROUND, SKIN, NOSE, L_EYE, R_EYE, L_BROW, R_BROW, L_EAR, R_EAR = 0, 1, 2, 4, 5, 6, 7, 8, 9
MOUTH, U_LIP, L_LIP, HAIR, NECK = 10, 11, 12, 13, 17
RENDERED_CLASSES = (BACKGROUND, SKIN, NOSE, L_EYE, R_EYE, L_BROW, R_BROW, L_EAR, R_EAR, MOUTH, U_LIP, L_LIP, HAIR, NECK)


def _uniform(z: torch.Tensor) -> torch.Tensor:
    """Standard-normal values -> (0, 1) through the normal CDF."""
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def _palette_index(u: torch.Tensor, k: int) -> torch.Tensor:
    return (u * k).long().clamp_(0, k - 1)


def factors_from_gaussian(z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Named factors from a standard-normal code.

    z: (B, D) with D >= FACTOR_DIMS; dim i < FACTOR_DIMS drives ``FACTORS[i]``, the rest are unused.
    Returns {name: (B,)} in renderer units (face coordinates span about [-1, 1]; palette factors are int64
    indices, everything else float).
    """
    if z.dim() != 2 or z.shape[1] < FACTOR_DIMS:
        raise ValueError(f"z must be (B, >= {FACTOR_DIMS}), got {tuple(z.shape)}")
    u = _uniform(z[:, :FACTOR_DIMS].float())
    c = {n: u[:, i] for i, n in enumerate(FACTORS)}
    lin = lambda name, lo, hi: lo + (hi - lo) * c[name]
    open_u = c["mouth_open"]
    return {
        "face_width": lin("face_width", 0.46, 0.54),
        "face_height": lin("face_height", 0.63, 0.70),
        "jaw": lin("jaw", 0.10, 0.45),
        "skin_tone": _palette_index(c["skin_tone"], len(SKIN_TONES)),
        "hair_colour": _palette_index(c["hair_colour"], len(HAIR_COLOURS)),
        "hair_style": _palette_index(c["hair_style"], len(HAIR_STYLES)),
        "hair_length": lin("hair_length", -0.05, 0.05),
        "hairline": lin("hairline", -0.50, -0.36),
        "hair_part": lin("hair_part", -0.20, 0.20),
        "eye_colour": c["eye_colour"],
        "eye_width": lin("eye_width", 0.080, 0.125),
        "eye_height": lin("eye_height", 0.032, 0.060),
        "eye_tilt": lin("eye_tilt", -0.30, 0.30),
        "eye_spacing": lin("eye_spacing", 0.165, 0.235),
        "eye_level": lin("eye_level", -0.14, -0.06),
        "iris_size": lin("iris_size", 0.55, 0.95),
        "brow_thickness": lin("brow_thickness", 0.012, 0.038),
        "brow_angle": lin("brow_angle", -0.35, 0.35),
        "brow_gap": lin("brow_gap", 0.075, 0.13),
        "brow_length": lin("brow_length", 0.085, 0.13),
        "nose_length": lin("nose_length", 0.13, 0.25),
        "nose_width": lin("nose_width", 0.045, 0.095),
        "mouth_width": lin("mouth_width", 0.11, 0.19),
        "lip_thickness": lin("lip_thickness", 0.018, 0.040),
        "lip_tint": lin("lip_tint", 0.30, 0.75),
        "mouth_gap": lin("mouth_gap", 0.07, 0.13),
        "shift_x": lin("shift_x", -0.10, 0.10),
        "shift_y": lin("shift_y", -0.10, 0.10),
        "rotation": lin("rotation", -0.20, 0.20),
        "scale": lin("scale", 0.88, 1.12),
        # about 40% of photos have a closed mouth
        "mouth_open": 0.07 * (open_u * 1.7 - 0.7).clamp(min=0.0),
        "smile": lin("smile", -0.03, 0.07),
        "light_angle": lin("light_angle", -math.pi, math.pi),
        "light_strength": lin("light_strength", 0.0, 0.35),
        "ambient": lin("ambient", 0.85, 1.10),
        "bg_r": lin("bg_r", 0.10, 0.95),
        "bg_g": lin("bg_g", 0.10, 0.95),
        "bg_b": lin("bg_b", 0.10, 0.95),
    }


def _coverage(signed: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage in [0, 1] from a signed distance (> 0 inside), px = pixel size."""
    return (0.5 + signed / px).clamp(0.0, 1.0)


def _ellipse(u, v, cu, cv, a, b, px):
    """Coverage of an axis-aligned ellipse (approximate signed distance scaled by the short axis)."""
    r = torch.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2 + 1e-12)
    return _coverage((1.0 - r) * torch.minimum(a, b), px)


def _rotate(u, v, angle):
    c, s = torch.cos(angle), torch.sin(angle)
    return c * u + s * v, -s * u + c * v


def _palette(table, idx: torch.Tensor) -> torch.Tensor:
    return torch.tensor(table, dtype=torch.float32, device=idx.device)[idx]


def _interp_palette(table, t: torch.Tensor) -> torch.Tensor:
    """(B,) in [0, 1] -> (B, 3) piecewise-linear along the palette."""
    pal = torch.tensor(table, dtype=torch.float32, device=t.device)
    x = t.clamp(0, 1) * (len(table) - 1)
    i0 = x.floor().long().clamp(max=len(table) - 2)
    w = (x - i0.float())[:, None]
    return pal[i0] * (1 - w) + pal[i0 + 1] * w


@dataclass
class Render:
    """image (B, 3, H, W) in [-1, 1]; labels (B, H, W) int64 CelebAMask-HQ; sketch (B, 1, H, W) in [-1, 1]."""

    image: torch.Tensor
    labels: torch.Tensor
    sketch: torch.Tensor


def render(factors: dict[str, torch.Tensor], size: int = 64) -> Render:
    """Draw a batch of faces from named factors (as ``factors_from_gaussian`` returns) at ``size``."""
    f = {k: v[:, None, None] for k, v in factors.items()}
    b = next(iter(factors.values())).shape[0]
    dev = next(iter(factors.values())).device
    coords = (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    # Face coordinates: undo the photo's shift, rotation and scale.
    u, v = _rotate(x[None] - f["shift_x"], y[None] - f["shift_y"], f["rotation"])
    u, v = u / f["scale"], v / f["scale"]
    px = (2.0 / size) / f["scale"]
    zero = torch.zeros_like(f["scale"])

    skin = _palette(SKIN_TONES, factors["skin_tone"])[:, :, None, None]
    hair = _palette(HAIR_COLOURS, factors["hair_colour"])[:, :, None, None]
    iris = _interp_palette(IRIS_COLOURS, factors["eye_colour"])[:, :, None, None]
    tint = f["lip_tint"][:, None]
    lips = skin * (1 - tint) + torch.tensor(LIP_RED, device=dev)[None, :, None, None] * tint
    const = lambda rgb: torch.tensor(rgb, device=dev, dtype=torch.float32)[None, :, None, None]
    ang = f["light_angle"]
    light = (torch.cos(ang) * u + torch.sin(ang) * v) / 0.7
    shade = (f["ambient"] * (1 + f["light_strength"] * light))[:, None]

    image = torch.stack([factors["bg_r"], factors["bg_g"], factors["bg_b"]], 1)[:, :, None, None]
    image = image.expand(b, 3, size, size).clone()
    labels = torch.zeros(b, size, size, dtype=torch.long, device=dev)
    detail = torch.zeros_like(labels)  # labels plus the iris, only for the sketch's lines

    def paint(cov, colour, cls):
        nonlocal image, labels
        image = image * (1 - cov[:, None]) + colour * cov[:, None]
        labels = torch.where(cov > 0.5, torch.full_like(labels, cls), labels)

    fw, fh = f["face_width"], f["face_height"]
    fc = 0.02  # face centre (v)
    style = HAIR_STYLES
    side_len = torch.tensor([s[0] for s in style], device=dev)[factors["hair_style"]][:, None, None]
    side_len = side_len + f["hair_length"]
    fringe = torch.tensor([s[1] for s in style], device=dev)[factors["hair_style"]][:, None, None]
    hair_shade = hair * (0.9 + 0.1 * shade)

    # Hair behind the head (long styles): a rounded slab from the crown down to side_len.
    back = torch.minimum(_ellipse(u, v, zero, fc - 0.05, fw * 1.25, fh * 1.15, px), _coverage(side_len - v, px))
    lower = torch.minimum(_coverage(v - fc, px), _coverage(side_len - v, px))
    back = torch.maximum(back, torch.minimum(_coverage(fw * 1.22 - u.abs(), px), lower))
    paint(back, hair_shade, HAIR)
    neck = torch.minimum(_coverage(fw * 0.48 - u.abs(), px), _coverage(v - (fc + 0.2), px))
    paint(neck, skin * shade * 0.85, NECK)
    ear_v = fc + f["eye_level"] + 0.06
    for cls, side in ((L_EAR, 1.0), (R_EAR, -1.0)):
        paint(_ellipse(u, v, side * fw * 0.98, ear_v, 0.06 + zero, 0.11 + zero, px), skin * shade * 0.93, cls)
    # Face: an ellipse whose half-width narrows towards the chin by the jaw factor.
    low = ((v - fc) / fh).clamp(min=0.0)
    half_w = fw * (1 - f["jaw"] * low**2)
    r_face = torch.sqrt((u / half_w) ** 2 + ((v - fc) / fh) ** 2 + 1e-12)
    paint(_coverage((1 - r_face) * fw, px), skin * shade, SKIN)
    # Top hair: inside a head ellipse above a tilted hairline, plus side locks down to side_len.
    head = _ellipse(u, v, zero, fc - 0.04, fw * 1.1, fh * 1.08, px)
    line = f["hairline"] + f["hair_part"] * u + fringe * (1 - (u / fw).clamp(-1, 1) ** 2)
    top = torch.minimum(head, _coverage(line - v, px))
    sides = torch.minimum(torch.minimum(head, _coverage(side_len - v, px)), _coverage(u.abs() - fw * 0.9, px))
    paint(torch.maximum(top, sides), hair_shade, HAIR)

    ev = fc + f["eye_level"]
    for eye_cls, brow_cls, side in ((L_EYE, L_BROW, 1.0), (R_EYE, R_BROW, -1.0)):
        cu = side * f["eye_spacing"]
        # Eye: a tilted ellipse (outer corner up for positive tilt), iris and pupil inside it.
        eu, evv = _rotate(u - cu, v - ev, -side * f["eye_tilt"])
        eye = _ellipse(eu, evv, zero, zero, f["eye_width"], f["eye_height"], px)
        paint(eye, const(SCLERA) * shade.clamp(max=1.05), eye_cls)
        ir = f["eye_height"] * f["iris_size"] * 1.3
        iris_cov = torch.minimum(eye, _ellipse(u, v, cu, ev, ir, ir, px))
        image = image * (1 - iris_cov[:, None]) + iris * shade * iris_cov[:, None]
        detail = torch.where(iris_cov > 0.5, torch.ones_like(detail), detail)
        pupil = torch.minimum(eye, _ellipse(u, v, cu, ev, ir * 0.45, ir * 0.45, px))
        image = image * (1 - pupil[:, None]) + const(PUPIL) * pupil[:, None]
        # Brow: a band of half-thickness brow_thickness tapering to its ends, rotated by brow_angle.
        bu, bv = _rotate(u - cu, v - (ev - f["brow_gap"]), -side * f["brow_angle"])
        t = (bu / f["brow_length"]).clamp(-1, 1)
        half = f["brow_thickness"] * torch.sqrt(1 - t**2 + 1e-6)
        brow = torch.minimum(_coverage(half - bv.abs(), px), _coverage(f["brow_length"] - bu.abs(), px))
        paint(brow, hair * 0.8, brow_cls)

    # Nose: a wedge widening from the bridge to the tip, nostrils as two dark dots.
    ntop = ev + 0.03
    tip = ntop + f["nose_length"]
    tt = ((v - ntop) / f["nose_length"]).clamp(0, 1)
    nhw = f["nose_width"] * (0.3 + 0.7 * tt**2)
    nose = torch.minimum(torch.minimum(_coverage(nhw - u.abs(), px), _coverage(v - ntop, px)), _coverage(tip - v, px))
    side_shade = 1 - 0.25 * torch.sign(u) * torch.cos(ang)
    paint(nose, skin * shade * 0.88 * side_shade[:, None], NOSE)
    for side in (1.0, -1.0):
        nostril = _ellipse(u, v, side * f["nose_width"] * 0.45, tip - 0.018, 0.018 + zero, 0.011 + zero, px)
        image = image * (1 - nostril[:, None]) + skin * 0.35 * nostril[:, None]

    # Mouth: upper lip, inside (when open) and lower lip as bands around a smile curve.
    mc = tip + f["mouth_gap"]
    xm = (u / f["mouth_width"]).clamp(-1, 1)
    prof = torch.sqrt(1 - xm**2 + 1e-6)
    centre = mc + f["smile"] * (1 - xm**2)
    ends = _coverage(f["mouth_width"] - u.abs(), px)
    gap = f["mouth_open"] * prof * 0.5
    lip = f["lip_thickness"] * prof

    def band(lo, hi):
        return torch.minimum(ends, torch.minimum(_coverage(v - lo, px), _coverage(hi - v, px)))

    paint(band(centre - gap - lip, centre - gap), lips * shade * 0.92, U_LIP)
    paint(band(centre + gap, centre + gap + lip * 1.2), lips * shade, L_LIP)
    paint(band(centre - gap, centre + gap), const(MOUTH_INSIDE), MOUTH)

    image = (image.clamp(0, 1) * 2 - 1).contiguous()
    detail = labels * 2 + detail
    edge = torch.zeros_like(labels, dtype=torch.bool)
    edge[:, :, :-1] |= detail[:, :, :-1] != detail[:, :, 1:]
    edge[:, :-1, :] |= detail[:, :-1, :] != detail[:, 1:, :]
    sketch = torch.where(edge, -1.0, 1.0)[:, None].float()
    return Render(image=image, labels=labels, sketch=sketch)


def render_gaussian(z: torch.Tensor, size: int = 64) -> Render:
    """``render(factors_from_gaussian(z), size)``: z (B, >= FACTOR_DIMS) standard normal."""
    return render(factors_from_gaussian(z), size)
