"""Cell Ranger's outputs: the 10x HDF5 file and the Matrix Market triplet (folder or archive)."""

from __future__ import annotations

import csv
import gzip
import logging
import posixpath
import re
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from .._errors import InputError
from ._common import (
    _GZIP_MAGIC,
    _content_head,
    _csr32,
    _is_tar,
    _list_keys,
    _names,
    _Parsed,
    _zip_names,
)

_log = logging.getLogger(__name__)

_MTX_MAGIC = b"%%MatrixMarket"

_FEATURE_FILES = ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv")
_BARCODE_FILES = ("barcodes.tsv.gz", "barcodes.tsv")
_GENE_EXPRESSION = "Gene Expression"
# The feature types 10x Genomics' pipelines write (features.tsv column 3, features/feature_type).
# Other files put other things in column 3 (chromosomes, biotypes): only these make it types.
_FEATURE_TYPES = frozenset(
    {
        _GENE_EXPRESSION,
        "Antibody Capture",
        "Antigen Capture",
        "CRISPR Guide Capture",
        "Multiplexing Capture",
        "Peaks",
        "Custom",
    }
)

# What orients a CSV/TSV table (see read_counts): cell barcodes, Ensembl gene ids, the
# mitochondrial and ribosomal-protein gene symbols every transcriptome holds (human, mouse),


def _is_10x_group(group: object) -> bool:
    return (
        isinstance(group, h5py.Group)
        and {"data", "indices", "indptr", "shape", "barcodes"} <= set(group.keys())
        and ("features" in group or "genes" in group)
    )


def _read_10x_h5(path: Path, genome: str | None) -> _Parsed:
    """Cell Ranger's HDF5 (v2 genome groups, v3 ``matrix``), read by scanpy.

    Several genomes (a barnyard or multi-species reference) need ``genome``; this reader
    adds that rule for v3 files (scanpy keeps every genome there), the count checks and the
    Gene Expression filter with its messages (see :func:`_tenx`).
    """
    import scanpy as sc

    with h5py.File(path, "r") as f:
        if _is_10x_group(f.get("matrix")):
            stored = f["matrix/features"].get("genome")
            genomes = sorted(set(_names(stored[()]))) if stored is not None else []
        else:
            genomes = sorted(k for k in f if _is_10x_group(f[k]))
    if genome is None and len(genomes) > 1:
        raise InputError(
            f"{path}: 10x HDF5 with several genomes ({_list_keys(genomes)}); choose one with "
            f"genome: {genomes[0]} in the dataset's entry (scdsec cluster --genome {genomes[0]})"
        )
    if genome is not None and genome not in genomes:
        raise InputError(f"{path}: no genome {genome!r}; genomes: {_list_keys(genomes)}")
    with warnings.catch_warnings():  # duplicated names get our own warning in _finish
        warnings.filterwarnings("ignore", message=r".* names are not unique")
        adata = sc.read_10x_h5(path, genome=genome, gex_only=False)
    types = list(adata.var["feature_types"]) if "feature_types" in adata.var else None
    parsed = _tenx(
        path,
        _csr32(adata.X, path),
        list(adata.obs_names),
        list(adata.var["gene_ids"]),
        list(adata.var_names),
        types,
    )
    probability = _cellbender_cell_probability(path, genome, list(adata.obs_names))
    if probability is not None:
        parsed.obs = pd.DataFrame({"cell_probability": probability})
    return parsed


def _cellbender_cell_probability(path: Path, genome: str | None, barcodes: list[str]):
    """CellBender's cell calls in its ``out.h5``, one per barcode (NaN where none), or ``None``.

    CellBender writes each analysed droplet's posterior cell probability beside the matrix:
    ``droplet_latents/cell_probability`` (v0.3) or ``<matrix group>/latent_cell_probability``
    (v0.2). They are matched to the matrix's barcodes by name (``metadata/barcodes_analyzed``)
    or else by ``barcode_indices_for_latents`` (indices into them, in the same group).
    Barcodes it did not analyse get NaN. ``None`` when the file has no such calls or they do
    not match the barcodes; QC (:func:`scdsec.preprocessing.call_cells`) uses them.
    """
    n = len(barcodes)
    with h5py.File(path, "r") as f:
        groups = [k for k in f if _is_10x_group(f[k]) and genome in (None, k, "matrix")]
        found = [(f.get("droplet_latents"), "cell_probability")]
        found += [(f[k], "latent_cell_probability") for k in groups]
        hits = [(g, name) for g, name in found if isinstance(g, h5py.Group) and name in g]
        if not hits:
            return None
        where, name = hits[0]
        p = np.asarray(where[name][()], dtype=np.float64).ravel()
        names = f.get("metadata/barcodes_analyzed")
        stored = where.get("barcode_indices_for_latents")
        if names is not None and len(names) == len(p) and len(set(barcodes)) == n:
            idx = pd.Index(barcodes).get_indexer(_names(names[()]))
        elif stored is not None:
            idx = np.asarray(stored[()]).ravel()
        else:
            idx = np.arange(len(p)) if len(p) == n else np.array([-1])
    if len(idx) != len(p) or (len(idx) and not 0 <= idx.min() <= idx.max() < n):
        _log.info("%s: CellBender's cell probabilities do not match the barcodes; ignored", path)
        return None
    out = np.full(n, np.nan)
    out[idx] = p
    _log.info(
        "%s: CellBender's cell probabilities for %d of %d barcodes (obs['cell_probability'])",
        path,
        len(p),
        n,
    )
    return out


