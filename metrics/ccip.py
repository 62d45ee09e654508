"""CCIP character fidelity: batched feature extraction, differences, decisions, clustering, scores.

CCIP (Contrastive anime Character Image Pre-training, deepghs; used by the Illustrious
technical report, Onoma AI, to measure how faithfully a checkpoint draws a named character)
embeds an image of one character into a 768-d feature and turns a set of features into a
pairwise difference matrix; a difference at or below the model's threshold means "same
character".  See :mod:`metrics.ccip_model` for the model files and
:mod:`metrics.ccip_preprocess` for the exact input preprocessing.

Memory stays bounded however many images are scored: images are decoded and preprocessed one
chunk at a time (by a thread pool, the next chunk decoding while the current one runs), and
differences between two sets are computed block by block on ``[a-chunk; b-chunk]`` stacks,
keeping only the off-diagonal block, never a square matrix over everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from metrics.ccip_model import FEATURE_DIM, CCIPModel
from metrics.ccip_preprocess import (
    CCIP_INPUT_SIZE,
    ImageFailure,
    preprocess_ccip,
    unreadable_reason,
)
from metrics.errors import InputError
from metrics.file_hash import sha256_bytes

__all__ = [
    "CCIPScore",
    "FeatureCache",
    "FeatureKey",
    "FeatureSet",
    "ImageFailure",
    "InMemoryFeatureCache",
    "NothingToScoreError",
    "cluster",
    "difference_blocks",
    "differences",
    "extract_features",
    "pairwise_differences",
    "same_character",
    "score_character",
]

ImageSource = str | Path
Progress = Callable[[int], None]


class FeatureKey(NamedTuple):
    """A cached feature is identified by the image's content and the model that embedded it."""

    image_sha256: str
    model_key: str


@runtime_checkable
class FeatureCache(Protocol):
    """Storage for CCIP features; the database layer implements the same two methods.

    Values are float32 ``[768]`` arrays.  ``get_many`` returns only the keys it holds.
    """

    def get_many(self, keys: Sequence[FeatureKey]) -> dict[FeatureKey, np.ndarray]: ...

    def put_many(self, features: dict[FeatureKey, np.ndarray]) -> None: ...


@dataclass
class InMemoryFeatureCache:
    """A dict-backed :class:`FeatureCache` for library use; counts hits for callers and tests."""

    store: dict[FeatureKey, np.ndarray] = field(default_factory=dict)
    hits: int = 0

    def get_many(self, keys: Sequence[FeatureKey]) -> dict[FeatureKey, np.ndarray]:
        found = {k: self.store[k] for k in keys if k in self.store}
        self.hits += len(found)
        return found

    def put_many(self, features: dict[FeatureKey, np.ndarray]) -> None:
        for key, value in features.items():
            self.store[key] = np.array(value, dtype=np.float32, copy=True)


@dataclass
class FeatureSet:
    """Features of the readable images, in input order, with what happened to the others."""

    names: list[str]
    sha256: list[str]
    features: np.ndarray  # float32 [len(names), 768]
    failures: list[ImageFailure]
    cache_hits: int
    computed: int


class NothingToScoreError(InputError):
    """No readable image was left on one side of a comparison; ``unreadable`` lists why."""

    def __init__(self, message: str, unreadable: Sequence[ImageFailure] = ()) -> None:
        super().__init__(message)
        self.unreadable = tuple(unreadable)


def _read(source: ImageSource) -> tuple[bytes, str]:
    data = Path(source).read_bytes()
    return data, sha256_bytes(data)


def _decode_into(data: bytes | str, out: np.ndarray) -> str | None:
    """Preprocess one image into ``out``; return the reason it failed, or None."""
    try:
        preprocess_ccip(data, out=out)
    except Exception as exc:  # Pillow raises many types for corrupt files; report, don't abort
        return unreadable_reason(exc)
    return None


@dataclass
class _Chunk:
    """One chunk in flight: which inputs need the model, and their decode futures."""

    indices: Sequence[int]
    todo: list[tuple[int, str]]  # (input index, sha256) to embed, one per distinct image
    decodes: list[Future[str | None]]
    buffer: np.ndarray


