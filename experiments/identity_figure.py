"""One toy contour, several people's identity photos: whose face comes out (the README's figure).

The README's figure is ``ideface-figure identity --out notebooks/figures/identity_following.png``
(``experiments/figure.py``).

Top row: the contour as the encoder receives it, then one photo each of ``--identities`` other test
people (the identity photos). Bottom row: the photo the contour was made from (the contour's person, the
target; not fed to the model), then the output for each identity photo. Each output is labelled with its
evaluation-ArcFace similarity to the identity photo's person and to the contour's person, each person
represented by the mean embedding of their test photos that were not fed to the model
(``metrics.identity_following``). A checkpoint of a world that renders its photos (``experiments.world.
rendered_people``; default ``toy``: the shipped encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from experiments.world import rendered_people

TEXT_LINES = 3  # caption lines under each tile
LINE_HEIGHT = 16


@dataclass
class Output:
    """One output's scores: the identity photo's person (global toy id) and the output's cosine
    similarity (-1..1) to that person's and to the contour's person's template."""

    identity_person: int
    to_identity_person: float
    to_contour_person: float


@dataclass
class IdentityFigure:
    """What the figure shows: images (B, 3, S, S) in [-1, 1] (the contour shown as RGB) and the scores."""

    contour: torch.Tensor  # (1, 3, S, S)
    target: torch.Tensor  # (1, 3, S, S): the photo the contour was made from
    identities: torch.Tensor  # (K, 3, S, S)
    outputs: torch.Tensor  # (K, 3, S, S)
    contour_person: int
    scores: list[Output]


def make_identity_figure(pipe, embedder, contour_person: int = 0, n_identities: int = 4) -> IdentityFigure:
    """Run ``pipe`` on one test contour with the identity photos of the next ``n_identities`` test people.

    ``contour_person``: the position of the contour's person among the world's test people (the
    contour is made from their first photo; each identity photo is that person's first photo).
    ``embedder``: (B, 3, S, S) in [-1, 1] -> (B, D) unit numpy embeddings (the evaluation ArcFace).
    Each person's template is built from all their photos except the ones fed to the model.
    """
    from data.conditions import contour_to_rgb, make_condition
    from metrics.identity_following import PersonTemplates

    world = rendered_people(pipe.cfg)
    people = world.identity.unique().tolist()
    if not 0 <= contour_person < len(people) or not 1 <= n_identities < len(people):
        raise ValueError(
            f"--contour-person must be in [0, {len(people)}) and --identities in [1, {len(people)}), "
            f"got {contour_person} and {n_identities}"
        )
    chosen = [people[(contour_person + k) % len(people)] for k in range(n_identities + 1)]
    gallery = [i for p in chosen for i in torch.nonzero(world.identity == p).flatten().tolist()]
    photos = world.render(gallery, size=pipe.input_size)
    persons = world.identity[gallery]
    keys = [str(i) for i in gallery]
    first = {p: gallery.index(torch.nonzero(world.identity == p).flatten()[0].item()) for p in chosen}
    c = first[chosen[0]]
    condition = make_condition(pipe.modality, out_size=pipe.input_size, lr_size=pipe.lr_size)
    contour = condition(photos.image[c : c + 1], labels=photos.labels[c : c + 1], sketch=photos.sketch[c : c + 1])
    fed = [first[p] for p in chosen[1:]]
    identities = photos.image[fed]
    outputs = pipe.run_tensors(contour.expand(n_identities, -1, -1, -1), identities).image.cpu()
    templates = PersonTemplates(keys, persons.numpy(), embedder(photos.image))
    scored = templates.scores(
        embedder(outputs), [keys[c]] * n_identities, [chosen[0]] * n_identities, [keys[i] for i in fed], chosen[1:]
    )
    scores = [
        Output(p, float(a), float(b))
        for p, a, b in zip(chosen[1:], scored["idsim_identity_person"], scored["idsim_contour_person"])
    ]
    return IdentityFigure(
        contour=contour_to_rgb(contour),
        target=photos.image[c : c + 1],
        identities=identities,
        outputs=outputs,
        contour_person=chosen[0],
        scores=scores,
    )


