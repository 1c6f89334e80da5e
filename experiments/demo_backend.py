"""Everything behind the web demo's page, as plain functions (no Gradio): :class:`Demo` reads the uploaded
contour and identity photos, generates one face per identity photo with every refinement step, and scores
them; :func:`rendered_examples` writes the world's test people as the page's examples. The page itself is
``experiments.demo_app``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from experiments.world import rendered_people

MAX_IDENTITIES = 4
# Tiles of the step strips and of the encoder-input view are at most this large (the final faces keep
# the generator's size): every image is PNG-encoded per click, a 1024 px strip of five would cost seconds.
# The browser scales images up to their boxes.
TILE_MAX = 256
PHOTO_TO_LR, LR_IMAGE = "make LR from a photo", "LR image"
SKETCH_IMAGE, DRAW = "sketch image", "draw a sketch"
LABEL_MAP = "label map"
MODES = {"lr": (PHOTO_TO_LR, LR_IMAGE), "sketch": (SKETCH_IMAGE, DRAW), "mask": (LABEL_MAP,)}
ALIGNED_LABEL = "photos are aligned face crops (skip face detection)"


class DemoError(ValueError):
    """Inputs the page cannot use; ``lines`` holds one message per bad input."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("; ".join(self.lines))


@dataclass
class Upload:
    """A file given to the page: where it is on the server and the name the user knows it by."""

    path: Path
    name: str

    @classmethod
    def of(cls, path, name: str | None = None) -> Upload:
        return cls(Path(path), name or Path(path).name)


@dataclass
class Person:
    """Whom a face shows: a label for the page and a photo (3, s, s) in [-1, 1] to compare with."""

    label: str
    photo: torch.Tensor


@dataclass
class Generation:
    """What one click produced (images uint8 (H, W, 3); S the generator's size, T = min(S, TILE_MAX)).

    faces: K final faces (S, S, 3). steps: one strip (T, (K + 1) T, 3) per refinement step:
    contour | face 1 .. face K. seen: what the encoder saw, contour then the K aligned identity
    photos (encoder input size, at most TILE_MAX), each with a caption. identity_sim / contour_sim:
    (K,) IDSIM of each face to its identity photo / to the contour's person (None when unknown or no
    IDSIM network). table: those figures as Markdown. seconds: the click's wall time. status: one
    line for the page.
    """

    faces: list[np.ndarray]
    captions: list[str]
    steps: list[np.ndarray]
    seen: list[tuple[np.ndarray, str]]
    identity_sim: list[float | None]
    contour_sim: list[float | None]
    table: str
    seconds: float
    status: str


def _key(x: torch.Tensor) -> str:
    """A content key for a prepared input: equal tensors (as 8-bit images) give equal keys."""
    from data.images import to_uint8

    return hashlib.sha1(to_uint8(x).tobytes() + str(tuple(x.shape)).encode()).hexdigest()