def extract_features(
    model: CCIPModel,
    sources: Sequence[ImageSource],
    *,
    sha256: Sequence[str | None] | None = None,
    cache: FeatureCache | None = None,
    chunk_size: int = 32,
    workers: int = 4,
    progress: Progress | None = None,
) -> FeatureSet:
    """Embed image files with the CCIP feature model, ``chunk_size`` images per session call.

    Each file is read once and hashed (sha256 of its bytes) unless ``sha256[i]`` already gives
    its hash (e.g. content-addressed pool files; trusted, not re-checked), in which case a
    cached image is not read at all.  Features already in ``cache`` under
    ``(hash, model.key)`` are reused and identical files are embedded once.  Uncached
    images are decoded and preprocessed by ``workers`` threads into one of two reused
    ``[chunk_size, 3, 384, 384]`` buffers, the next chunk decoding while the current one runs;
    new features are written back to ``cache``.  Unreadable files are skipped and listed in
    ``failures``.  ``progress`` is called with the number of inputs finished after each chunk.
    """
    names = [str(s) for s in sources]
    if sha256 is not None and len(sha256) != len(names):
        raise ValueError(f"sha256: expected one entry per source ({len(names)}), got {len(sha256)}")
    shas = list(sha256) if sha256 is not None else [None] * len(names)
    run = _extract(model, names, shas, cache, chunk_size, workers, progress)
    return run.feature_set(range(len(names)))


@dataclass
class _Extraction:
    """What one pass over some inputs found, per input index and per distinct image."""

    names: list[str]
    shas: list[str | None]
    found: dict[str, np.ndarray]  # sha256 -> feature
    failures: dict[int, str]  # input index -> why it could not be read or decoded
    embedded_by: dict[str, int]  # sha256 -> the input index whose decode was embedded
    hit_by: dict[str, int]  # sha256 -> the input index whose cache lookup found it

    def feature_set(self, span: range) -> FeatureSet:
        """The :class:`FeatureSet` of the inputs in ``span``; an image shared with another span
        counts as computed (or a cache hit) in the span where it was first met."""
        kept = [i for i in span if i not in self.failures]
        features = (
            np.stack([self.found[self.shas[i]] for i in kept])  # type: ignore[index]
            if kept
            else np.empty((0, FEATURE_DIM), np.float32)
        )
        return FeatureSet(
            names=[self.names[i] for i in kept],
            sha256=[self.shas[i] for i in kept],  # type: ignore[misc]
            features=features,
            failures=[
                ImageFailure(self.names[i], self.failures[i])
                for i in sorted(self.failures)
                if i in span
            ],
            cache_hits=sum(i in span for i in self.hit_by.values()),
            computed=sum(i in span for i in self.embedded_by.values()),
        )


def _extract(
    model: CCIPModel,
    names: list[str],
    shas: list[str | None],
    cache: FeatureCache | None,
    chunk_size: int,
    workers: int,
    progress: Progress | None,
) -> _Extraction:
    """One pipelined pass over ``names`` (see :func:`extract_features`); fills in ``shas``."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size}")
    if workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers}")
    found: dict[str, np.ndarray] = {}
    bad: dict[str, str] = {}  # sha256 -> why it could not be decoded
    failures: dict[int, str] = {}  # input index -> why it could not be read
    embedded_by: dict[str, int] = {}
    hit_by: dict[str, int] = {}
    size = CCIP_INPUT_SIZE
    # A buffer is only as tall as the largest chunk, and the second one exists only when there
    # is a second chunk: untouched pages cost nothing, but each written page is zeroed first.
    rows = min(chunk_size, len(names))
    buffers = [
        np.empty((rows, 3, size, size), np.float32)
        for _ in range(1 if len(names) <= chunk_size else 2)
    ]

    def start(pool: ThreadPoolExecutor, indices: Sequence[int], buffer: np.ndarray) -> _Chunk:
        data: dict[int, bytes] = {}
        unhashed = [i for i in indices if shas[i] is None]
        reads = [pool.submit(_read, names[i]) for i in unhashed]
        for i, future in zip(unhashed, reads, strict=True):
            try:
                data[i], shas[i] = future.result()
            except OSError as exc:
                failures[i] = unreadable_reason(exc)
        present = [i for i in indices if i not in failures]
        first: dict[str, int] = {}  # sha256 -> its first input index in this chunk
        for i in present:
            first.setdefault(shas[i], i)  # type: ignore[arg-type]
        wanted = sorted(first.keys() - found.keys() - bad.keys())
        if cache is not None and wanted:
            cached = cache.get_many([FeatureKey(h, model.key) for h in wanted])
            for key, value in cached.items():
                found[key.image_sha256] = np.asarray(value, np.float32)
                hit_by[key.image_sha256] = first[key.image_sha256]
        todo = {sha: i for sha, i in first.items() if sha not in found and sha not in bad}
        # Files whose hash was given are read by the decoding thread itself.
        decodes = [
            pool.submit(_decode_into, data.get(i, names[i]), buffer[row])
            for row, i in enumerate(todo.values())
        ]
        return _Chunk(indices, [(i, sha) for sha, i in todo.items()], decodes, buffer)

    def finish(chunk: _Chunk) -> None:
        rows = []
        for row, ((_, sha), future) in enumerate(zip(chunk.todo, chunk.decodes, strict=True)):
            reason = future.result()
            if reason is None:
                rows.append(row)
            else:
                bad[sha] = reason
        if rows:
            batch = chunk.buffer[: len(rows)] if len(rows) == rows[-1] + 1 else chunk.buffer[rows]
            feats = model.run_features(batch)
            new = {chunk.todo[row][1]: feats[k] for k, row in enumerate(rows)}
            found.update(new)
            embedded_by.update({chunk.todo[row][1]: chunk.todo[row][0] for row in rows})
            if cache is not None:
                cache.put_many({FeatureKey(h, model.key): v for h, v in new.items()})
        if progress is not None:
            progress(len(chunk.indices))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: _Chunk | None = None
        for number, start_index in enumerate(range(0, len(names), chunk_size)):
            indices = range(start_index, min(start_index + chunk_size, len(names)))
            current = start(pool, indices, buffers[number % len(buffers)])
            if pending is not None:
                finish(pending)
            pending = current
        if pending is not None:
            finish(pending)

    for i, sha in enumerate(shas):
        if i not in failures and sha in bad:
            failures[i] = bad[sha]
    return _Extraction(names, shas, found, failures, embedded_by, hit_by)


def difference_blocks(
    model: CCIPModel, a: np.ndarray, b: np.ndarray, *, block: int = 256
) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Yield ``(rows, cols, d)`` where ``d = differences(a[rows], b[cols])``, block by block.

    Each metrics-model call sees at most ``2 * block`` features (an ``a`` block stacked on a
    ``b`` block) and the off-diagonal block of its output is kept, so no square matrix over
    all of ``a`` and ``b`` is ever built.
    """
    if block < 1:
        raise ValueError(f"block: expected a positive integer, got {block}")
    for r0 in range(0, len(a), block):
        rows = slice(r0, min(r0 + block, len(a)))
        for c0 in range(0, len(b), block):
            cols = slice(c0, min(c0 + block, len(b)))
            n = rows.stop - rows.start
            square = model.run_metrics(np.concatenate([a[rows], b[cols]]))
            yield rows, cols, square[:n, n:]