def render_figure(fig: IdentityFigure, tile: int = 128):
    """The figure as a PIL RGB image: two rows of ``tile``-pixel tiles (nearest upscaling, so the toy
    faces' few-pixel parts stay as drawn) with captions under each tile."""
    from PIL import Image, ImageDraw, ImageFont

    from experiments.tracking import to_uint8_image

    def tile_image(x: torch.Tensor):
        return Image.fromarray(to_uint8_image(x)).resize((tile, tile), Image.NEAREST)

    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow built without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    columns = 1 + len(fig.scores)
    pad, cell = 6, tile + TEXT_LINES * LINE_HEIGHT
    header = 2 * LINE_HEIGHT
    canvas = Image.new("RGB", (pad + columns * (tile + pad), header + 2 * (cell + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text(
        (pad, 2),
        "One contour, identity photos of other people: each output with its similarity (evaluation ArcFace)",
        fill="black",
        font=font,
    )
    draw.text(
        (pad, 2 + LINE_HEIGHT), "to the identity photo's person and to the contour's person.", fill="black", font=font
    )
    cells = [
        [(fig.contour[0], ["the contour (as fed)", f"of person {fig.contour_person}"])],
        [(fig.target[0], [f"person {fig.contour_person}: the photo", "the contour is made", "from (not fed)"])],
    ]
    for image, output, s in zip(fig.identities, fig.outputs, fig.scores):
        cells[0].append((image, ["identity photo:", f"person {s.identity_person}"]))
        cells[1].append(
            (
                output,
                [
                    "output:",
                    f"to {s.identity_person}: {s.to_identity_person:+.2f}",
                    f"to {fig.contour_person}: {s.to_contour_person:+.2f}",
                ],
            )
        )
    for r, row in enumerate(cells):
        for k, (image, caption) in enumerate(row):
            x, y = pad + k * (tile + pad), header + r * (cell + pad)
            canvas.paste(tile_image(image), (x, y))
            for n, line in enumerate(caption):
                draw.text((x, y + tile + 2 + n * LINE_HEIGHT), line, fill="black", font=font)
    return canvas


def draw_identity_figure(
    checkpoint: str | Path = "toy",
    out: str | Path = "identity_following.png",
    contour_person: int = 0,
    n_identities: int = 4,
    tile: int = 128,
) -> IdentityFigure:
    """Make the figure of a toy-world checkpoint and write it to ``out`` (PNG); returns what it shows.

    Raises ValueError (one line; ``CheckpointError`` among them) for a checkpoint that cannot be loaded,
    one of another world, or people out of range, before anything is written."""
    from experiments.pipeline import load_pipeline
    from metrics.idsim import ArcFaceEmbedder

    pipe = load_pipeline(checkpoint)
    if rendered_people(pipe.cfg) is None:
        raise ValueError(
            f"{checkpoint} is a {pipe.cfg.data.dataset} checkpoint, a world of image files; this figure draws "
            "the test people of a world that renders its photos (pass a toy run, or 'toy')"
        )
    e = pipe.cfg.eval
    embedder = ArcFaceEmbedder.from_registry(
        e.idsim_model, providers=list(e.providers), crop=list(e.id_crop), weights_root=pipe.cfg.weights_root
    )
    fig = make_identity_figure(pipe, embedder, contour_person, n_identities)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    render_figure(fig, tile).save(out, optimize=True)
    return fig


def score_lines(fig: IdentityFigure) -> list[str]:
    """One line per output: its similarity to the identity photo's person and to the contour's person."""
    return [
        f"identity person {s.identity_person}: to them {s.to_identity_person:+.3f}, to the contour's "
        f"person {fig.contour_person} {s.to_contour_person:+.3f}"
        for s in fig.scores
    ]