def _display(x: torch.Tensor, size: int, nearest: bool = False) -> list[np.ndarray]:
    """(B, 3, H, W) in [-1, 1] -> B images (size, size, 3) uint8 (bicubic, or nearest for label colours)."""
    import torch.nn.functional as F

    from ops.resize import resize_to

    x = x.float().cpu()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="nearest") if nearest else resize_to(x, size)
    q = torch.round((x.clamp(-1, 1) + 1) * 127.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return list(q)


@dataclass
class Examples:
    """Example inputs for the page: rows (mode, contour file, identity files) and the people they show.

    known: content key of a prepared input (aligned photo, prepared contour) -> its person.
    """

    rows: list[list[str]] = field(default_factory=list)
    known: dict[str, Person] = field(default_factory=dict)
    folder: Path | None = None


class Demo:
    """The page's functions on a loaded pipeline (``experiments.pipeline.IDEPipeline``).

    embedder: an ``metrics.idsim.ArcFaceEmbedder`` for IDSIM, or None (``embedder_note`` says why).
    examples: :class:`Examples` (empty for worlds without test identities to render).
    """

    def __init__(self, pipe, embedder=None, embedder_note: str = "", examples: Examples | None = None):
        self.pipe = pipe
        self.embedder = embedder
        self.embedder_note = embedder_note
        self.examples = examples or Examples()
        self.modes = MODES[pipe.modality]
        # a world that renders its photos (its photos come aligned): the page's examples are its test people
        self.rendered = rendered_people(pipe.cfg) is not None
        self.tile = min(pipe.output_size, TILE_MAX)
        self._temporary: Path | None = None

    @classmethod
    def load(
        cls,
        checkpoint,
        device="cpu",
        dtype: torch.dtype = torch.float32,
        detector: str = "auto",
        weights_root=None,
        examples_dir: Path | None = None,
    ) -> Demo:
        """Load the pipeline, the IDSIM network of its evaluation and (a world that renders its photos) write
        the examples into ``examples_dir`` (default: a fresh temporary folder)."""
        from data.face_detection import choose_detector
        from experiments.pipeline import load_pipeline

        pipe = load_pipeline(checkpoint, device=device, dtype=dtype, weights_root=weights_root, detector=detector)
        choose_detector(detector, pipe.weights_root)  # a missing buffalo_l for 'insightface' stops here
        embedder, note = load_embedder(pipe.cfg)
        demo = cls(pipe, embedder, note)
        if demo.rendered:
            if examples_dir is None:
                demo._temporary = examples_dir = Path(tempfile.mkdtemp(prefix="ideface-demo-"))
            demo.examples = rendered_examples(demo, Path(examples_dir))
        return demo

    def close(self) -> None:
        """Remove the examples folder if :meth:`load` made it."""
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None

    # ---- descriptions -------------------------------------------------------------------------
    def aligner(self) -> str:
        """Which aligner identity photos go through (``data.face_detection.choose_detector``), in words."""
        from data.face_detection import choose_detector

        method, folder = choose_detector(self.pipe.detector, self.pipe.weights_root)
        if method == "insightface":
            return f"insightface SCRFD landmarks ({folder}) and the FFHQ crop rule"
        return (
            "scikit-image's LBP frontal-face cascade and the FFHQ crop rule (upright faces only; "
            "put insightface's buffalo_l in the weights folder for landmarks)"
        )

    def describe(self) -> str:
        """One paragraph about the loaded model for the page's header (Markdown)."""
        p = self.pipe
        contour = {"lr": f"{p.lr_size}x{p.lr_size} LR face", "sketch": "sketch", "mask": "label map"}[p.modality]
        return (
            f"**{p.model.kind}** encoder, **{contour}** contours, {p.input_size} px encoder input, "
            f"{p.output_size} px faces, {p.n_iters} refinement steps, on {p.device}. "
            f"Aligner: {self.aligner()}. {self.embedder_note}."
        )

    def contour_label(self, mode: str) -> str:
        """The contour box's label for an input mode."""
        p = self.pipe
        return {
            PHOTO_TO_LR: f"contour: a face photo (made into a {p.lr_size}x{p.lr_size} LR contour)",
            LR_IMAGE: f"contour: an LR face image (brought to {p.lr_size}x{p.lr_size})",
            SKETCH_IMAGE: "contour: a sketch (black lines on white)",
            DRAW: "contour: draw a sketch (black lines on white)",
            LABEL_MAP: "contour: a label-index PNG (CelebAMask-HQ classes 0-18)",
        }[mode]

    # ---- inputs -------------------------------------------------------------------------------
    def read_identity(
        self, upload: Upload, aligned: bool, what: str = "identity photo"
    ) -> tuple[torch.Tensor, str, Person | None]:
        """An identity photo -> (aligned (3, s, s) in [-1, 1], how it was aligned, its person if known)."""
        try:
            result = self.pipe.align(upload.path, aligned=aligned)
        except (ValueError, OSError) as err:
            raise DemoError([self._explain(err, upload, what)]) from None
        how = {"aligned": "used as an aligned crop", "cascade": "cascade", "insightface": "insightface"}
        message = how[result.method] + (f", largest of {result.n_faces} faces" if result.n_faces > 1 else "")
        return result.image, message, self.examples.known.get(_key(result.image))

    def read_contour(self, mode: str, upload: Upload, aligned: bool) -> tuple[torch.Tensor, Person | None]:
        """A contour file for ``mode`` -> (the encoder's contour (C, s, s), the contour's person if known)."""
        from data.conditions import lr_downsample

        if mode not in self.modes:
            raise DemoError([f"contour mode {mode!r} is not one of this checkpoint's: {', '.join(self.modes)}"])
        try:
            if mode == PHOTO_TO_LR:
                photo = self.pipe.align(upload.path, aligned=aligned).image
                contour = self.pipe.prepare_contour(lr_downsample(photo, self.pipe.lr_size))[0]
                known = self.examples.known.get(_key(photo))
                return contour, known or Person(f"the contour photo ({upload.name})", photo)
            wrong = mode != LABEL_MAP and _looks_like_label_map(upload.path)
            contour = None if wrong else self.pipe.prepare_contour(upload.path)[0]
        except (ValueError, OSError) as err:
            line = self._explain(err, upload, "contour")
            if mode == LABEL_MAP:
                line += " (this checkpoint takes label maps: a one-channel PNG of class indices 0-18)"
            raise DemoError([line]) from None
        if contour is None:
            raise DemoError(
                [
                    f"contour ({upload.name}): this is a label map (one channel, values below 19), "
                    f"but this checkpoint takes {self.pipe.modality} contours"
                ]
            )
        return contour, self.examples.known.get(_key(contour))

    def _explain(self, err: BaseException, upload: Upload, what: str) -> str:
        """One line for the page: ``<what> (<file name>): <reason>``, in the page's words (the user's file
        name, not the server's path; the checkbox, not the CLI flag)."""
        from data.images import BadImageError

        if isinstance(err, BadImageError):
            reason = f"cannot read this file: {err.reason}"
        elif isinstance(err, FileNotFoundError) and not upload.path.exists():
            reason = "the file did not arrive; upload it again"
        else:
            reason = " ".join(str(err).split()).removeprefix(f"{upload.path}: ").replace(str(upload.path), "it")
            reason = reason.replace("pass --aligned", f"tick '{ALIGNED_LABEL}'")
        return f"{what} ({upload.name}): {reason}"

    # ---- generation ---------------------------------------------------------------------------
    def generate(
        self,
        mode: str,
        contour: Upload | None,
        identities: list[Upload | None],
        aligned: bool,
        n_iters: int | None = None,
        seed: int | str | None = None,
    ) -> Generation:
        """Generate one face per identity photo for one contour.

        identities: up to MAX_IDENTITIES uploads, Nones (empty slots) skipped. n_iters: refinement
        steps (default: the trained number). seed: None or "" uses the generator's fixed noise, an
        integer (or its text) draws noise from it. Raises :class:`DemoError` with one line per bad
        input; every input is checked before anything is generated.
        """
        start = time.perf_counter()
        lines = []
        slots = [(k, u) for k, u in enumerate(identities) if u is not None]
        if contour is None:
            lines.append("give a contour: " + self.contour_label(mode).split(": ", 1)[1])
        if not slots:
            lines.append(f"give at least one identity photo (up to {MAX_IDENTITIES})")
        if len(slots) > MAX_IDENTITIES:
            lines.append(f"at most {MAX_IDENTITIES} identity photos, got {len(slots)}")
        steps = self.pipe.n_iters if n_iters is None else int(n_iters)
        if not 1 <= steps <= max_steps(self.pipe):
            lines.append(f"refinement steps must be 1..{max_steps(self.pipe)}, got {n_iters}")
        seed = None if seed is None or str(seed).strip() == "" else str(seed).strip()
        if seed is not None and not seed.lstrip("-").isdigit():
            lines.append(f"noise seed {seed!r}: give a whole number, or leave it empty for the fixed noise")
        c = person = None
        if contour is not None:
            try:
                c, person = self.read_contour(mode, contour, aligned)
            except DemoError as err:
                lines += err.lines
        ids, how, who = [], [], []
        for k, upload in slots:
            try:
                image, message, known = self.read_identity(upload, aligned, f"identity photo {k + 1}")
            except DemoError as err:
                lines += err.lines
                continue
            ids.append(image)
            how.append(f"identity {k + 1}: {message}" + ("" if known is None else f" ({known.label})"))
            who.append(known)
        if lines:
            raise DemoError(lines)

        from data.conditions import contour_to_rgb

        identity = torch.stack(ids)
        result = self.pipe.run_tensors(
            c[None].expand(len(ids), -1, -1, -1), identity, n_iters=steps, seed=None if seed is None else int(seed)
        )
        identity_sim, contour_sim, photo_sim = self.similarities(result.image, identity, person)
        d, k, mask = self.tile, len(ids), self.pipe.modality == "mask"
        contour_view = _display(contour_to_rgb(c[None]), d, nearest=mask)[0]
        tiles = _display(torch.cat(result.steps), d)  # step-major: step t's faces are tiles[t k : (t + 1) k]
        strips = [np.concatenate([contour_view, *tiles[t * k : (t + 1) * k]], axis=1) for t in range(len(result.steps))]
        seen = [
            (
                _display(contour_to_rgb(c[None]), min(c.shape[-1], TILE_MAX), nearest=mask)[0],
                "contour" + ("" if person is None else f": {person.label}"),
            )
        ]
        seen += list(zip(_display(identity, min(identity.shape[-1], TILE_MAX)), how))
        seconds = time.perf_counter() - start
        return Generation(
            faces=_display(result.image, self.pipe.output_size),
            captions=[_caption(k, s) for k, s in enumerate(identity_sim, start=1)],
            steps=strips,
            seen=seen,
            identity_sim=identity_sim,
            contour_sim=contour_sim,
            table=similarity_table(identity_sim, contour_sim, photo_sim, who, person, self.embedder_note),
            seconds=seconds,
            status=(
                f"Generated {k} face(s) in {seconds:.2f} s: {len(strips)} refinement steps, "
                f"{'fixed noise' if seed is None else f'noise seed {seed}'}."
            ),
        )

    def similarities(self, faces: torch.Tensor, identity: torch.Tensor, person: Person | None):
        """IDSIM lists (K,) of faces to identity photos, faces to the contour's person and identity
        photos to the contour's person (Nones where unknown or without an IDSIM network)."""
        k = faces.shape[0]
        if self.embedder is None:
            return [None] * k, [None] * k, [None] * k
        e_faces, e_ids = self.embedder(faces.cpu()), self.embedder(identity.cpu())
        to_identity = (e_faces * e_ids).sum(1).tolist()
        if person is None:
            return to_identity, [None] * k, [None] * k
        e_person = self.embedder(person.photo[None].cpu())
        return to_identity, (e_faces @ e_person[0]).tolist(), (e_ids @ e_person[0]).tolist()


def max_steps(pipe) -> int:
    """The most refinement steps the page offers: twice the trained number, at least 10 (psp: 1)."""
    return 1 if pipe.model.kind == "psp" else max(10, 2 * pipe.n_iters)


def _looks_like_label_map(path: Path) -> bool:
    """A one-channel 8-bit image whose values are all class indices (< 19): a mask, not a picture."""
    from data.conditions import N_CLASSES
    from data.images import open_image

    im = open_image(path)
    return im.mode in ("L", "P") and int(np.asarray(im).max()) < N_CLASSES


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _caption(k: int, identity_sim: float | None) -> str:
    """A face's caption: its number and IDSIM to its identity photo (the table has the rest)."""
    return f"face {k}" + ("" if identity_sim is None else f": IDSIM {identity_sim:.2f}")


def similarity_table(
    identity_sim, contour_sim, photo_sim, who: list[Person | None], person: Person | None, note: str = ""
) -> str:
    """The page's Markdown table: one row per face."""
    if all(s is None for s in identity_sim):
        return f"Identity similarity: {note}"
    rows = [
        "| face | identity photo of | IDSIM to its photo | to the contour's person | its photo to the "
        "contour's person |",
        "|---|---|---|---|---|",
    ]
    for k, (i, c, p, w) in enumerate(zip(identity_sim, contour_sim, photo_sim, who), start=1):
        rows.append(f"| {k} | {w.label if w else 'unknown'} | {_fmt(i)} | {_fmt(c)} | {_fmt(p)} |")
    whose = f"the contour's person: {person.label}" if person else "the contour's person: unknown"
    rows.append(f"\nIDSIM: cosine similarity of the evaluation's ArcFace embeddings (1: same embedding); {whose}.")
    return "\n".join(rows)


def load_embedder(cfg):
    """(the evaluation's IDSIM network, note): the embedder or None, and a line saying what it is."""
    from metrics.idsim import ArcFaceEmbedder

    e = cfg.eval
    try:
        embedder = ArcFaceEmbedder.from_registry(
            e.idsim_model, providers=list(e.providers), crop=list(e.id_crop), weights_root=cfg.weights_root
        )
    except (OSError, ValueError) as err:
        return None, f"identity similarity unavailable ({' '.join(str(err).split())})"
    return embedder, f"IDSIM with {Path(embedder.model_path).name}"


def rendered_examples(demo: Demo, folder: Path, n_rows: int = 3) -> Examples:
    """Render the world's test people (``experiments.world.rendered_people``) into ``folder`` as the
    page's examples.

    Row r: the contour from person r's first photo (a photo to make LR from, an LR image, a sketch or
    a label map by the modality), then person r's second photo and three other people's second photos
    as identity photos. Every photo and contour is registered by content, so IDSIM to the contour's
    person and each identity photo's person are known when these files come back from the page.
    """
    from data.conditions import lr_downsample
    from data.images import save_image, save_label_map

    pipe = demo.pipe
    world = rendered_people(pipe.cfg)
    people = world.identity.unique()[: n_rows + MAX_IDENTITIES - 1].tolist()
    index = [k for p in people for k in torch.nonzero(world.identity == p).flatten()[:2].tolist()]
    render = world.render(index, size=pipe.input_size)
    folder.mkdir(parents=True, exist_ok=True)
    examples = Examples(folder=folder)
    files = {}
    for n, (p, k) in enumerate((p, k) for p in people for k in (0, 1)):
        person = Person(f"test person {p}", render.image[n])
        files[p, k] = save_image(render.image[n], folder / f"person{p}_photo{k}.png")
        aligned = pipe.align(files[p, k], aligned=True).image
        examples.known[_key(aligned)] = person
        if k == 0:  # the contour files of this photo
            files[p, "lr"] = save_image(lr_downsample(render.image[n], pipe.lr_size), folder / f"person{p}_lr.png")
            files[p, "sketch"] = save_image(render.sketch[n], folder / f"person{p}_sketch.png")
            files[p, "labels"] = save_label_map(render.labels[n], folder / f"person{p}_labels.png")
    for r in range(n_rows):
        p = people[r]
        mode = {"lr": PHOTO_TO_LR if r < n_rows - 1 else LR_IMAGE, "sketch": SKETCH_IMAGE, "mask": LABEL_MAP}[
            pipe.modality
        ]
        contour = files[p, {PHOTO_TO_LR: 0, LR_IMAGE: "lr", SKETCH_IMAGE: "sketch", LABEL_MAP: "labels"}[mode]]
        if mode != PHOTO_TO_LR:
            prepared = demo.read_contour(mode, Upload.of(contour), aligned=True)[0]
            examples.known[_key(prepared)] = examples.known[_key(pipe.align(files[p, 0], aligned=True).image)]
        ids = [files[q, 1] for q in people[r : r + MAX_IDENTITIES]]
        examples.rows.append([mode, str(contour), *map(str, ids)])
    return examples