def differences(model: CCIPModel, a: np.ndarray, b: np.ndarray, *, block: int = 256) -> np.ndarray:
    """CCIP differences between two feature sets: float32 ``[len(a), len(b)]``."""
    out = np.empty((len(a), len(b)), np.float32)
    for rows, cols, d in difference_blocks(model, a, b, block=block):
        out[rows, cols] = d
    return out


def pairwise_differences(model: CCIPModel, features: np.ndarray, *, block: int = 256) -> np.ndarray:
    """The square difference matrix of one set (needed for clustering), built block-wise."""
    if len(features) <= 2 * block:
        return model.run_metrics(features) if len(features) else np.empty((0, 0), np.float32)
    return differences(model, features, features, block=block)


def same_character(diffs: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean decisions: a difference at or below the model's threshold means same character."""
    return np.asarray(diffs) <= threshold


def cluster(
    model: CCIPModel,
    features: np.ndarray,
    *,
    threshold: float | None = None,
    linkage: str = "average",
    block: int = 256,
) -> np.ndarray:
    """Group a set of images by character: integer labels ``0..k-1`` in order of first appearance.

    Agglomerative clustering (scipy) on the CCIP difference matrix, cut where merging would
    exceed ``threshold`` (the model's own threshold by default).  ``linkage="single"`` equals
    connected components of the "same character" graph; ``"average"`` (default) and
    ``"complete"`` resist chaining two characters through one ambiguous image.
    """
    from scipy.cluster.hierarchy import fcluster
    from scipy.cluster.hierarchy import linkage as build_linkage
    from scipy.spatial.distance import squareform

    if linkage not in ("single", "average", "complete"):
        raise ValueError(f"linkage: expected 'single', 'average' or 'complete', got {linkage!r}")
    n = len(features)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    cut = model.threshold if threshold is None else threshold
    square = pairwise_differences(model, features, block=block).astype(np.float64)
    square = (square + square.T) / 2  # guard against float asymmetry from the ONNX model
    np.fill_diagonal(square, 0.0)
    tree = build_linkage(squareform(np.clip(square, 0.0, None), checks=False), method=linkage)
    raw = fcluster(tree, t=cut, criterion="distance")
    relabel: dict[int, int] = {}
    return np.array([relabel.setdefault(int(c), len(relabel)) for c in raw], dtype=np.int64)


@dataclass(frozen=True)
class CCIPScore:
    """CCIP character fidelity of one image set against references, with provenance.

    ``score`` is the mean over generated images of the fraction of references judged the same
    character (difference <= ``threshold``); ``mean_difference`` is the mean over all
    (reference, image) pairs.  ``per_image`` holds ``(name, fraction_same, mean_difference)``.
    """

    score: float
    mean_difference: float
    count: int
    reference_count: int
    threshold: float
    model_name: str
    model_key: str
    feat_sha256: str
    metrics_sha256: str
    reference_sha256: tuple[str, ...]
    image_sha256: tuple[str, ...]
    per_image: tuple[tuple[str, float, float], ...]
    unreadable: tuple[ImageFailure, ...]
    computed_at: datetime
    embedded: int = 0  # images the feature model ran on for this score
    cache_hits: int = 0  # images whose features came from the cache

    def provenance(self) -> dict[str, object]:
        """JSON-ready description of how the number was produced."""
        return {
            "metric": "ccip",
            "model_name": self.model_name,
            "model_key": self.model_key,
            "feat_sha256": self.feat_sha256,
            "metrics_sha256": self.metrics_sha256,
            "threshold": self.threshold,
            "reference_sha256": list(self.reference_sha256),
            "image_sha256": list(self.image_sha256),
            "unreadable": [f.name for f in self.unreadable],
            "computed_at": self.computed_at.isoformat(),
        }


def score_features(
    model: CCIPModel,
    references: FeatureSet,
    images: FeatureSet,
    *,
    block: int = 256,
) -> CCIPScore:
    """Score already-extracted features (see :func:`score_character`)."""
    unreadable = (*references.failures, *images.failures)
    if not len(references.names):
        raise NothingToScoreError("references: no readable reference image", unreadable)
    if not len(images.names):
        raise NothingToScoreError("images: no readable generated image", unreadable)
    same = np.zeros(len(images.names), np.int64)
    total = np.zeros(len(images.names), np.float64)
    for _, cols, d in difference_blocks(model, references.features, images.features, block=block):
        same[cols] += same_character(d, model.threshold).sum(axis=0)
        total[cols] += d.sum(axis=0, dtype=np.float64)
    n_ref = len(references.names)
    fractions = same / n_ref
    means = total / n_ref
    return CCIPScore(
        score=float(fractions.mean()),
        mean_difference=float(means.mean()),
        count=len(images.names),
        reference_count=n_ref,
        threshold=model.threshold,
        model_name=model.name,
        model_key=model.key,
        feat_sha256=model.feat_sha256,
        metrics_sha256=model.metrics_sha256,
        reference_sha256=tuple(references.sha256),
        image_sha256=tuple(images.sha256),
        per_image=tuple(
            (name, float(f), float(m))
            for name, f, m in zip(images.names, fractions, means, strict=True)
        ),
        unreadable=unreadable,
        computed_at=datetime.now(UTC),
        embedded=references.computed + images.computed,
        cache_hits=references.cache_hits + images.cache_hits,
    )


def score_character(
    model: CCIPModel,
    references: Sequence[ImageSource],
    images: Sequence[ImageSource],
    *,
    image_sha256: Sequence[str | None] | None = None,
    cache: FeatureCache | None = None,
    chunk_size: int = 32,
    workers: int = 4,
    block: int = 256,
    progress: Progress | None = None,
) -> CCIPScore:
    """CCIP score of generated ``images`` of one character against its ``references``.

    Follows the Illustrious report's use of CCIP: for each generated image, the fraction of
    reference images whose difference is at or below the model threshold; the score is the
    mean of those fractions.  ``image_sha256`` passes known content hashes of ``images`` (see
    :func:`extract_features`).  Unreadable files are skipped and returned in ``unreadable``;
    :class:`NothingToScoreError` is raised when either side has no readable image.

    References and images go through one pipelined pass (:func:`extract_features` each would
    drain the pipeline between them); ``progress`` counts both.
    """
    if image_sha256 is not None and len(image_sha256) != len(images):
        raise ValueError(
            f"image_sha256: expected one entry per image ({len(images)}), got {len(image_sha256)}"
        )
    names = [str(s) for s in (*references, *images)]
    shas: list[str | None] = [None] * len(references)
    shas += list(image_sha256) if image_sha256 is not None else [None] * len(images)
    run = _extract(model, names, shas, cache, chunk_size, workers, progress)
    ref_set = run.feature_set(range(len(references)))
    image_set = run.feature_set(range(len(references), len(names)))
    return score_features(model, ref_set, image_set, block=block)
