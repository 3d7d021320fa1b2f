// Upsert the provenance node of an imported GRN (keyed by name).
// params: $rows: [{name, source, format, content_hash, n_edges, n_edges_file, n_tfs, n_genes, dropped (JSON text),
//         match_rate (or null), dataset_coverage (or null), dataset (or null), imported}]
// returns: n (rows written)
UNWIND $rows AS r
MERGE (g:GRN {name: r.name})
SET g.source = r.source, g.format = r.format, g.content_hash = r.content_hash, g.n_edges = r.n_edges,
    g.n_edges_file = r.n_edges_file, g.n_tfs = r.n_tfs, g.n_genes = r.n_genes, g.dropped = r.dropped,
    g.match_rate = r.match_rate, g.dataset_coverage = r.dataset_coverage, g.dataset = r.dataset,
    g.imported = r.imported, g.complete = false
RETURN count(*) AS n
