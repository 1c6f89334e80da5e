"""Whose face came out: identity similarity to both people of a pair, and the identity-following rate.

IDSIM compares an output with the one identity image it was given, which a method can raise by
copying that image's look. Here each output is instead compared with the *people* of its pair, each
represented by a template: the mean embedding of that person's test photos that were **not** fed to
the model (neither the contour's photo nor the identity image), normalised. Per pair:

- ``idsim_identity_person``: cosine of the output to the identity image's person's template;
- ``idsim_contour_person``: cosine of the output to the contour's person's template;
- ``identity_following``: 1 when the output is closer to the identity image's person than to the
  contour's person, else 0; defined for cross-identity pairs only (NaN for same-person pairs).

A person with no photo left over gets NaN for the figures that need their template (CelebA-HQ has
test people with one photo); results count the pairs that were defined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch


class PersonTemplates:
    """Per-person embedding sums over a gallery of photos, queried with some photos left out.

    keys: one per gallery photo; persons: (N,) int identity ids; embeddings: (N, D) unit vectors.
    """

    def __init__(self, keys: Sequence[str], persons: np.ndarray, embeddings: np.ndarray):
        if len(keys) != len(persons) or len(keys) != len(embeddings):
            raise ValueError(
                f"gallery sizes differ: {len(keys)} keys, {len(persons)} persons, {len(embeddings)} embeddings"
            )
        self.row = {key: i for i, key in enumerate(keys)}
        self.persons = np.asarray(persons, dtype=np.int64)
        self.embeddings = np.asarray(embeddings, dtype=np.float64)
        self.sums: dict[int, np.ndarray] = {}
        self.counts: dict[int, int] = {}
        for person, emb in zip(self.persons.tolist(), self.embeddings):
            self.sums[person] = self.sums.get(person, 0.0) + emb
            self.counts[person] = self.counts.get(person, 0) + 1

    @classmethod
    def from_batches(
        cls,
        batches: Iterable[tuple[list[str], torch.Tensor, torch.Tensor]],
        embed: Callable[[torch.Tensor], np.ndarray],
    ) -> PersonTemplates:
        """From (keys, person ids (B,), images (B, 3, S, S) in [-1, 1]) batches (a dataset's
        ``photo_batches``) and an embedder returning (B, D) unit vectors."""
        keys, persons, embeddings = [], [], []
        for batch_keys, batch_persons, images in batches:
            keys.extend(batch_keys)
            persons.append(np.asarray(batch_persons))
            embeddings.append(embed(images))
        return cls(keys, np.concatenate(persons), np.concatenate(embeddings))

    def template(self, person: int, leave_out: Sequence[str]) -> np.ndarray | None:
        """(D,) unit mean embedding of ``person``'s gallery photos other than ``leave_out`` (keys), or None
        when none is left (or the person is not in the gallery)."""
        if person not in self.sums:
            return None
        total, count = self.sums[person].copy(), self.counts[person]
        for key in set(leave_out):
            row = self.row.get(key)
            if row is not None and self.persons[row] == person:
                total -= self.embeddings[row]
                count -= 1
        if count <= 0:
            return None
        return total / max(np.linalg.norm(total), 1e-12)

    def scores(
        self,
        outputs: np.ndarray,
        contour_keys: Sequence[str],
        contour_persons: Sequence[int],
        identity_keys: Sequence[str],
        identity_persons: Sequence[int],
    ) -> dict[str, np.ndarray]:
        """Per pair (B,) float64: ``idsim_identity_person``, ``idsim_contour_person`` and
        ``identity_following`` (see the module docstring; NaN where undefined). outputs: (B, D) unit
        embeddings of the outputs; the other arguments give each pair's two photos and people."""
        n = len(outputs)
        out = {k: np.full(n, np.nan) for k in ("idsim_identity_person", "idsim_contour_person", "identity_following")}
        for i in range(n):
            fed = (contour_keys[i], identity_keys[i])
            t_id = self.template(int(identity_persons[i]), fed)
            t_contour = self.template(int(contour_persons[i]), fed)
            if t_id is not None:
                out["idsim_identity_person"][i] = float(outputs[i] @ t_id)
            if t_contour is not None:
                out["idsim_contour_person"][i] = float(outputs[i] @ t_contour)
            if t_id is not None and t_contour is not None and identity_persons[i] != contour_persons[i]:
                out["identity_following"][i] = float(out["idsim_identity_person"][i] > out["idsim_contour_person"][i])
        return out
