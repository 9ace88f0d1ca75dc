"""k-Same identity replacement: the de-identifying sanitizer's first stage (policy `deidentify`).

A face x (flattened, D pixels) is split, in a linear model fitted on the training faces, into its
component in the between-identity subspace (the span of the training identities' mean faces
around the overall mean: what tells people apart, U [C,D] orthonormal rows) and the rest (pose,
light, expression, noise). The replacement:

    swapped = x + (d - U (x - mean)) U        the face's identity coordinates replaced by a donor's
    output  = p_g + shrink * (swapped - p_g)  pulled towards its attribute group's mean face

d is one of `donors_per_group` k-anonymous donors of the face's group g: each the mean identity
coordinates of k distinct training people of that group (k-Same, Newton et al. 2005: no output
shows a single real person's identity); p_g is the group's mean face; the group is the face's
combination of the policy's preserved attributes (Male, Young, Smiling, Eyeglasses for
`deidentify`), read by the sanitizer's frozen auxiliary classifiers, so the kept attributes are
the group's. Which donor a face gets is drawn at random in training and from a fingerprint of the
face when serving: the same image always gets the same output, two photos of one person get
unrelated donors (so they stop linking).

Why a fixed linear stage in front of the trained editor: the FaDeNet editor alone learnt a
deterministic change an adaptive matcher (trained on sanitized faces) undid (95.8% TMR at FMR
1e-2, README "--policy deidentify"); the replacement removes what the subspace holds instead of
hiding it from one critic. Measured on the synthetic data in README "De-identification by
replacement".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
import tf_keras as keras


def face_fingerprints(faces: tf.Tensor) -> tf.Tensor:
    """[N,S,S,1] faces in [0,1] -> [N,8] uint8: a farmhash fingerprint of each face's 16x16
    area-averaged thumbnail at 5 bits per pixel. Reproducible per face and coarse on purpose: float
    rounding differences between two decode paths of the same image do not change it."""
    thumbnail = tf.image.resize(tf.clip_by_value(tf.cast(faces, tf.float32), 0.0, 1.0), (16, 16), method="area")
    quantized = tf.cast(tf.round(thumbnail * 31.0), tf.uint8)
    return tf.fingerprint(tf.reshape(quantized, [tf.shape(faces)[0], -1]))


@dataclass
class ReplacementStatistics:
    """What fit_identity_replacement learns from the training faces (float32 arrays)."""

    mean: np.ndarray  # [D]
    basis: np.ndarray  # [C, D], orthonormal rows; zero rows past the training identities' rank
    prototypes: np.ndarray  # [G, D] each group's mean face (the overall mean for a sparse group)
    donors: np.ndarray  # [G, M, C] donor identity coordinates
    fallbacks: list = field(default_factory=list)  # what a sparse group was given instead, in words


def group_index(labels: np.ndarray) -> np.ndarray:
    """[N, A] 0/1 attribute labels -> [N] group numbers sum(label_a * 2^a)."""
    labels = np.asarray(labels, np.int64).reshape(len(labels), -1)
    return (labels << np.arange(labels.shape[1])).sum(axis=1)


def fit_identity_replacement(faces: np.ndarray, identity: np.ndarray, labels: np.ndarray, components: int,
                             k_same: int, donors_per_group: int, seed: int = 0,
                             max_people: int = 4000) -> ReplacementStatistics:
    """The replacement's statistics from training faces [N,S,S,1] in [0,1] with their person
    [N] and preserved-attribute labels [N, A] (0/1; A may be 0): fit_identity_replacement_from_batches
    over one batch."""
    return fit_identity_replacement_from_batches([(faces, identity, labels)], components, k_same, donors_per_group,
                                                 seed, max_people)


def fit_identity_replacement_from_batches(batches, components: int, k_same: int, donors_per_group: int,
                                          seed: int = 0, max_people: int = 4000) -> ReplacementStatistics:
    """The replacement's statistics in one pass over (faces [n,S,S,1], person [n], labels [n,A])
    batches, holding per person and per group pixel sums only (float32: people x pixels x 4 bytes,
    e.g. 2 GB for CelebA's 10,177 people at 224 px), never the faces. The subspace comes from the
    mean faces of at most `max_people` people (a random subset beyond that: its SVD costs
    people^2 x pixels); every person's coordinates in it feed the donors.

    A group with faces of fewer than k_same people gets the overall mean face as its prototype
    and donors drawn from every person (recorded in `fallbacks`), so no prototype or donor is the
    mean of fewer than k_same people."""
    if k_same < 2:
        raise ValueError(f"k_same={k_same}: a donor must be the mean of at least 2 people (k-Same), or the "
                         "output would show a real training person's identity")
    index, person_sums, person_counts = {}, [], []
    group_sums, group_counts, group_people = None, None, None
    total, count = None, 0
    for faces, identity, labels in batches:
        x = np.asarray(faces, np.float32).reshape(len(faces), -1)
        labels = np.asarray(labels).reshape(len(x), -1)
        if group_sums is None:
            groups = 2 ** labels.shape[1]
            group_sums, group_counts = np.zeros((groups, x.shape[1])), np.zeros(groups)
            group_people = [set() for _ in range(groups)]
            total = np.zeros(x.shape[1])
        rows = []
        for key in np.asarray(identity).reshape(-1).tolist():
            if key not in index:
                index[key] = len(index)
                person_sums.append(np.zeros(x.shape[1], np.float32))
                person_counts.append(0)
            rows.append(index[key])
        for row, face, group in zip(rows, x, group_index(labels).tolist()):
            person_sums[row] += face
            person_counts[row] += 1
            group_sums[group] += face
            group_counts[group] += 1
            group_people[group].add(row)
        total += x.sum(axis=0, dtype=np.float64)
        count += len(x)
    if len(index) < k_same:
        raise ValueError(f"identity replacement needs faces of at least k_same={k_same} people, got {len(index)}")
    rng = np.random.default_rng(seed)
    mean = total / count
    # People in the order of their identity values (the draws below do not depend on the input order).
    order = [index[key] for key in sorted(index)]
    position = {row: at for at, row in enumerate(order)}
    person_means = (np.stack([person_sums[row] for row in order])
                    / np.asarray([person_counts[row] for row in order], np.float32)[:, None] - mean.astype(np.float32))
    group_people = [{position[row] for row in rows} for rows in group_people]
    fitted = person_means if len(person_means) <= max_people else person_means[
        rng.choice(len(person_means), max_people, replace=False)]
    _, singular, vt = np.linalg.svd(fitted.astype(np.float64), full_matrices=False)
    rank = int((singular > singular[0] * 1e-6).sum()) if singular.size else 0
    basis = np.zeros((components, len(mean)))
    used = min(components, rank)
    basis[:used] = vt[:used]
    coordinates = person_means.astype(np.float64) @ basis.T  # [P, C]
    prototypes = np.empty((len(group_sums), len(mean)))
    donors = np.empty((len(group_sums), donors_per_group, components))
    fallbacks = []
    for g in range(len(group_sums)):
        pool = np.array(sorted(group_people[g]), dtype=np.int64)
        if len(pool) < k_same:
            fallbacks.append(f"group {g}: faces of {len(pool)} people (< k_same={k_same}): the overall mean face "
                             "and donors from everyone")
            prototypes[g] = mean
            pool = np.arange(len(index))
        else:
            prototypes[g] = group_sums[g] / group_counts[g]
        for m in range(donors_per_group):
            donors[g, m] = coordinates[rng.choice(pool, k_same, replace=False)].mean(axis=0)
    for line in fallbacks:
        logging.info("identity replacement: %s", line)
    logging.info("identity replacement: %d of %d components from %d people (of %d), %d groups x %d donors of k=%d",
                 used, components, len(fitted), len(index), len(group_sums), donors_per_group, k_same)
    return ReplacementStatistics(mean.astype(np.float32), basis.astype(np.float32), prototypes.astype(np.float32),
                                 donors.astype(np.float32), fallbacks)


class IdentityReplacement(keras.layers.Layer):
    """The replacement as a layer (float32 whatever the dtype policy: D-long dot products); its
    statistics are non-trainable weights, zero until `install` (the identity map then: no donor,
    no prototype pull is applied while `installed` is 0)."""

    def __init__(self, image_size: int, components: int, attributes: int, donors_per_group: int,
                 shrink: float, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        if not 0.0 <= shrink <= 1.0:
            raise ValueError(f"shrink={shrink}: the pull towards the group's mean face is a factor in [0, 1]")
        self.image_size, self.components, self.attributes = image_size, components, attributes
        self.donors_per_group, self.shrink = donors_per_group, shrink
        pixels, groups = image_size * image_size, 2 ** attributes

        def weight(name, shape):
            return self.add_weight(name=name, shape=shape, initializer="zeros", trainable=False)

        self.mean = weight("mean", (pixels,))
        self.basis = weight("basis", (components, pixels))
        self.prototypes = weight("prototypes", (groups, pixels))
        self.donors = weight("donors", (groups, donors_per_group, components))
        self.installed = weight("installed", ())

    def install(self, statistics: ReplacementStatistics) -> None:
        expected = {"basis": self.basis.shape, "prototypes": self.prototypes.shape, "donors": self.donors.shape}
        for name, shape in expected.items():
            if tuple(getattr(statistics, name).shape) != tuple(shape):
                raise ValueError(f"identity replacement statistics: {name} has shape "
                                 f"{getattr(statistics, name).shape}, the layer wants {tuple(shape)}")
        for variable, value in ((self.mean, statistics.mean), (self.basis, statistics.basis),
                                (self.prototypes, statistics.prototypes), (self.donors, statistics.donors)):
            variable.assign(value)
        self.installed.assign(1.0)

    def donor_choice(self, faces, training):
        """[N] int32 donor numbers: random in training, from the face's fingerprint when serving."""
        count = tf.shape(faces)[0]
        if training:
            return tf.random.uniform([count], 0, self.donors_per_group, dtype=tf.int32)
        fingerprint = tf.cast(face_fingerprints(faces), tf.int32)  # byte 0 feeds the targets (export.py)
        return tf.math.floormod(fingerprint[:, 1] * 256 + fingerprint[:, 2], self.donors_per_group)

    def call(self, faces, groups, donor=None, training=None):
        """faces [N,S,S,1], groups [N] int (group_index of the preserved attributes), donor [N] int
        (None: donor_choice) -> the replaced faces [N,S,S,1] in [0,1], float32."""
        faces = tf.cast(faces, tf.float32)
        flat = tf.reshape(faces, [-1, self.image_size * self.image_size])
        groups = tf.cast(groups, tf.int32)
        donor = self.donor_choice(faces, training) if donor is None else tf.cast(donor, tf.int32)
        coordinates = tf.matmul(flat - self.mean, self.basis, transpose_b=True)
        wanted = tf.gather_nd(self.donors, tf.stack([groups, donor], axis=1))
        swapped = flat + tf.matmul(wanted - coordinates, self.basis)
        prototype = tf.gather(self.prototypes, groups)
        replaced = prototype + self.shrink * (swapped - prototype)
        replaced = self.installed * replaced + (1.0 - self.installed) * flat
        return tf.reshape(tf.clip_by_value(replaced, 0.0, 1.0), tf.shape(faces))
