"""Write cell sentences as a table (CSV, TSV or parquet), atomically and streamed.

One row per cell: ``cell_id, label, sentence, n_genes``. Rows are written as
they are produced into a temporary file beside ``out``, which is renamed over
``out`` only when every cell has been read; on any error nothing is left.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from circuitdb.errors import InputError
from circuitdb.loaders.sentences import CellSentence, SentenceOptions, SentenceSummary, iter_cell_sentences

COLUMNS = ("cell_id", "label", "sentence", "n_genes")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def table_format(out: str | os.PathLike[str]) -> str:
    """``"csv"``, ``"tsv"`` or ``"parquet"`` from the suffix of ``out``."""
    p = Path(out)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot tell the table format of {p} (suffix {p.suffix or 'none'!r}); end --out with .csv, .tsv or .parquet")
    if not p.parent.exists():
        raise InputError(f"the folder of --out ({p.parent}) does not exist; create it first")
    if p.is_dir():
        raise InputError(f"--out {p} is a directory; pass a file name ending in .csv, .tsv or .parquet")
    return fmt


def _write_delimited(rows: Iterable[CellSentence], fh: Any, delimiter: str) -> None:
    w = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
    w.writerow(COLUMNS)
    for s in rows:
        w.writerow((s.cell_id, "" if s.label is None else s.label, s.sentence, s.n_genes))


def _write_parquet(rows: Iterable[CellSentence], path: Path, metadata: dict[str, str], batch: int = 8192) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("cell_id", pa.string()), ("label", pa.string()), ("sentence", pa.string()), ("n_genes", pa.int32())],
        metadata={k.encode(): v.encode() for k, v in metadata.items()},
    )
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}

    def flush(writer: Any) -> None:
        writer.write_table(pa.table(cols, schema=schema))
        for v in cols.values():
            v.clear()

    with pq.ParquetWriter(path, schema) as writer:
        for s in rows:
            cols["cell_id"].append(s.cell_id)
            cols["label"].append(s.label)
            cols["sentence"].append(s.sentence)
            cols["n_genes"].append(s.n_genes)
            if len(cols["cell_id"]) >= batch:
                flush(writer)
        if cols["cell_id"]:
            flush(writer)


def write_sentence_table(
    data: Any,
    out: str | os.PathLike[str],
    opts: SentenceOptions,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> SentenceSummary:
    """Stream the sentences of ``data`` into ``out`` (CSV/TSV/parquet by suffix), atomically.

    Parameters
    ----------
    data
        A path to ``.h5ad``/``.zarr``, or an AnnData.
    out
        The table to write; replaced only on success.
    opts
        Sentence options (``label_key`` fills the label column).
    on_progress
        ``(cells_done, n_cells)`` after each chunk.

    Returns
    -------
    SentenceSummary
        Cells read, written and skipped.
    """
    out_path = Path(out)
    fmt = table_format(out_path)
    summary = SentenceSummary()
    rows = iter_cell_sentences(data, opts, summary=summary, on_progress=on_progress)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    tmp = Path(tmp_name)
    try:
        if fmt == "parquet":
            os.close(fd)
            meta = {"circuitdb.top_k": str(opts.top_k), "circuitdb.layer": opts.layer,
                    "circuitdb.organism": opts.organism, "circuitdb.seed": str(opts.seed)}
            _write_parquet(rows, tmp, meta)
        else:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                _write_delimited(rows, fh, "," if fmt == "csv" else "\t")
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return summary
