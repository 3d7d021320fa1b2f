"""Worker for the 2-process sharding test: attribute 4 tiny cells, rank 0 saves the graphs."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from attr_fixtures import CELL_TYPES, GENES, random_transcoders, tiny_neox, tiny_tokenizer  # noqa: E402

from circuitdb.attribution.attribute import attribute_many  # noqa: E402
from circuitdb.loaders.prompts import PromptTemplate  # noqa: E402
from circuitdb.loaders.sentences import CellSentence  # noqa: E402


def cells() -> list[CellSentence]:
    return [CellSentence(f"c{i}", i, CELL_TYPES[i % 3], tuple(GENES[i: i + 4])) for i in range(4)]


def run(out: Path | None) -> list:  # noqa: ANN001
    torch.set_num_threads(1)
    model = tiny_neox()
    tcs = random_transcoders(model, n_features=16, k=3)
    graphs = attribute_many(cells(), model, tcs, tokenizer=tiny_tokenizer(), candidates=CELL_TYPES,
                            template=PromptTemplate(prompt="Cell: {genes}.\nType:"), head_split_nodes=2, head_edges_per_node=8)
    if graphs is not None and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for i, g in enumerate(graphs):
            g.save(out / f"g{i}.pt")
    return graphs or []


if __name__ == "__main__":
    run(Path(sys.argv[1]))