def _tenx(
    path: Path,
    X: sp.csr_matrix,
    barcodes: list[str],
    ids: list[str],
    names: list[str],
    types: list[str] | None,
) -> _Parsed:
    """Keep Gene Expression features; symbols become names, ids go to ``var``."""
    if len(ids) != X.shape[1]:
        raise InputError(f"{path}: {len(ids)} features for {X.shape[1]} matrix rows")
    var = pd.DataFrame({"gene_ids": ids})
    if types is not None:
        var["feature_types"] = types
        keep = np.asarray(types) == _GENE_EXPRESSION
        if not keep.any():
            found = sorted(set(types))
            raise InputError(
                f"{path}: none of the {len(types)} features is {_GENE_EXPRESSION!r} (feature "
                f"types: {_list_keys(found)}); there is no gene expression to cluster"
            )
        if not keep.all():
            dropped = sorted(set(np.asarray(types)[~keep]))
            _log.info(
                "%s: dropped %d features that are not %r (%s)",
                path,
                int((~keep).sum()),
                _GENE_EXPRESSION,
                ", ".join(dropped),
            )
            X, var = X[:, keep], var[keep].reset_index(drop=True)
            names = [name for name, k in zip(names, keep, strict=True) if k]
    X.sum_duplicates()
    X.eliminate_zeros()
    return _Parsed(X=X, obs_names=barcodes, var_names=names, var=var, available=[])


@contextmanager
def _mtx_source(
    path: Path,
) -> Iterator[tuple[list[str], Callable[[str], IO[bytes]], str | None]]:
    """Yield the file names of a folder / zip / tar(.gz), an opener, and a forced matrix name.

    A Matrix Market file itself yields its folder's files and its own name.
    """
    if path.is_dir():
        names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        yield names, lambda name: (path / name).open("rb"), None
        return
    container, head = _content_head(path)
    if container == "zip":
        with zipfile.ZipFile(path) as zf:
            yield _zip_names(zf), zf.open, None
    elif _is_tar(head):
        with tarfile.open(path, "r:*") as tf:
            names = [m.name for m in tf.getmembers() if m.isfile()]
            yield names, tf.extractfile, None
    else:
        folder = path.parent
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        yield names, lambda name: (folder / name).open("rb"), path.name


def _describe_files(names: list[str], limit: int = 5) -> str:
    """What a folder or archive holds, in a few words: its first names and how many."""
    if not names:
        return "no files"
    shown = ", ".join(names[:limit]) + (", …" if len(names) > limit else "")
    return f"{len(names)} file{'s' if len(names) > 1 else ''} ({shown}): point to the count file"


# A matrix file: 10x's matrix.mtx(.gz), or with a sample prefix as public archives name them
# (GEO: GSM1234567_donor1_matrix.mtx.gz beside GSM1234567_donor1_features.tsv.gz, …).
# Other Matrix Market names (GSM1234567_counts.mtx.gz) count too, their prefix the name before
# .mtx.
_MATRIX_NAME = re.compile(r"^(?P<prefix>.*?)(matrix)?\.mtx(\.gz)?$", re.IGNORECASE)
# A public archive's sample accession at the start of a name (GSM1234567): files that share it
# belong together when their other words differ.
_ACCESSION = re.compile(r"^[A-Za-z]{2,}\d+")
_SEPARATORS = "_.- "
#: The ``sample`` value that reads every sample of a folder or archive together.
ALL_SAMPLES = "all"


