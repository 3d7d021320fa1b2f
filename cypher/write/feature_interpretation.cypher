// Upsert Feature nodes with their automatic interpretation (label, top genes, density, specificity).
// params: $rows: [{id, layer, index, transcoder_set, label, top_genes, density, interpretable,
//         best_term (or null), best_q (or null), best_cell_type (or null), best_auroc (or null)}]
// returns: n (rows written)
UNWIND $rows AS r
MERGE (f:Feature {id: r.id})
SET f.layer = r.layer, f.index = r.index, f.transcoder_set = r.transcoder_set, f.label = r.label,
    f.top_genes = r.top_genes, f.density = r.density, f.interpretable = r.interpretable,
    f.best_term = r.best_term, f.best_q = r.best_q, f.best_cell_type = r.best_cell_type, f.best_auroc = r.best_auroc
RETURN count(*) AS n