def _find_samples(names: list[str], path: Path) -> dict[str, str]:
    """The matrix files among ``names``, by sample: the file's prefix (``GSM…_donor1`` of
    ``GSM…_donor1_matrix.mtx.gz``), else its folder (``raw`` of ``raw/matrix.mtx.gz``).

    Raises :class:`InputError` when there is none.
    """
    found = [n for n in names if _MATRIX_NAME.match(posixpath.basename(n))]
    if not found:
        raise InputError(
            f"{path}: not a 10x matrix folder or archive (no matrix.mtx(.gz), nor "
            f"<sample>_matrix.mtx(.gz) or other .mtx(.gz)); it holds {_describe_files(names)}"
        )
    labels = [_sample_label(n) for n in found]
    if len(set(labels)) < len(labels):  # the same prefix in several folders
        labels = [re.sub(r"[_.\- ]?(matrix)?\.mtx(\.gz)?$", "", n, flags=re.I) or n for n in found]
    return dict(zip(labels, found, strict=True))


def _prefix(matrix: str) -> str:
    """What comes before ``matrix.mtx(.gz)`` (or ``.mtx(.gz)``) in the file's name (a matrix
    file given itself may be named otherwise: then its name without ``.gz``)."""
    name = posixpath.basename(matrix)
    found = _MATRIX_NAME.match(name)
    return found["prefix"] if found else re.sub(r"\.gz$", "", name)


def _sample_label(matrix: str) -> str:
    prefix = _prefix(matrix).strip(_SEPARATORS)
    return prefix or posixpath.dirname(matrix) or posixpath.basename(matrix)


def _choose_samples(samples: dict[str, str], sample: str | None, path: Path) -> list[str]:
    """The samples to read: the only one, the one ``sample`` names (exactly, or the only one
    it begins, such as a GSM id), or all of them with ``sample="all"``."""
    listing = ", ".join(f"{label!r} ({file})" for label, file in samples.items())
    if sample == ALL_SAMPLES:
        return list(samples)
    if sample is None:
        if len(samples) == 1:
            return list(samples)
        first = next(iter(samples))
        raise InputError(
            f"{path}: several matrix files, one per sample ({listing}); choose one with "
            f"sample: {first} in the dataset's entry (scdsec cluster --sample {first}), or read "
            f"them together with sample: {ALL_SAMPLES} (each cell's sample in obs['sample'])"
        )
    if sample in samples:
        return [sample]
    starting = [label for label in samples if label.startswith(sample)]
    if len(starting) == 1:
        return starting
    raise InputError(
        f"{path}: sample {sample!r} names {'several' if starting else 'none'} of the samples "
        f"({listing}); give one of them, or {ALL_SAMPLES}"
    )


def _sibling(names: list[str], matrix: str, candidates: tuple[str, ...]) -> str | None:
    """The annotation file beside ``matrix``: ``candidates`` with the matrix's own prefix
    (``GSM…_features.tsv.gz``), else the only file of that kind in its folder."""
    folder = posixpath.dirname(matrix)
    prefix = _prefix(matrix)
    present = set(names)
    for c in candidates:
        if posixpath.join(folder, prefix + c) in present:
            return posixpath.join(folder, prefix + c)
    beside = [
        n
        for n in names
        if posixpath.dirname(n) == folder and posixpath.basename(n).endswith(candidates)
    ]
    stem = prefix.strip(_SEPARATORS)
    accession = _ACCESSION.match(stem)
    # GSM…_donor1 with GSM…_donor1.features.tsv.gz; GSM…_counts.mtx.gz with GSM…_genes.tsv.gz
    for start in (stem, accession[0] if accession else ""):
        if start:
            mine = [n for n in beside if _starts_with_sample(posixpath.basename(n), start)]
            if len(mine) == 1:
                return mine[0]
    return beside[0] if len(beside) == 1 else None


def _starts_with_sample(name: str, start: str) -> bool:
    """``name`` begins with ``start`` followed by a separator (GSM1 is no prefix of GSM12_…)."""
    return name.startswith(start) and name[len(start) : len(start) + 1] in tuple(_SEPARATORS)


@contextmanager
def _gunzipped(stream: IO[bytes]) -> Iterator[IO[bytes]]:
    """The stream, decompressed if its content is gzip (recognised by magic bytes)."""
    with stream:
        if stream.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=stream) as gz:
                yield gz
        else:
            yield stream


def _read_10x_mtx(path: Path, sample: str | None = None) -> _Parsed:
    """A Matrix Market triplet (``matrix.mtx``, ``features.tsv``/``genes.tsv``,
    ``barcodes.tsv``, each maybe gzipped and with a sample prefix) in a folder, a zip or tar
    archive, or beside the matrix file given itself; ``sample`` chooses among several
    samples (see :func:`_choose_samples`), reading them together under ``"all"``."""
    with _mtx_source(path) as (names, open_member, forced):
        samples = {_sample_label(forced): forced} if forced else _find_samples(names, path)
        chosen = _choose_samples(samples, sample, path)
        if sample is not None:
            _log.info(
                "%s: sample %r → %s", path, sample, ", ".join(f"{c} ({samples[c]})" for c in chosen)
            )
        parts = [
            (label, _read_triplet(path, names, open_member, samples[label])) for label in chosen
        ]
    if len(parts) == 1:
        return parts[0][1]
    return _together(path, parts)


def _read_triplet(
    path: Path, names: list[str], open_member: Callable[[str], IO[bytes]], matrix: str
) -> _Parsed:
    features = _sibling(names, matrix, _FEATURE_FILES)
    barcodes = _sibling(names, matrix, _BARCODE_FILES)
    for found, wanted in (
        (features, "features.tsv(.gz) or genes.tsv(.gz)"),
        (barcodes, "barcodes.tsv(.gz)"),
    ):
        if found is None:
            raise InputError(f"{path}: no {wanted} beside {matrix}")
    with _gunzipped(open_member(matrix)) as fh:
        if not fh.peek(len(_MTX_MAGIC)).startswith(_MTX_MAGIC):
            raise InputError(f"{path}: {matrix} is not a Matrix Market file")
        genes_by_cells = scipy.io.mmread(fh)
    with _gunzipped(open_member(features)) as fh:
        feature_table = _read_tsv(fh)
    with _gunzipped(open_member(barcodes)) as fh:
        cell_names = _read_tsv(fh)[0].tolist()
    if len(cell_names) != genes_by_cells.shape[1]:
        raise InputError(
            f"{path}: {len(cell_names)} barcodes in {barcodes} for {genes_by_cells.shape[1]} "
            f"matrix columns in {matrix}"
        )
    ids = feature_table[0].tolist()
    symbols = feature_table[1].tolist() if feature_table.shape[1] > 1 else ids
    types = _feature_types(feature_table, f"{path}: {features}")
    X = _csr32(sp.csr_matrix(genes_by_cells).T, path)
    return _tenx(path, X, cell_names, ids, symbols, types)


def _together(path: Path, parts: list[tuple[str, _Parsed]]) -> _Parsed:
    """Several samples' cells stacked: the same genes in the same order required; each cell
    named ``<barcode>-<sample>`` (as ``anndata.concat(..., index_unique="-")``) and its sample
    in ``obs["sample"]``."""
    first_label, first = parts[0]
    for label, part in parts[1:]:
        if not part.var["gene_ids"].equals(first.var["gene_ids"]):
            raise InputError(
                f"{path}: samples {first_label!r} and {label!r} list different genes (or in "
                "another order); choose one sample with sample: <name>"
            )
    X = sp.vstack([part.X for _, part in parts], format="csr")
    obs_names = [f"{cell}-{label}" for label, part in parts for cell in part.obs_names]
    samples = [label for label, part in parts for _ in range(part.X.shape[0])]
    _log.info(
        "%s: read %d samples together (%s): cells named <barcode>-<sample>, the sample in "
        "obs['sample']",
        path,
        len(parts),
        ", ".join(f"{label}: {part.X.shape[0]} cells" for label, part in parts),
    )
    return _Parsed(
        X=X,
        obs_names=obs_names,
        var_names=first.var_names,
        obs=pd.DataFrame(
            {"sample": pd.Categorical(samples, categories=[label for label, _ in parts])}
        ),
        var=first.var,
        available=["sample"],
    )


def _feature_types(table: pd.DataFrame, where: str) -> list[str] | None:
    """Column 3 of a features file when it holds 10x feature types, else None (all genes).

    Cell Ranger writes id, symbol, type; other tools write id, symbol and then chromosome,
    position, strand or biotype. Column 3 counts as feature types only when every value is
    one of :data:`_FEATURE_TYPES`; otherwise it is ignored, with a log line that says so.
    """
    if table.shape[1] < 3:
        return None
    values = table[2].tolist()
    if set(values) <= _FEATURE_TYPES:
        return values
    examples = list(dict.fromkeys(values))[:3]
    _log.info(
        "%s: column 3 holds no 10x feature types (values such as %s): all %d features are "
        "kept as genes",
        where,
        ", ".join(repr(v) for v in examples),
        len(values),
    )
    return None


def _read_tsv(stream: IO[bytes]) -> pd.DataFrame:
    return pd.read_csv(
        stream, sep="\t", header=None, dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE
    )
